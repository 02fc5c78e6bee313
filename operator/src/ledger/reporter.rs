//! What the ledger remembers of one sidecar process (pod and incarnation): which reports
//! were applied, which of them are durable, and which answers carried allowance the
//! sidecar may not have applied yet.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::key::AccountKey;

/// Answers with allowance remembered per sidecar process until it says it applied them; a
/// sidecar that never says so cannot make the ledger remember more.
pub const MAX_ANSWERS: usize = 256;

/// A sidecar incarnation that has not reported for this long is forgotten.
pub const REPORTER_IDLE: Duration = Duration::from_secs(3600);

/// What the ledger remembers of one sidecar incarnation.
#[derive(Debug)]
pub(super) struct Reporter {
    pub(super) last_applied: u64,
    /// The highest seq whose spend (and that of every seq before it) is durable.
    pub(super) durable: u64,
    /// Applied reports waiting for durability: (seq, epoch that makes it durable).
    pub(super) pending: VecDeque<(u64, u64)>,
    /// Answers that added allowance, by the seq they answer, until a report says they were
    /// applied (`answers_applied`): on the wire when later reports were written.
    pub(super) answers: VecDeque<(u64, Vec<(AccountKey, u64)>)>,
    /// The seq of the first report this leader answered: a report with `answers_applied`
    /// at or above it was written knowing this leader's grants.
    pub(super) first_answer: Option<u64>,
    pub(super) last_seen: Instant,
}

// === impl Reporter ===

impl Reporter {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            last_applied: 0,
            durable: 0,
            pending: VecDeque::new(),
            answers: VecDeque::new(),
            first_answer: None,
            last_seen: now,
        }
    }

    /// Allowance for `key` in answers not applied yet.
    pub(super) fn in_flight(&self, key: &AccountKey) -> u64 {
        self.answers
            .iter()
            .flat_map(|(_, added)| added)
            .filter(|(k, _)| k == key)
            .fold(0, |sum, (_, a)| sum.saturating_add(*a))
    }

    /// Acknowledges what `durable` covers, in order. Returns whether anything moved.
    pub(super) fn advance(&mut self, durable: u64) -> bool {
        let before = self.durable;
        while let Some(&(seq, needs)) = self.pending.front() {
            if needs > durable {
                break;
            }
            self.durable = seq;
            self.pending.pop_front();
        }
        self.durable != before
    }
}
