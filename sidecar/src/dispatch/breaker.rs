//! A circuit breaker per target.
//!
//! Closed: requests flow and consecutive failures are counted. Open: the target is skipped
//! until the cool-down ends. Half-open: exactly one probe goes through; its success closes
//! the circuit, its failure opens it for another cool-down.

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::config::BreakerPolicy;

/// Breaker state, shared by every route using the same endpoint and model, and kept
/// across config reloads.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    /// 0 closed, 1 half-open, 2 open.
    gauge: Gauge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Leave to send one request. Report how it went with [`Permit::success`] or
/// [`Permit::failure`]; a permit dropped without a report (the request was cancelled)
/// leaves the counts as they were and frees the probe slot.
#[must_use]
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    reported: bool,
}

// === impl Breaker ===

impl Breaker {
    pub fn new(gauge: Gauge) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            gauge,
        }
    }

    /// A permit, or `None` while the circuit is open (or its one probe is out).
    pub fn acquire(self: &Arc<Self>, policy: &BreakerPolicy) -> Option<Permit> {
        if policy.consecutive_failures == 0 {
            return Some(Permit {
                breaker: self.clone(),
                probe: false,
                reported: false,
            });
        }
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                self.set(&mut state, State::HalfOpen { probing: true });
                true
            }
            State::Open { .. } | State::HalfOpen { probing: true } => return None,
            State::HalfOpen { probing: false } => {
                self.set(&mut state, State::HalfOpen { probing: true });
                true
            }
        };
        Some(Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }

    /// Counts a failure seen outside a permit (a stream that broke after it started).
    pub fn record_failure(&self, policy: &BreakerPolicy) {
        if policy.consecutive_failures == 0 {
            return;
        }
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + policy.cooldown,
        };
        match *state {
            State::Closed { failures } if failures + 1 >= policy.consecutive_failures => {
                self.set(&mut state, open);
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                }
            }
            State::HalfOpen { .. } => self.set(&mut state, open),
            // Another request already opened it.
            State::Open { .. } => {}
        }
    }

    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself is always valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, state: &mut State, next: State) {
        *state = next;
        self.gauge.set(match next {
            State::Closed { .. } => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } => 2,
        });
    }
}

// === impl Permit ===

impl Permit {
    pub fn success(mut self) {
        self.reported = true;
        let b = &self.breaker;
        let mut state = b.lock();
        if !matches!(*state, State::Closed { failures: 0 }) {
            b.set(&mut state, State::Closed { failures: 0 });
        }
    }

    pub fn failure(mut self, policy: &BreakerPolicy) {
        self.reported = true;
        self.breaker.record_failure(policy);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.reported || !self.probe {
            return;
        }
        let b = &self.breaker;
        let mut state = b.lock();
        if *state == (State::HalfOpen { probing: true }) {
            b.set(&mut state, State::HalfOpen { probing: false });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            cooldown: Duration::from_secs(10),
        }
    }

    fn breaker() -> Arc<Breaker> {
        Arc::new(Breaker::new(Gauge::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        let (b, p) = (breaker(), policy());
        b.acquire(&p).unwrap().failure(&p);
        b.acquire(&p).unwrap().failure(&p);
        assert_eq!(b.state(), CircuitState::Closed);
        b.acquire(&p).unwrap().failure(&p);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.gauge.get(), 2);
        assert!(b.acquire(&p).is_none());

        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.acquire(&p).unwrap();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(b.acquire(&p).is_none(), "only one probe at a time");
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.gauge.get(), 0);
        assert!(b.acquire(&p).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_cooldown() {
        let (b, p) = (breaker(), policy());
        for _ in 0..3 {
            b.acquire(&p).unwrap().failure(&p);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        b.acquire(&p).unwrap().failure(&p);
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(b.acquire(&p).is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.acquire(&p).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let (b, p) = (breaker(), policy());
        b.acquire(&p).unwrap().failure(&p);
        b.acquire(&p).unwrap().failure(&p);
        b.acquire(&p).unwrap().success();
        b.acquire(&p).unwrap().failure(&p);
        b.acquire(&p).unwrap().failure(&p);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_frees_the_slot() {
        let (b, p) = (breaker(), policy());
        for _ in 0..3 {
            b.acquire(&p).unwrap().failure(&p);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        drop(b.acquire(&p).unwrap());
        assert!(b.acquire(&p).is_some(), "a new probe may go");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_threshold_disables_it() {
        let b = breaker();
        let p = BreakerPolicy {
            consecutive_failures: 0,
            cooldown: Duration::from_secs(1),
        };
        for _ in 0..100 {
            b.acquire(&p).unwrap().failure(&p);
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
