//! Admission and settlement of one request under its route's rate limits and budgets.
//!
//! Before the request goes upstream: every rate limit takes one request and the estimated
//! tokens; every budget reserves the worst case — estimated prompt at the dearest input
//! rate of the route's targets plus the output limit at the dearest output rate. When a
//! budget cannot pay for the output limit, `max_tokens` is clamped to what it can pay for;
//! when it cannot pay for a useful answer, the request is refused (`reject`) or sent to the
//! cheaper target (`downgrade`). After the answer: the real cost is settled and what was
//! reserved beyond it comes back. A request dropped on the way settles at zero.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::time::Instant;
use tracing::warn;

use super::Limits;
use super::ledger::{AccountKey, Awaiting, Ledger, Reserved};
use super::policy::{BudgetRule, Exhausted, RouteLimits, ScopeInput};
use super::rate::{Limited, RateHeaders, TokensTaken};
use crate::config::Target;
use crate::cost::{self, Cost, TokenUsage};
use crate::error::{BudgetRefusal, ProxyError, RateRefusal};
use crate::telemetry::Metrics;

/// The output reserved for a request that sets no output limit. Every current model can
/// write this many tokens, so it is also what `max_tokens` is clamped to at most when the
/// client set none (a larger value can be refused by a model with a smaller limit).
pub const DEFAULT_OUTPUT_RESERVE: u64 = 4096;

/// Fewer output tokens than this are not worth sending a request for: the budget counts as
/// spent.
pub const MIN_USEFUL_OUTPUT: u64 = 16;

/// How long a request waits for the operator's answer when too little is held here.
const GRANT_WAIT: Duration = Duration::from_secs(2);

/// How often one request asks the leader for more before taking what is there.
const MAX_ASKS: u32 = 3;

/// How long a request waits for requests in flight to settle when they hold the rest of
/// its budget; then it is refused.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// What admission needs to know of a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    pub headers: &'a HeaderMap,
    /// The OpenAI `user` field.
    pub user: Option<&'a str>,
    /// The prompt's estimated size in tokens.
    pub input_tokens: u64,
    /// The client's output limit (`max_completion_tokens`, `max_tokens`, Gemini's
    /// `maxOutputTokens`).
    pub max_tokens: Option<u64>,
}

/// The dearest rates of a route's targets (fallbacks included), pico-USD per token: the
/// worst case a reservation must cover whichever target answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ceiling {
    pub input: u64,
    pub output: u64,
}

/// An admitted request's holds on budgets and rate limits. Settle it with
/// [`Admission::settle`]; dropped unsettled, it releases everything at zero cost.
#[derive(Debug)]
pub struct Admission {
    limits: Arc<Limits>,
    holds: Vec<Hold>,
    tokens: Vec<TokensTaken>,
    ceiling: Ceiling,
    /// The prompt's estimated size.
    pub input_tokens: u64,
    /// Output tokens reserved for (`None`: no budget covers the request).
    pub output_bound: Option<u64>,
    /// `max_tokens` lowered to what the budget can pay for.
    pub clamped: Option<u64>,
    /// A spent budget sends the request here instead.
    pub downgrade: Option<Arc<Target>>,
    /// The `x-ratelimit-*` values of the first rate limit.
    pub rate_headers: Option<RateHeaders>,
    /// Spent beside the answer: a hedged try that lost the race (nano-USD).
    extra_nano_usd: u64,
    settled: bool,
}

/// What [`admit`] decided.
pub type Admitted = Result<Admission, ProxyError>;

#[derive(Debug)]
struct Hold {
    rule: Arc<BudgetRule>,
    key: AccountKey,
    reserved: u64,
    /// False for a downgraded request: spend is recorded, nothing was reserved.
    reserving: bool,
}

