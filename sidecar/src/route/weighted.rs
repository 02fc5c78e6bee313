//! Weighted random order without replacement.

/// Appends `items` to `out` in a random order where each next item is drawn with
/// probability proportional to its weight among those not yet drawn. The first item is
/// therefore an ordinary weighted choice.
pub fn order<T: Clone>(
    items: &[T],
    weight: impl Fn(&T) -> u32,
    rng: &mut fastrand::Rng,
    out: &mut Vec<T>,
) {
    let start = out.len();
    let mut remaining: u64 = items.iter().map(|i| u64::from(weight(i))).sum();
    let mut taken = vec![false; items.len()];
    for _ in 0..items.len() {
        if remaining == 0 {
            break;
        }
        let mut ticket = rng.u64(0..remaining);
        for (i, item) in items.iter().enumerate() {
            if taken[i] {
                continue;
            }
            let w = u64::from(weight(item));
            if ticket < w {
                taken[i] = true;
                remaining -= w;
                out.push(item.clone());
                break;
            }
            ticket -= w;
        }
    }
    // Zero-weight items (not valid in a ModelRoute, but harmless here) go last.
    for (i, item) in items.iter().enumerate() {
        if !taken[i] && out.len() - start < items.len() {
            out.push(item.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_appears_once() {
        let items = [("a", 5), ("b", 1), ("c", 3)];
        for _ in 0..100 {
            let mut out = Vec::new();
            order(&items, |i| i.1, &mut fastrand::Rng::new(), &mut out);
            let mut names: Vec<_> = out.iter().map(|i| i.0).collect();
            names.sort_unstable();
            assert_eq!(names, ["a", "b", "c"]);
        }
    }

    #[test]
    fn first_choice_follows_the_weights() {
        let mut rng = fastrand::Rng::with_seed(7);
        let items = [("a", 90), ("b", 10)];
        let n = 20_000;
        let mut a_first = 0;
        for _ in 0..n {
            let mut out = Vec::new();
            order(&items, |i| i.1, &mut rng, &mut out);
            if out[0].0 == "a" {
                a_first += 1;
            }
        }
        let share = f64::from(a_first) / f64::from(n);
        // 90% expected; 4 standard deviations of a binomial(20000, 0.9) is about 0.85%.
        assert!((share - 0.9).abs() < 0.0085, "share {share}");
    }

    #[test]
    fn a_single_item_is_always_first() {
        let mut out = vec![("x", 0)];
        order(&[("only", 1)], |i| i.1, &mut fastrand::Rng::new(), &mut out);
        assert_eq!(out, [("x", 0), ("only", 1)]);
    }
}
