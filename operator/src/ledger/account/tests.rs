use super::*;

fn at(secs: u64) -> Instant {
    // Instants only compare with each other here; a fixed base keeps them deterministic.
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_secs(secs)
}

#[test]
fn grants_shrink_as_the_budget_runs_out_and_never_exceed_it() {
    assert_eq!(grant_size(1000, 1, 10), 500);
    assert_eq!(grant_size(1000, 5, 10), 100);
    assert_eq!(grant_size(1000, 100, 10), 10, "the floor");
    assert_eq!(grant_size(7, 100, 10), 7, "never more than there is");
    assert_eq!(grant_size(0, 1, 10), 0);
    assert_eq!(grant_size(1000, 0, 10), 500, "no active count: one");
}

#[test]
fn reports_move_held_allowance_to_spent() {
    let mut account = Account::new(1000, 100, 0);
    assert_eq!(account.grant("a", u64::MAX, 0, 2, 1), 225); // (1000-100)/4
    assert_eq!(account.grant("b", u64::MAX, 0, 2, 1), 168); // 675/4
    assert_eq!(account.unallocated(), 1000 - 100 - 225 - 168);
    account.report("a", 200, 25, true, at(0));
    assert_eq!((account.spent(), account.holds("a")), (300, 25));
    // Claims to hold more than granted: capped.
    account.report("b", 0, 10_000, true, at(0));
    assert_eq!(account.holds("b"), 168);
    // Gives some back.
    account.report("b", 0, 100, true, at(0));
    assert_eq!(account.holds("b"), 100);
    account.report("a", 25, 0, true, at(0));
    assert_eq!(account.holds("a"), 0);
    assert_eq!(account.spent() + account.held(), 325 + 100);
}

#[test]
fn want_caps_a_grant_but_not_below_the_floor() {
    let mut account = Account::new(1_000_000, 0, 0);
    assert_eq!(account.grant("a", 0, 0, 1, 10), 0, "no want, no grant");
    assert_eq!(account.grant("a", 50, 0, 1, 10), 50);
    assert_eq!(account.grant("a", 3, 0, 1, 10), 10, "the floor");
    assert_eq!(account.holds("a"), 60);
}

#[test]
fn a_waiting_request_gets_what_it_needs_even_above_a_fair_share() {
    let mut account = Account::new(1000, 0, 0);
    // Five busy sidecars: a fair share of 1000 is 100.
    assert_eq!(account.grant("a", 500, 0, 5, 1), 100);
    // One request needs 300: granted, since that much is unallocated.
    assert_eq!(account.grant("b", 500, 300, 5, 1), 300);
    // Need is capped by what is left.
    assert_eq!(account.grant("c", 0, 900, 5, 1), 600);
    assert_eq!(account.unallocated(), 0);
}

#[test]
fn a_sidecar_unknown_since_the_restart_is_believed_and_claims_the_unclaimed() {
    // Status said 300 spent and 200 held when this leader started.
    let mut account = Account::new(1000, 300, 200);
    assert_eq!(account.unallocated(), 500);
    // The sidecar that holds 150 of it reports first: believed, out of the unclaimed pool.
    account.report("a", 0, 150, false, at(0));
    assert_eq!((account.holds("a"), account.held()), (150, 200));
    // A report it wrote earlier (re-sent after the reconnect) says less: not a give-back
    // while it has not heard from this leader.
    account.report("a", 0, 120, false, at(0));
    assert_eq!(account.holds("a"), 150);
    // A later one says more (a grant of the old leader arrived after the first was
    // written): believed.
    account.report("a", 0, 170, false, at(0));
    assert_eq!((account.holds("a"), account.held()), (170, 200));
    // Once it has heard from this leader its claim is fresh and believed, even lower...
    account.report("a", 10, 140, true, at(1));
    assert_eq!((account.spent(), account.holds("a")), (310, 140));
    // ...and from then on capped by what it was believed to hold.
    account.report("a", 0, 900, true, at(1));
    assert_eq!(account.holds("a"), 140);
    // A claim above what was unclaimed (a grant the old leader made after its last
    // write) is believed too, up to what is not spent: over-reserving is the safe side.
    account.report("b", 0, 400, false, at(1));
    assert_eq!(account.holds("b"), 400);
    assert_eq!(account.held(), 540);
    assert_eq!(account.unallocated(), 150);
    // Never more than the limit leaves.
    account.report("c", 0, u64::MAX, false, at(1));
    assert_eq!(account.holds("c"), 690);
    assert_eq!(account.unallocated(), 0);
    // The grace ends: nothing unclaimed is left anyway here.
    let mut fresh = Account::new(1000, 300, 200);
    assert!(fresh.expire_unclaimed());
    assert_eq!(fresh.unallocated(), 700);
}