/// Admits a request to a route with `limits`: rate limits first (a refusal there spends
/// no budget), then budgets.
pub async fn admit(
    state: &Arc<Limits>,
    route_limits: &RouteLimits,
    ceiling: Ceiling,
    alias: &str,
    facts: RequestFacts<'_>,
    metrics: &Metrics,
) -> Admitted {
    let mut admission = Admission {
        limits: state.clone(),
        holds: Vec::with_capacity(route_limits.budgets.len()),
        tokens: Vec::with_capacity(route_limits.rates.len()),
        ceiling,
        input_tokens: facts.input_tokens,
        output_bound: None,
        clamped: None,
        downgrade: None,
        rate_headers: None,
        extra_nano_usd: 0,
        settled: false,
    };
    let scope_input = ScopeInput {
        headers: facts.headers,
        user: facts.user,
        pod: &state.pod,
    };
    let output = facts.max_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVE);
    let now = Instant::now();
    for rule in &route_limits.rates {
        let scope = rule.scope.value(&scope_input);
        let tokens = facts.input_tokens.saturating_add(output);
        match state.rates.take(rule, scope, tokens, now) {
            Ok((headers, taken)) => {
                admission.rate_headers.get_or_insert(headers);
                admission.tokens.extend(taken);
            }
            Err(limited) => {
                metrics.rate_limited(alias, &limited.id.name, limited.what);
                return Err(rate_limited(limited, &rule.scope.value(&scope_input)));
            }
        }
    }
    if route_limits.budgets.is_empty() {
        return Ok(admission);
    }
    let input_cost = nano(facts.input_tokens, ceiling.input);
    let at = SystemTime::now();
    let mut affordable = output;
    for rule in &route_limits.budgets {
        let key = Ledger::key(rule, rule.scope.value(&scope_input), at);
        let want = input_cost.saturating_add(nano(output, ceiling.output));
        // A client limit below the useful minimum is the minimum.
        let min = input_cost.saturating_add(nano(MIN_USEFUL_OUTPUT.min(output), ceiling.output));
        let reserved = reserve(state, rule, &key, want, min).await;
        let got = match reserved {
            Reserved::Full(n) | Reserved::Partial(n) => n,
            Reserved::Exhausted | Reserved::AskFirst | Reserved::Busy => match &rule.exhausted {
                Exhausted::Reject => {
                    metrics.budget_rejected(alias, &rule.id.name);
                    return Err(budget_exceeded(rule, &key));
                }
                Exhausted::Downgrade(target) => {
                    metrics.budget_downgraded(alias, &rule.id.name);
                    admission.downgrade.get_or_insert_with(|| target.clone());
                    admission.holds.push(Hold {
                        rule: rule.clone(),
                        key,
                        reserved: 0,
                        reserving: false,
                    });
                    continue;
                }
            },
        };
        admission.holds.push(Hold {
            rule: rule.clone(),
            key,
            reserved: got,
            reserving: true,
        });
        if got < want {
            let for_output = got.saturating_sub(input_cost);
            let tokens = for_output
                .saturating_mul(1000)
                .checked_div(ceiling.output)
                .unwrap_or(output);
            affordable = affordable.min(tokens);
        }
    }
    // `output` is the client's limit, or the default reserve when it set none.
    if affordable < output {
        admission.clamped = Some(affordable);
    }
    if admission.downgrade.is_none() {
        admission.output_bound = Some(affordable);
    }
    Ok(admission)
}

/// Reserves on one account: waits while requests in flight hold what is left (they give
/// back what they did not spend), and under the operator asks the leader (once, briefly)
/// when too little is held here.
async fn reserve(
    state: &Limits,
    rule: &BudgetRule,
    key: &AccountKey,
    want: u64,
    min: u64,
) -> Reserved {
    // The common case: there is enough, nothing to wait for.
    match state.ledger.reserve(rule, key, want, min, true) {
        Reserved::AskFirst | Reserved::Busy => {}
        done => return done,
    }
    let deadline = Instant::now() + BUSY_WAIT;
    let mut asks = 0;
    loop {
        let settled = state.ledger.settled.notified();
        tokio::pin!(settled);
        // Registered before looking, so a settlement in between is not missed.
        settled.as_mut().enable();
        match state.ledger.reserve(rule, key, want, min, asks < MAX_ASKS) {
            Reserved::AskFirst => {
                // Concurrent requests share an ask; one may find the answer taken by the
                // others and ask again, a few times at most.
                asks += 1;
                // Wait for the answer to this account's ask: other accounts' grants wake
                // the waiters too.
                let until = Instant::now() + GRANT_WAIT;
                loop {
                    let granted = state.granted.notified();
                    tokio::pin!(granted);
                    granted.as_mut().enable();
                    match state.ledger.awaiting_grant(key) {
                        Awaiting::Answered => break,
                        Awaiting::Unsent => state.want.notify_one(),
                        Awaiting::Sent => {}
                    }
                    if tokio::time::timeout_at(until, granted).await.is_err() {
                        break;
                    }
                }
            }
            Reserved::Busy => {
                if tokio::time::timeout_at(deadline, settled).await.is_err() {
                    return Reserved::Exhausted;
                }
            }
            done => return done,
        }
    }
}

// === impl Admission ===

impl Admission {
    /// Reserves room for `tokens` more output tokens in every budget (a stream that outgrew
    /// its reservation). False when a budget cannot pay: end the stream.
    pub fn extend_output(&mut self, tokens: u64) -> bool {
        let more = nano(tokens, self.ceiling.output);
        let mut extended = Vec::new();
        for (i, hold) in self.holds.iter().enumerate() {
            if !hold.reserving {
                continue;
            }
            if !self.limits.ledger.extend(&hold.key, more) {
                // Give back what the others got.
                for j in extended {
                    let h: &Hold = &self.holds[j];
                    self.limits.ledger.settle(&h.rule, &h.key, more, 0);
                }
                return false;
            }
            extended.push(i);
        }
        for i in extended {
            self.holds[i].reserved += more;
        }
        if let Some(bound) = &mut self.output_bound {
            *bound += tokens;
        }
        true
    }

