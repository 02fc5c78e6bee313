use super::*;

const SEC: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn assert_near(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("a fresh estimate");
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

/// How often each candidate comes first over `n` orderings.
fn first_counts(candidates: &[&LatencyStats], now: Instant, n: u32) -> Vec<u32> {
    let mut counts = vec![0; candidates.len()];
    let mut out = Vec::new();
    for _ in 0..n {
        out.clear();
        p2c_order(candidates, now, &mut out);
        counts[out[0]] += 1;
    }
    counts
}

#[test]
fn it_is_shared_between_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LatencyStats>();
}

#[test]
fn the_estimate_moves_by_elapsed_time_not_by_sample_count() {
    let t0 = Instant::now();
    let s = LatencyStats::new();
    assert_eq!(s.score(t0), None);
    s.first_token(ms(500), t0);
    assert_near(s.score(t0), 0.5);

    // Ten seconds later (one TAU) the old value keeps a weight of 1/e.
    let t1 = t0 + 10 * SEC;
    s.first_token(ms(100), t1);
    let e = (-1.0_f64).exp();
    assert_near(s.score(t1), 0.5 * e + 0.1 * (1.0 - e));

    // A burst of a hundred fast answers within 10 ms hardly moves it...
    let before = s.score(t1).expect("fresh");
    for i in 1..=100 {
        s.first_token(ms(100), t1 + Duration::from_micros(100 * i));
    }
    let after = s.score(t1 + ms(10)).expect("fresh");
    assert!(
        after < before && before - after < 0.001,
        "{before} -> {after}"
    );

    // ...while one answer after a 20 s pause mostly replaces it.
    let t2 = t1 + ms(10) + 20 * SEC;
    s.first_token(ms(100), t2);
    let e2 = (-2.0_f64).exp();
    assert_near(s.score(t2), after * e2 + 0.1 * (1.0 - e2));
}

#[test]
fn a_slower_answer_is_taken_at_once() {
    let t0 = Instant::now();
    let s = LatencyStats::new();
    s.first_token(ms(100), t0);
    s.first_token(ms(900), t0 + ms(1));
    assert_near(s.score(t0 + ms(1)), 0.9);

    // Whole durations are smoothed both ways: a long answer is not a slow target.
    s.total(SEC, t0);
    s.total(5 * SEC, t0 + ms(1));
    let total = s.total_estimate(t0 + ms(1)).expect("fresh");
    assert!(total < Duration::from_millis(1001), "{total:?}");
}

#[test]
fn a_failure_doubles_the_estimate_within_bounds() {
    let t0 = Instant::now();

    let unmeasured = LatencyStats::new();
    unmeasured.failure(t0);
    assert_near(unmeasured.score(t0), 1.0); // the floor

    let fast = LatencyStats::new();
    fast.first_token(ms(100), t0);
    fast.failure(t0 + ms(1));
    assert_near(fast.score(t0 + ms(1)), 1.0);

    let slow = LatencyStats::new();
    slow.first_token(2 * SEC, t0);
    slow.failure(t0 + ms(1));
    assert_near(slow.score(t0 + ms(1)), 4.0);
    // Failing again and again: 8, 16, then the cap.
    for i in 2..10 {
        slow.failure(t0 + ms(i));
    }
    assert_near(slow.score(t0 + ms(9)), 30.0);

    // Above the cap already: a failure never makes a target look faster.
    let glacial = LatencyStats::new();
    glacial.first_token(40 * SEC, t0);
    glacial.failure(t0 + ms(1));
    assert_near(glacial.score(t0 + ms(1)), 40.0);

    // Failures are not answers: they stay out of the quantiles.
    for i in 0..10 {
        unmeasured.failure(t0 + ms(i));
    }
    assert_eq!(unmeasured.quantile(0.5, t0 + ms(10)), None);
}

#[test]
fn stale_data_counts_as_unmeasured_and_is_then_forgotten() {
    let t0 = Instant::now();
    let s = LatencyStats::new();
    s.first_token(SEC, t0);
    s.total(3 * SEC, t0);
    assert_near(s.score(t0 + 30 * SEC), 1.0);
    assert_eq!(s.score(t0 + 30 * SEC + ms(1)), None);
    assert_eq!(s.total_estimate(t0 + 30 * SEC + ms(1)), None);

    // The next answer starts a new estimate instead of blending with the old one.
    s.first_token(ms(100), t0 + 40 * SEC);
    assert_near(s.score(t0 + 40 * SEC), 0.1);
}

#[test]
fn an_earlier_report_arriving_late_does_not_move_time_back() {
    let t0 = Instant::now();
    let s = LatencyStats::new();
    s.first_token(ms(500), t0 + 10 * SEC);
    // Measured by a task that read the clock before the report above: no time passed.
    s.first_token(ms(100), t0);
    assert_near(s.score(t0 + 10 * SEC), 0.5);
    assert_near(s.score(t0 + 40 * SEC), 0.5);
}

