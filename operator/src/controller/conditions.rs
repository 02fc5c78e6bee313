//! The status a ModelRoute should have, computed from what the operator knows (pure).
//!
//! Three conditions, always present and in this order:
//! - `Ready`: True when the current generation is valid and published to the sidecars;
//!   False with the index's reason (`InvalidSpec`, `InvalidSelector`, `SecretNotFound`)
//!   otherwise, saying which generation the sidecars keep, if any.
//! - `Invalid`: True with the same reason and every problem, one per line, each naming the
//!   field; False (`Valid`) otherwise.
//! - `Degraded`: True (`SidecarsRefused`) while connected sidecars refuse the current
//!   generation, with one of their reasons; False (`NoRefusals`) otherwise.
//!
//! Each condition carries `observedGeneration`; `lastTransitionTime` is kept while its
//! status stays the same, so recomputing an unchanged status yields an equal value and the
//! controller writes nothing. Messages are never empty: Kubernetes 1.20's server-side apply
//! turns an empty string into `null`, which the CRD schema then refuses.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use modelroute_crds::{ModelRouteStatus, SidecarCounts};

use crate::discovery::registry::Sync;
use crate::index::Verdict;

pub const READY: &str = "Ready";
pub const INVALID: &str = "Invalid";
pub const DEGRADED: &str = "Degraded";

/// Reasons of the conditions besides the index's problem reasons.
pub const PUBLISHED: &str = "Published";
pub const VALID: &str = "Valid";
pub const SIDECARS_REFUSED: &str = "SidecarsRefused";
pub const NO_REFUSALS: &str = "NoRefusals";

/// Longest condition message written; longer ones are cut (a ModelRoute with hundreds of
/// problems should not make its status huge).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// What the operator knows about one ModelRoute at its current generation.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// `metadata.generation` of the object being reconciled.
    pub generation: i64,
    /// The index's judgement of that generation.
    pub verdict: &'a Verdict,
    /// Sidecar pods that receive the ModelRoute (the selector of the version being served).
    pub selected: usize,
    /// How the connected sidecars are doing with this generation.
    pub sync: &'a Sync,
}

/// The status `observed` calls for; `current` is the status the object has now (its
/// transition times are kept where a condition's status did not change); `now` stamps
/// the others.
pub fn desired(
    observed: &Observed<'_>,
    current: Option<&ModelRouteStatus>,
    now: Timestamp,
) -> ModelRouteStatus {
    let Observed {
        generation,
        verdict,
        selected,
        sync,
    } = *observed;
    let stamp = Stamp {
        generation,
        current,
        now,
    };
    let ready = match &verdict.problem {
        None => stamp.condition(
            READY,
            true,
            PUBLISHED,
            format!("generation {generation} is valid and published"),
        ),
        Some(problem) => {
            let keep = match verdict.serving {
                Some(serving) if serving != generation => {
                    format!("sidecars keep generation {serving}")
                }
                _ => "no sidecar receives this ModelRoute".to_string(),
            };
            stamp.condition(
                READY,
                false,
                problem.reason.as_str(),
                format!(
                    "generation {generation} refused; {keep}: {}",
                    problem.message
                ),
            )
        }
    };
    let invalid = match &verdict.problem {
        Some(problem) => stamp.condition(
            INVALID,
            true,
            problem.reason.as_str(),
            problem.message.clone(),
        ),
        None => stamp.condition(
            INVALID,
            false,
            VALID,
            format!("generation {generation} passed every check"),
        ),
    };
    let degraded = match (&sync.last_nack, sync.refusing) {
        (Some(reason), n) if n > 0 => stamp.condition(
            DEGRADED,
            true,
            SIDECARS_REFUSED,
            format!(
                "{n} sidecar{} refused generation {generation}: {}",
                if n == 1 { "" } else { "s" },
                non_empty(reason)
            ),
        ),
        _ => stamp.condition(
            DEGRADED,
            false,
            NO_REFUSALS,
            format!("no connected sidecar refuses generation {generation}"),
        ),
    };
    ModelRouteStatus {
        observed_generation: Some(generation),
        conditions: vec![ready, invalid, degraded],
        routes: Some(saturate(verdict.routes)),
        sidecars: Some(SidecarCounts {
            selected: saturate(selected),
            in_sync: saturate(sync.in_sync),
        }),
        last_nack: sync
            .last_nack
            .as_deref()
            .filter(|_| sync.refusing > 0)
            .map(|r| cut(non_empty(r).to_string())),
        // Written by the ledger under its own field manager (ledger/status.rs).
        budgets: Vec::new(),
    }
}

