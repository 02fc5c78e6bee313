//! Latency statistics per upstream target, and power-of-two-choices ordering by them.
//!
//! The selection score is a peak-sensitive, time-decayed EWMA of time to first token, as in
//! Finagle's and Linkerd's peak EWMA balancers: the weight of old data depends on the time
//! since it was seen, not on how many samples came since, so a burst of requests does not
//! flush the history and a long pause does not leave old numbers in charge. Quantiles come
//! from a small window of recent samples. Time is passed in, so all of it is tested without
//! sleeping and the caller decides where the clock is read.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Decay constant of the EWMAs: a sample `TAU` old weighs 1/e of a fresh one. Ten seconds
/// (Linkerd's default) follows a slowdown within a few requests of a busy route without
/// swinging on every single slow answer.
const TAU: Duration = Duration::from_secs(10);
/// With no sample for this long, the estimate is dropped: the target counts as unmeasured,
/// which the selector treats as fast so that one request probes it again. That is how a
/// target that was avoided while slow is noticed once it has recovered.
const STALE_AFTER: Duration = Duration::from_secs(30);
/// Failure penalty bounds. The floor ranks a failing target behind healthy ones even before
/// anything was measured; the cap keeps repeated failures (each doubling the estimate) from
/// growing without end, so that successes bring a recovered target back within a minute.
const FAILURE_FLOOR: Duration = Duration::from_secs(1);
const FAILURE_CAP: Duration = Duration::from_secs(30);
/// Samples kept for quantiles: enough for a p95 to mean something, small enough to copy and
/// sort on every read.
const WINDOW: usize = 128;
/// Samples older than this are left out of quantiles even when the window is not full: a
/// quiet target's quantile should not describe how it behaved an hour ago.
const WINDOW_HORIZON: Duration = Duration::from_secs(5 * 60);
/// Fewer recent samples than this give no quantile: a p90 of three numbers is noise.
const MIN_SAMPLES: usize = 5;
/// Share of orderings whose first target is drawn uniformly at random. Without it, a target
/// that measured slow once would only be retried once its data went stale; with it, every
/// target keeps getting a trickle of requests that keeps its numbers current.
const EXPLORE: f64 = 0.05;

/// Latency of one upstream target (provider and model), shared by every route using it and
/// kept across config reloads. Updated once per try from any task; the lock is held for a
/// few arithmetic operations and never across an `.await`.
#[derive(Debug, Default)]
pub struct LatencyStats {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    first_token: Option<Ewma>,
    total: Option<Ewma>,
    /// Recent times to first token of successful tries, oldest first.
    window: VecDeque<(Duration, Instant)>,
}

/// An estimate in seconds and when it was last updated.
#[derive(Clone, Copy, Debug)]
struct Ewma {
    value: f64,
    at: Instant,
}

// === impl LatencyStats ===