#[test]
fn quantiles_by_nearest_rank() {
    let t0 = Instant::now();
    let s = LatencyStats::new();
    // Recorded out of order: the window is sorted on read.
    for i in (1..=100).rev() {
        s.first_token(ms(i), t0);
    }
    assert_eq!(s.quantile(0.90, t0), Some(ms(90)));
    assert_eq!(s.quantile(0.95, t0), Some(ms(95)));
    assert_eq!(s.quantile(0.5, t0), Some(ms(50)));
    assert_eq!(s.quantile(1.0, t0), Some(ms(100)));
    assert_eq!(s.quantile(0.0, t0), Some(ms(1)));
    assert_eq!(s.quantile(7.0, t0), Some(ms(100)), "clamped");
    assert_eq!(s.quantile(f64::NAN, t0), Some(ms(1)));

    // Only the last 128 are kept: after 1..=200, the smallest left is 73.
    let s = LatencyStats::new();
    for i in 1..=200 {
        s.first_token(ms(i), t0);
    }
    assert_eq!(s.quantile(0.0, t0), Some(ms(73)));

    let few = LatencyStats::new();
    for i in 1..=4 {
        few.first_token(ms(i), t0);
    }
    assert_eq!(few.quantile(0.9, t0), None);
    few.first_token(ms(5), t0);
    assert_eq!(few.quantile(0.9, t0), Some(ms(5)));
}

#[test]
fn quantiles_leave_out_samples_older_than_five_minutes() {
    let t0 = Instant::now();
    let s = LatencyStats::new();
    for _ in 0..10 {
        s.first_token(SEC, t0);
    }
    let t1 = t0 + 4 * 60 * SEC;
    for _ in 0..10 {
        s.first_token(ms(100), t1);
    }
    assert_eq!(s.quantile(0.9, t0 + 5 * 60 * SEC), Some(SEC));
    assert_eq!(s.quantile(0.9, t0 + 5 * 60 * SEC + ms(1)), Some(ms(100)));
    assert_eq!(s.quantile(0.9, t1 + 5 * 60 * SEC + ms(1)), None);
}

#[test]
fn p2c_mostly_picks_the_faster_and_still_explores() {
    fastrand::seed(7);
    let t0 = Instant::now();
    let (fast, slow) = (LatencyStats::new(), LatencyStats::new());
    fast.first_token(ms(100), t0);
    slow.first_token(ms(500), t0);
    let n = 10_000;
    let counts = first_counts(&[&slow, &fast], t0, n);
    // Expected: the slow one only from exploration, 5% x 1/2.
    assert!(counts[1] >= n * 90 / 100, "{counts:?}");
    assert!(counts[0] >= n / 100, "{counts:?}");
}

#[test]
fn p2c_probes_an_unmeasured_target_first() {
    fastrand::seed(11);
    let t0 = Instant::now();
    let (measured, new) = (LatencyStats::new(), LatencyStats::new());
    measured.first_token(ms(10), t0);
    let n = 1_000;
    let counts = first_counts(&[&measured, &new], t0, n);
    assert!(counts[1] >= n * 90 / 100, "{counts:?}");
}

#[test]
fn p2c_orders_every_index_once_and_fails_over_best_first() {
    fastrand::seed(3);
    let t0 = Instant::now();
    let stats: Vec<LatencyStats> = (0..5).map(|_| LatencyStats::new()).collect();
    // Scores: 0.3, unmeasured, 0.1, 0.2, unmeasured.
    stats[0].first_token(ms(300), t0);
    stats[2].first_token(ms(100), t0);
    stats[3].first_token(ms(200), t0);
    let all: Vec<&LatencyStats> = stats.iter().collect();

    for n in 0..=all.len() {
        for _ in 0..200 {
            // Appends: what is already in `out` stays.
            let mut out = vec![99];
            p2c_order(&all[..n], t0, &mut out);
            assert_eq!(out[0], 99);
            let mut seen = out[1..].to_vec();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    for _ in 0..200 {
        let mut out = Vec::new();
        p2c_order(&all, t0, &mut out);
        let expected: Vec<usize> = [1, 4, 2, 3, 0]
            .into_iter()
            .filter(|&i| i != out[0])
            .collect();
        assert_eq!(out[1..], expected, "first {}", out[0]);
    }
}

#[test]
fn traffic_leaves_a_slow_target_and_returns_after_it_recovers() {
    fastrand::seed(42);
    let t0 = Instant::now();
    let stats = [
        LatencyStats::new(),
        LatencyStats::new(),
        LatencyStats::new(),
    ];
    let all: Vec<&LatencyStats> = stats.iter().collect();
    // Target 2 answers in about a second between 2 and 4 minutes, else like the others.
    let latency = |target: usize, at: Duration| {
        let base = if target == 2 && (120..240).contains(&at.as_secs()) {
            1_000
        } else {
            100
        };
        ms(base + fastrand::u64(0..20))
    };
    // One request every half second; the first target in the order answers.
    let mut shares = Vec::new();
    let mut out = Vec::new();
    let mut counts = [0_u32; 3];
    for step in 0..960_u32 {
        let at = ms(500 * u64::from(step));
        let now = t0 + at;
        out.clear();
        p2c_order(&all, now, &mut out);
        let target = out[0];
        stats[target].first_token(latency(target, at), now);
        counts[target] += 1;
        if step % 240 == 239 {
            shares.push(f64::from(counts[2]) / 240.0);
            counts = [0; 3];
        }
    }
    // Minutes 0-2 even, 2-4 slow, 4-6 recovering, 6-8 recovered.
    let [before, slow, _, after] = shares[..] else {
        panic!("{shares:?}");
    };
    // A third each when even (latency alone does not balance equals exactly, hence the
    // margin); while slow, only exploration and stale-data probes reach it.
    assert!(before > 0.15, "{shares:?}");
    assert!(slow < 0.07, "{shares:?}");
    assert!(after > 0.15, "{shares:?}");
}