/// Builds conditions for one status.
struct Stamp<'a> {
    generation: i64,
    current: Option<&'a ModelRouteStatus>,
    now: Timestamp,
}

// === impl Stamp ===

impl Stamp<'_> {
    fn condition(&self, type_: &str, status: bool, reason: &str, message: String) -> Condition {
        let status = if status { "True" } else { "False" };
        let since = self
            .current
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map_or_else(
                // Whole seconds: what the API server stores, so a re-read compares equal.
                || Time(Timestamp::from_second(self.now.as_second()).unwrap_or(self.now)),
                |c| c.last_transition_time.clone(),
            );
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: cut(message),
            observed_generation: Some(self.generation),
            last_transition_time: since,
        }
    }
}

/// Cuts `message` to [`MAX_MESSAGE_BYTES`] at a character boundary.
fn cut(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str("...");
    message
}

/// A sidecar's reason as written (an empty one would be stored as `null`).
fn non_empty(reason: &str) -> &str {
    if reason.trim().is_empty() {
        "(no reason given)"
    } else {
        reason
    }
}

fn saturate(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::index::{Problem, Reason};

    fn verdict(generation: i64, problem: Option<Problem>, serving: Option<i64>) -> Verdict {
        Verdict {
            generation,
            problem,
            serving,
            routes: 2,
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn find<'a>(status: &'a ModelRouteStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn valid_and_published_is_ready() {
        let v = verdict(3, None, Some(3));
        let sync = Sync {
            in_sync: 2,
            ..Sync::default()
        };
        let status = desired(
            &Observed {
                generation: 3,
                verdict: &v,
                selected: 4,
                sync: &sync,
            },
            None,
            at(1000),
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.routes, Some(2));
        assert_eq!(
            status.sidecars,
            Some(SidecarCounts {
                selected: 4,
                in_sync: 2
            })
        );
        let ready = find(&status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", PUBLISHED)
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(find(&status, INVALID).status, "False");
        assert_eq!(find(&status, DEGRADED).status, "False");
        assert_eq!(status.last_nack, None);
    }

    #[test]
    fn refused_generation_says_which_one_keeps_serving() {
        let problem = Problem {
            reason: Reason::InvalidSpec,
            message: "spec.routes[0].targets[0].provider: unknown provider `nope`".into(),
        };
        let v = verdict(2, Some(problem), Some(1));
        let status = desired(
            &Observed {
                generation: 2,
                verdict: &v,
                selected: 0,
                sync: &Sync::default(),
            },
            None,
            at(1000),
        );
        let ready = find(&status, READY);
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "InvalidSpec");
        assert!(
            ready
                .message
                .starts_with("generation 2 refused; sidecars keep generation 1: spec.routes[0]"),
            "{}",
            ready.message
        );
        let invalid = find(&status, INVALID);
        assert_eq!(invalid.status, "True");
        assert_eq!(invalid.reason, "InvalidSpec");
        assert!(invalid.message.contains("unknown provider `nope`"));
    }

    #[test]
    fn transition_times_are_kept_while_the_status_stays() {
        let v = verdict(1, None, Some(1));
        let sync = Sync::default();
        let observed = Observed {
            generation: 1,
            verdict: &v,
            selected: 0,
            sync: &sync,
        };
        let first = desired(&observed, None, at(1000));
        let again = desired(&observed, Some(&first), at(2000));
        assert_eq!(first, again, "an unchanged status is recomputed equal");

        let refusing = Sync {
            refusing: 1,
            last_nack: Some("unknown provider kind".into()),
            ..Sync::default()
        };
        let degraded = desired(
            &Observed {
                sync: &refusing,
                ..observed
            },
            Some(&again),
            at(3000),
        );
        assert_eq!(find(&degraded, DEGRADED).last_transition_time.0, at(3000));
        assert_eq!(find(&degraded, READY).last_transition_time.0, at(1000));
        assert_eq!(
            find(&degraded, DEGRADED).message,
            "1 sidecar refused generation 1: unknown provider kind"
        );
        assert_eq!(degraded.last_nack.as_deref(), Some("unknown provider kind"));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let out = cut(long);
        assert!(out.len() <= MAX_MESSAGE_BYTES);
        assert!(out.ends_with("..."));
    }
}
