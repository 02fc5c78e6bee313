//! Prompt-cache affinity: requests that share a prompt prefix go to the same target, so the
//! provider's prompt cache (and its discount) applies.
//!
//! Rendezvous hashing: each target scores `hash(prefix, target)` scaled by its weight and
//! the highest score wins. Every sidecar computes the same order without coordination, a
//! target added or removed moves only its own share of prefixes, and when the first target
//! is skipped (open circuit) each prefix moves to its own second choice, not all to one.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::config::Target;

/// Appends `targets` in rendezvous order for `prefix`.
pub fn order(targets: &[Arc<Target>], prefix: u64, out: &mut Vec<Arc<Target>>) {
    let mut scored: Vec<(f64, &Arc<Target>)> = targets
        .iter()
        .map(|t| (score(prefix, t.label.as_bytes(), t.weight), t))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    out.extend(scored.into_iter().map(|(_, t)| t.clone()));
}

/// Weighted rendezvous score: `-weight / ln(u)` with `u` uniform in (0, 1) from the hash,
/// so a target wins a share of prefixes proportional to its weight.
fn score(prefix: u64, label: &[u8], weight: u32) -> f64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x6166_6669_6e69_7479).build_hasher();
    h.write_u64(prefix);
    h.write(label);
    // 53 random bits into (0, 1): never 0, so ln(u) is finite and negative.
    let u = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight.max(1)) / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores_first(labels: &[(&str, u32)], prefix: u64) -> usize {
        let best = labels
            .iter()
            .enumerate()
            .map(|(i, (l, w))| (score(prefix, l.as_bytes(), *w), i))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        best.map(|(_, i)| i).unwrap_or(0)
    }

    #[test]
    fn the_same_prefix_always_picks_the_same_target() {
        let labels = [("a/m", 1), ("b/m", 1), ("c/m", 1)];
        for prefix in 0..100u64 {
            let first = scores_first(&labels, prefix);
            assert_eq!(first, scores_first(&labels, prefix));
        }
    }

    #[test]
    fn prefixes_spread_by_weight() {
        let labels = [("a/m", 3), ("b/m", 1)];
        let n = 20_000u64;
        let a = (0..n).filter(|p| scores_first(&labels, *p) == 0).count();
        let share = a as f64 / n as f64;
        // 75% expected; 4 standard deviations of binomial(20000, 0.75) is about 1.2%.
        assert!((share - 0.75).abs() < 0.012, "share {share}");
    }

    #[test]
    fn removing_a_target_moves_only_its_prefixes() {
        let three = [("a/m", 1), ("b/m", 1), ("c/m", 1)];
        let two = [("a/m", 1), ("b/m", 1)];
        for prefix in 0..2_000u64 {
            let before = scores_first(&three, prefix);
            if before != 2 {
                assert_eq!(scores_first(&two, prefix), before, "prefix {prefix} moved");
            }
        }
    }
}
