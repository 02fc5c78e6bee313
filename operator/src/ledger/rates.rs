//! Fleet-wide rate limits as per-sidecar shares.
//!
//! A ModelRoute's `rateLimits` hold for all the sidecars it selects together. Each connected
//! sidecar gets `ceil(limit / n)` per minute, `n` the connected sidecars that receive the
//! ModelRoute, and enforces it locally with a token bucket. Rounding up means the fleet may
//! together exceed the limit by at most `n − 1` a minute (plus what bucket bursts let
//! through); rounding down could give a sidecar 0 of a small limit. Shares are pushed again
//! whenever `n` or the limits change.

use modelroute_proto::RateShare;

use crate::index::{ObjectKey, Published};

/// The shares of the rate limits of `routes` (the ModelRoutes a sidecar receives), with
/// `sidecars(route)` the connected sidecars that receive each (counting this one).
pub fn shares<'a>(
    routes: impl IntoIterator<Item = &'a Published>,
    sidecars: impl Fn(&ObjectKey) -> usize,
) -> Vec<RateShare> {
    let mut out = Vec::new();
    for route in routes {
        if route.spec.rate_limits.is_empty() {
            continue;
        }
        let n = u64::try_from(sidecars(&route.key).max(1)).unwrap_or(u64::MAX);
        let share = |limit: Option<u32>| limit.map_or(0, |l| u64::from(l).div_ceil(n));
        for limit in &route.spec.rate_limits {
            out.push(RateShare {
                namespace: route.key.namespace.clone(),
                model_route: route.key.name.clone(),
                rate_limit: limit.name.clone(),
                requests_per_minute: share(limit.requests_per_minute),
                tokens_per_minute: share(limit.tokens_per_minute),
            });
        }
    }
    out
}

/// Whether any of `routes` has rate limits (a session without any need not follow how many
/// sidecars are connected).
pub fn any<'a>(routes: impl IntoIterator<Item = &'a Published>) -> bool {
    routes.into_iter().any(|r| !r.spec.rate_limits.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures::route;
    use crate::index::{Index, SecretMap};

    const LIMITED: &str = "
  providers: [{name: mock, kind: mock}]
  routes: [{model: chat, targets: [{provider: mock, model: m}]}]
  rateLimits:
    - {name: rpm, requestsPerMinute: 100}
    - {name: both, requestsPerMinute: 7, tokensPerMinute: 1000, scope: user}
";

    #[test]
    fn each_sidecar_gets_the_rounded_up_share() {
        let (index, _) = Index::new();
        let routes = [
            route("ns", "limited", 1, LIMITED),
            route("ns", "plain", 1, crate::fixtures::MOCK),
        ];
        index.update(&routes, &SecretMap::default(), BTreeMap::new());
        let world = index.current();
        let published: Vec<&Published> = world.routes.values().map(AsRef::as_ref).collect();
        assert!(any(published.iter().copied()));
        let got = |n: usize| {
            shares(published.iter().copied(), |_| n)
                .into_iter()
                .map(|s| (s.rate_limit, s.requests_per_minute, s.tokens_per_minute))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(1),
            [("rpm".into(), 100, 0), ("both".into(), 7, 1000)],
            "alone: the whole limit, 0 where none is set"
        );
        assert_eq!(got(3), [("rpm".into(), 34, 0), ("both".into(), 3, 334)]);
        // Never 0 of a limit, and never more than the limit over the fleet plus n − 1.
        for n in 1..=200 {
            let s = got(n);
            let n = n as u64;
            assert!(s[1].1 >= 1);
            assert!(s[0].1 * n < 100 + n, "at most n − 1 over");
        }
        assert_eq!(got(0), got(1), "no count: itself");
    }
}