    /// The budget whose `downgrade` sent this request to a cheaper target, if one did.
    pub fn downgraded_by(&self) -> Option<&str> {
        self.downgrade.as_ref()?;
        let hold = self.holds.iter().find(|h| !h.reserving)?;
        Some(&hold.rule.id.name)
    }

    /// Whether any budget covers this request.
    pub fn budgeted(&self) -> bool {
        !self.holds.is_empty()
    }

    /// Books `nano_usd` spent on this request besides the answer's own cost (a hedged try
    /// cancelled after its prompt was sent); it is settled with the answer.
    pub fn also_spent(&mut self, nano_usd: u64) {
        self.extra_nano_usd = self.extra_nano_usd.saturating_add(nano_usd);
    }

    /// Settles the request: its cost from `usage` (or, when the provider reported none, from
    /// the estimated prompt and `estimated_output`) at `target`'s price. `target` is `None`
    /// when no upstream answered: nothing was spent.
    pub fn settle(
        mut self,
        target: Option<&Target>,
        usage: Option<TokenUsage>,
        estimated_output: u64,
        alias: &Arc<str>,
        metrics: &Metrics,
    ) -> Option<Cost> {
        self.settled = true;
        let now = Instant::now();
        let (cost, used_tokens) = match target {
            None => (None, 0),
            Some(target) => {
                let usage = usage
                    .unwrap_or_else(|| TokenUsage::estimated(self.input_tokens, estimated_output));
                let cost = target
                    .price
                    .as_deref()
                    .map(|price| cost::cost(&usage, price));
                (cost, usage.prompt_tokens() + usage.output_tokens())
            }
        };
        for taken in &self.tokens {
            self.limits.rates.settle(taken, used_tokens, now);
        }
        let spent = cost.map_or(0, |c| c.nano_usd) + self.extra_nano_usd;
        for hold in &self.holds {
            let crossed = self
                .limits
                .ledger
                .settle(&hold.rule, &hold.key, hold.reserved, spent);
            if let Some(crossed) = crossed {
                metrics.budget_threshold(alias, &hold.rule.id.name, crossed.percent);
                warn!(
                    budget = %hold.rule.id,
                    window = %hold.key.window,
                    scope = %hold.key.scope,
                    percent = crossed.percent,
                    "budget threshold crossed"
                );
            }
        }
        if let (Some(target), Some(cost)) = (target, cost) {
            metrics.cost(alias, &target.label, cost);
        }
        cost
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let now = Instant::now();
        for taken in &self.tokens {
            self.limits.rates.settle(taken, 0, now);
        }
        for hold in &self.holds {
            self.limits
                .ledger
                .settle(&hold.rule, &hold.key, hold.reserved, 0);
        }
    }
}

/// `tokens` at `rate` pico-USD each, in nano-USD rounded up.
fn nano(tokens: u64, rate: u64) -> u64 {
    let pico = u128::from(tokens) * u128::from(rate);
    u64::try_from(pico.div_ceil(1000)).unwrap_or(u64::MAX)
}

fn budget_exceeded(rule: &BudgetRule, key: &AccountKey) -> ProxyError {
    let resets = key.window.end();
    ProxyError::BudgetExceeded(Box::new(BudgetRefusal {
        budget: rule.id.name.clone(),
        model_route: format!("{}/{}", rule.id.namespace, rule.id.model_route),
        window: key.window.to_string(),
        scope: scope_note(&rule.scope, &key.scope),
        resets_at: if key.window.window() == modelroute_crds::Window::Total {
            "never".to_string()
        } else {
            jiff::Timestamp::try_from(resets)
                .map(|t| t.to_string())
                .unwrap_or_default()
        },
    }))
}

fn rate_limited(limited: Limited, scope: &str) -> ProxyError {
    ProxyError::RateLimited(Box::new(RateRefusal {
        limit: limited.id.name.clone(),
        model_route: format!("{}/{}", limited.id.namespace, limited.id.model_route),
        what: limited.what,
        scope: if scope.is_empty() {
            String::new()
        } else {
            format!(" for {scope:?}")
        },
        retry_after: limited.retry_after,
        retry: match limited.retry_after {
            Some(after) => format!("try again in {}", super::headers::openai_duration(after)),
            None => "the request needs more tokens than a minute's limit".to_string(),
        },
        headers: limited.headers,
    }))
}

fn scope_note(scope: &super::ScopeRule, value: &str) -> String {
    match scope {
        super::ScopeRule::Route => String::new(),
        super::ScopeRule::Pod => format!(" (pod {value})"),
        super::ScopeRule::Header(name) => format!(" ({name} {value:?})"),
        super::ScopeRule::User => format!(" (user {value:?})"),
    }
}