impl LatencyStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the time to first byte (or token) of a successful try.
    pub fn first_token(&self, d: Duration, now: Instant) {
        let mut state = self.lock();
        // Peak-sensitive: one slow answer is taken at once, so a slowdown moves traffic
        // away immediately; coming back down takes the decay, so one fast answer does not
        // clear it.
        observe(&mut state.first_token, d.as_secs_f64(), now, true);
        if state.window.len() == WINDOW {
            state.window.pop_front();
        }
        state.window.push_back((d, now));
    }

    /// Records the whole duration of a successful request. It depends on how much the model
    /// wrote, so it is kept for reporting ([`LatencyStats::total_estimate`]), not for the score.
    pub fn total(&self, d: Duration, now: Instant) {
        // Not peak-sensitive: a long answer is not a slow target.
        observe(&mut self.lock().total, d.as_secs_f64(), now, false);
    }

    /// Records a failed try (error, timeout). It counts as a first-token sample of twice the
    /// current estimate, within [1 s, 30 s] and never below the estimate: a target that fails
    /// fast must not look fast, and one that keeps failing sinks further behind those that
    /// answer. Failures stay out of the quantile window, which describes successful answers.
    pub fn failure(&self, now: Instant) {
        let mut state = self.lock();
        let current = fresh(state.first_token, now).unwrap_or(0.0);
        let penalty = (2.0 * current)
            .clamp(FAILURE_FLOOR.as_secs_f64(), FAILURE_CAP.as_secs_f64())
            .max(current);
        observe(&mut state.first_token, penalty, now, true);
    }

    /// The selection score: the EWMA of time to first token in seconds, lower is better.
    /// `None` when nothing was recorded in the last 30 s (unmeasured: worth a probe).
    pub fn score(&self, now: Instant) -> Option<f64> {
        fresh(self.lock().first_token, now)
    }

    /// The EWMA of whole request durations, `None` when nothing was recorded in the last 30 s.
    pub fn total_estimate(&self, now: Instant) -> Option<Duration> {
        fresh(self.lock().total, now).and_then(|s| Duration::try_from_secs_f64(s).ok())
    }

    /// The `q` quantile (0.9 for p90; clamped into [0, 1]) of the time to first token of the
    /// last 128 successful tries within 5 minutes, by nearest rank. `None` with fewer than 5
    /// such samples.
    pub fn quantile(&self, q: f64, now: Instant) -> Option<Duration> {
        let mut recent = [Duration::ZERO; WINDOW];
        let mut n = 0;
        for &(d, at) in &self.lock().window {
            if now.saturating_duration_since(at) <= WINDOW_HORIZON {
                recent[n] = d;
                n += 1;
            }
        }
        if n < MIN_SAMPLES {
            return None;
        }
        // Nearest rank: the smallest sample with at least q of them at or below it. The
        // float-to-int cast saturates (a NaN `q` gives the minimum). Selecting it is linear;
        // the cost strategy asks for every target on every request.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n) - 1;
        let (_, at_rank, _) = recent[..n].select_nth_unstable(rank);
        Some(*at_rank)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the numbers are always valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Appends to `out` the indexes of `candidates` (each exactly once) in the order to try
/// them. The first is the better of two distinct candidates drawn at random (power of two
/// choices: load spreads over the fast targets instead of piling onto the single fastest,
/// whose numbers lag behind the load it gets), or, in 5% of orderings, one drawn uniformly
/// (exploration). The rest, the failover order, are sorted best first; ties keep the order
/// of `candidates`. Unmeasured targets (`score` is `None`) rank before measured ones, so
/// they get probed.
pub fn p2c_order(candidates: &[&LatencyStats], now: Instant, out: &mut Vec<usize>) {
    let n = candidates.len();
    // Scores are read once: they may change under us, and sorting needs a consistent order.
    let scores: Vec<Option<f64>> = candidates.iter().map(|c| c.score(now)).collect();
    let first = match n {
        0 => return,
        1 => 0,
        _ if fastrand::f64() < EXPLORE => fastrand::usize(..n),
        _ => {
            let a = fastrand::usize(..n);
            // A second draw among the others, shifted past `a`: two distinct candidates.
            let b = fastrand::usize(..n - 1);
            let b = if b >= a { b + 1 } else { b };
            if by_score(scores[b], scores[a]).is_lt() {
                b
            } else {
                a
            }
        }
    };
    out.push(first);
    let start = out.len();
    out.extend((0..n).filter(|&i| i != first));
    // Stable: equal targets fail over in configured order.
    out[start..].sort_by(|&a, &b| by_score(scores[a], scores[b]));
}

/// Unmeasured first, then ascending score.
fn by_score(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        // `None < Some(_)` for `Option`'s own order.
        _ => a.is_some().cmp(&b.is_some()),
    }
}

/// The estimate, unless it is missing or stale.
fn fresh(estimate: Option<Ewma>, now: Instant) -> Option<f64> {
    let e = estimate?;
    (now.saturating_duration_since(e.at) <= STALE_AFTER).then_some(e.value)
}

/// Folds `sample` (seconds) into `estimate`. With `peak`, a sample above the estimate
/// replaces it at once.
fn observe(estimate: &mut Option<Ewma>, sample: f64, now: Instant, peak: bool) {
    let Some(e) = *estimate else {
        *estimate = Some(Ewma {
            value: sample,
            at: now,
        });
        return;
    };
    // Reports from different tasks may arrive out of order: an earlier `now` counts as no
    // time passed, and `at` never goes back.
    let elapsed = now.saturating_duration_since(e.at);
    let value = if elapsed > STALE_AFTER || (peak && sample > e.value) {
        // Stale data is forgotten, not blended: it already counts as unmeasured.
        sample
    } else {
        let old = (-elapsed.as_secs_f64() / TAU.as_secs_f64()).exp();
        e.value * old + sample * (1.0 - old)
    };
    *estimate = Some(Ewma {
        value,
        at: e.at.max(now),
    });
}

#[cfg(test)]
mod tests;
