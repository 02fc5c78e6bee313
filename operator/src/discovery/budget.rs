//! A session's side of the budget ledger: usage reports in, grants out, and the pod's
//! rate-limit shares.
//!
//! Every report is answered at once (`answers_seq` = its seq) with what the ledger granted
//! from memory; `applied_seq` only ever says what is durable, so it may lag and is pushed
//! again when the ledger's writes catch up.

use modelroute_proto::{Grants, OperatorMessage, RateShare, RateShares, Usage, operator_message};

use super::registry::{Contents, Registry};
use crate::index::{ObjectKey, World};
use crate::ledger::{Ledger, rates};

/// The ledger state of one session.
#[derive(Debug)]
pub(super) struct Budgeting {
    pod: ObjectKey,
    /// The sidecar process whose reports this session answers.
    incarnation: Option<String>,
    /// The `applied_seq` last sent.
    acked_sent: u64,
    /// The rate shares last sent.
    shares_sent: Option<Vec<RateShare>>,
}

// === impl Budgeting ===

impl Budgeting {
    pub(super) fn new(pod: ObjectKey) -> Self {
        Self {
            pod,
            incarnation: None,
            acked_sent: 0,
            shares_sent: None,
        }
    }

    /// Applies `usage` and answers it.
    pub(super) fn on_usage(&mut self, ledger: &Ledger, usage: &Usage) -> OperatorMessage {
        if self.incarnation.as_deref() != Some(usage.incarnation.as_str()) {
            // A new process on this stream (never expected): nothing carries over.
            self.incarnation = Some(usage.incarnation.clone());
            self.acked_sent = 0;
        }
        let answer = ledger.report(&self.pod, usage);
        self.acked_sent = self
            .acked_sent
            .max(ledger.acked(&self.pod, &usage.incarnation));
        grants(Grants {
            applied_seq: self.acked_sent,
            grants: answer.grants,
            rate_shares: None,
            answers_seq: usage.seq,
        })
    }

    /// Acknowledgements that advanced and keys no longer exhausted, if any.
    pub(super) fn pushes(&mut self, ledger: &Ledger) -> Option<OperatorMessage> {
        let acked = match &self.incarnation {
            Some(incarnation) => ledger.acked(&self.pod, incarnation),
            None => 0,
        };
        let notices = ledger.take_notices(&self.pod);
        if acked <= self.acked_sent && notices.is_empty() {
            return None;
        }
        self.acked_sent = self.acked_sent.max(acked);
        Some(grants(Grants {
            applied_seq: self.acked_sent,
            grants: notices,
            rate_shares: None,
            answers_seq: 0,
        }))
    }

    /// The pod's rate shares for the ModelRoutes it receives (`routes`), when they differ
    /// from the ones last sent.
    pub(super) fn shares(
        &mut self,
        world: &World,
        routes: &Contents,
        registry: &Registry,
    ) -> Option<OperatorMessage> {
        let published = routes.iter().filter_map(|(k, _)| world.routes.get(k));
        let shares = rates::shares(published.map(AsRef::as_ref), |k| registry.receivers(k));
        let unchanged = match &self.shares_sent {
            Some(sent) => *sent == shares,
            None => shares.is_empty(),
        };
        if unchanged {
            return None;
        }
        self.shares_sent = Some(shares.clone());
        Some(grants(Grants {
            applied_seq: self.acked_sent,
            grants: Vec::new(),
            rate_shares: Some(RateShares { shares }),
            answers_seq: 0,
        }))
    }

    /// Whether the pod has rate shares (so how many sidecars are connected matters).
    pub(super) fn has_shares(&self) -> bool {
        self.shares_sent.as_ref().is_some_and(|s| !s.is_empty())
    }
}

fn grants(g: Grants) -> OperatorMessage {
    OperatorMessage {
        message: Some(operator_message::Message::Grants(g)),
    }
}