#[test]
fn active_counts_recent_spenders_only() {
    let mut account = Account::new(1000, 0, 0);
    account.report("a", 1, 0, true, at(0));
    account.report("b", 0, 0, true, at(10));
    account.report("c", 5, 0, true, at(30));
    assert_eq!(account.active(at(40)), 2);
    assert_eq!(account.active(at(61)), 1, "a spent over a minute ago");
    assert_eq!(account.active(at(200)), 0);
}

#[test]
fn thresholds_are_crossed_once() {
    let mut account = Account::new(1000, 0, 0);
    let thresholds = [50, 80, 100];
    account.report("a", 499, 0, true, at(0));
    assert_eq!(account.cross(&thresholds), Vec::<u32>::new());
    account.report("a", 1, 0, true, at(0));
    assert_eq!(account.cross(&thresholds), vec![50]);
    assert_eq!(account.cross(&thresholds), Vec::<u32>::new(), "once");
    account.report("a", 600, 0, true, at(0));
    assert_eq!(account.cross(&thresholds), vec![80, 100], "both at once");
    // A raised amount brings spend under 80% again; crossing it again is not news.
    account.set_limit(10_000);
    account.report("a", 7000, 0, true, at(0));
    assert_eq!(account.cross(&thresholds), Vec::<u32>::new());
    assert!(account.note_exhaustion());
    assert!(!account.note_exhaustion());
}

#[test]
fn exhaustion_lifts_for_those_told_once_something_is_left() {
    let mut account = Account::new(100, 0, 0);
    assert_eq!(account.grant("a", u64::MAX, 0, 1, 100), 100);
    account.told_exhausted("b");
    assert_eq!(account.lift_exhaustion(), Vec::<String>::new(), "all held");
    account.report("a", 10, 40, true, at(0)); // spent 10, gives 50 back
    assert_eq!(account.unallocated(), 50);
    assert_eq!(account.lift_exhaustion(), vec!["b".to_string()]);
    assert_eq!(account.lift_exhaustion(), Vec::<String>::new(), "told once");
    assert_eq!(account.release("a"), 40);
    assert_eq!(account.unallocated(), 90);
}

/// Many sidecars asking, spending at most what they hold, reporting in any order, some of
/// them giving back: recorded spend never exceeds the limit, and every nano-dollar is
/// accounted for.
#[test]
fn the_invariant_holds_under_random_traffic() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        let limit = rng.u64(1..10_000_000);
        let mut account = Account::new(limit, 0, 0);
        let sidecars = ["a", "b", "c", "d", "e"];
        let mut local: BTreeMap<&str, u64> = BTreeMap::new(); // what each still holds
        for step in 0..500 {
            let s = sidecars[rng.usize(..sidecars.len())];
            match rng.u8(..4) {
                0 => {
                    let want = if rng.bool() {
                        u64::MAX
                    } else {
                        rng.u64(0..limit)
                    };
                    let need = if rng.bool() { rng.u64(0..limit) } else { 0 };
                    let got = account.grant(s, want, need, rng.u32(1..6), rng.u64(0..1000));
                    *local.entry(s).or_default() += got;
                }
                1 => {
                    // Gives part back.
                    let holds = local.entry(s).or_default();
                    *holds -= rng.u64(0..=*holds);
                    account.report(s, 0, *holds, true, at(step));
                }
                _ => {
                    let holds = local.entry(s).or_default();
                    let spend = rng.u64(0..=*holds);
                    *holds -= spend;
                    account.report(s, spend, *holds, true, at(step));
                }
            }
            assert!(account.spent() + account.held() <= limit);
            assert_eq!(account.held(), local.values().sum::<u64>());
        }
    }
}
