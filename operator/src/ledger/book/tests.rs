//! The ledger's arithmetic and bookkeeping, without I/O: time is passed in.

use std::collections::BTreeMap;

use modelroute_crds::v1alpha1::STATUS_SCOPE_VALUES;
use modelroute_proto::AccountUsage;

use super::*;
use crate::fixtures::route;
use crate::index::{Index, SecretMap};

/// `team` (route scope, 1 USD a month, thresholds 50 and 80), `tenant` (header scope, 0.01 USD
/// a day), `per-pod` (pod scope, 1 USD a month).
const BUDGETS: &str = "
  providers: [{name: mock, kind: mock}]
  routes: [{model: chat, targets: [{provider: mock, model: m}]}]
  budgets:
    - {name: team, amountUsd: 1, window: monthly, thresholds: [50, 80]}
    - {name: tenant, amountUsd: \"0.01\", window: daily, scope: header, header: x-tenant}
    - {name: per-pod, amountUsd: 1, window: monthly, scope: pod}
";

const USD: u64 = 1_000_000_000;

fn wall(at: &str) -> SystemTime {
    let ts: k8s_openapi::jiff::Timestamp = at.parse().expect("a timestamp");
    SystemTime::from(ts)
}

fn base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn at(secs: u64) -> Instant {
    base() + Duration::from_secs(secs)
}

fn pod(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

/// A book following `spec` as ModelRoute `shop/chat`, at `now`.
fn book_with(spec: &str, persistent: bool, now: SystemTime) -> Book {
    let (index, _) = Index::new();
    index.update(
        &[route("shop", "chat", 1, spec)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let world = index.current();
    let mut book = Book::new(persistent);
    sync(&mut book, &world, now);
    book
}

fn sync(book: &mut Book, world: &crate::index::World, now: SystemTime) {
    let served = world
        .routes
        .values()
        .map(|p| (&p.key, p.uid.as_deref(), &p.spec));
    book.sync(served, now);
}

fn key(budget: &str, scope: &str, window: &str) -> modelroute_proto::AccountKey {
    modelroute_proto::AccountKey {
        namespace: "shop".into(),
        model_route: "chat".into(),
        budget: budget.into(),
        scope_value: scope.into(),
        window: window.into(),
    }
}

fn account_key(budget: &str, scope: &str, window: &str) -> AccountKey {
    AccountKey::new(
        BudgetRef::new(ObjectKey::new("shop", "chat"), budget),
        scope,
        window.parse().expect("a window"),
    )
}

/// (key, spent, held, want)
fn usage(
    seq: u64,
    incarnation: &str,
    accounts: &[(modelroute_proto::AccountKey, u64, u64, u64)],
) -> Usage {
    Usage {
        seq,
        incarnation: incarnation.into(),
        accounts: accounts
            .iter()
            .map(|(k, spent, held, want)| AccountUsage {
                key: Some(k.clone()),
                spent_nano_usd: *spent,
                held_nano_usd: *held,
                want_nano_usd: *want,
                need_nano_usd: 0,
            })
            .collect(),
        // It applied every earlier answer before writing this one.
        answers_applied: seq.saturating_sub(1),
    }
}

const DEC: &str = "2026-12-10T12:00:00Z";

fn spent(book: &Book, k: &AccountKey) -> u64 {
    book.account(k).map_or(0, Account::spent)
}

#[test]
fn a_report_is_applied_once_per_incarnation_and_seq() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let team = key("team", "", "2026-12");
    let k = account_key("team", "", "2026-12");
    let first = book.report(
        &pod("a"),
        &usage(1, "i1", &[(team.clone(), 100, 0, 0)]),
        at(0),
        now,
    );
    assert!(!first.duplicate);
    assert_eq!(first.grants.len(), 1);
    assert_eq!(first.grants[0].spent_nano_usd, 100);
    // Re-sent after a reconnect: answered, not applied again.
    let again = book.report(
        &pod("a"),
        &usage(1, "i1", &[(team.clone(), 100, 0, 0)]),
        at(1),
        now,
    );
    assert!(again.duplicate);
    assert_eq!(again.grants[0].spent_nano_usd, 100);
    assert_eq!(spent(&book, &k), 100);
    book.report(
        &pod("a"),
        &usage(2, "i1", &[(team.clone(), 5, 0, 0)]),
        at(2),
        now,
    );
    // A restarted sidecar starts its sequence again: a new incarnation.
    book.report(
        &pod("a"),
        &usage(1, "i2", &[(team.clone(), 7, 0, 0)]),
        at(3),
        now,
    );
    // The same seq from another pod is that pod's.
    book.report(&pod("b"), &usage(2, "i1", &[(team, 11, 0, 0)]), at(3), now);
    assert_eq!(spent(&book, &k), 123);
    // Memory only: durable at once.
    assert_eq!(book.acked(&pod("a"), "i1"), 2);
    assert_eq!(book.acked(&pod("a"), "i2"), 1);
}

#[test]
fn acknowledgements_wait_for_a_write_and_keep_order() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, true, now);
    let team = key("team", "", "2026-12");
    let a = pod("a");
    book.report(&a, &usage(1, "i", &[(team.clone(), 10, 0, 0)]), at(0), now);
    assert_eq!(book.acked(&a, "i"), 0, "spend not written yet");
    let first = book.begin_flush(false, now).expect("dirty");
    assert_eq!(first.routes.len(), 1);
    // Applied while the write is under way: belongs to the next epoch.
    book.report(&a, &usage(2, "i", &[(team.clone(), 10, 0, 0)]), at(0), now);
    // No spend: nothing to write, but it cannot be acknowledged before seq 2.
    book.report(&a, &usage(3, "i", &[(team.clone(), 0, 0, 0)]), at(0), now);
    assert!(book.flushed(first.epoch, Ok(())));
    assert_eq!(book.acked(&a, "i"), 1);
    // The next write fails: nothing more is acknowledged, the route is written again.
    let second = book.begin_flush(false, now).expect("dirty");
    assert!(!book.flushed(second.epoch, Err(vec![ObjectKey::new("shop", "chat")])));
    assert_eq!(book.acked(&a, "i"), 1);
    let third = book
        .begin_flush(false, now)
        .expect("the failed route again");
    assert_eq!(third.routes[0].0, ObjectKey::new("shop", "chat"));
    assert!(book.flushed(third.epoch, Ok(())));
    assert_eq!(book.acked(&a, "i"), 3);
    assert!(
        book.begin_flush(false, now).is_none(),
        "nothing left to write"
    );
}

#[test]
fn grants_follow_the_sizing_rule_and_the_invariant() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let team = key("team", "", "2026-12");
    let k = account_key("team", "", "2026-12");
    // Alone and asking for everything: half of it.
    let g = book.report(
        &pod("a"),
        &usage(1, "i", &[(team.clone(), 0, 0, u64::MAX)]),
        at(0),
        now,
    );
    assert_eq!(g.grants[0].added_nano_usd, USD / 2);
    assert_eq!(g.added, vec![(k.clone(), USD / 2)]);
    assert!(!g.grants[0].exhausted);
    // Asking for little: what it asked.
    let g = book.report(
        &pod("b"),
        &usage(1, "i", &[(team.clone(), 0, 0, 1000)]),
        at(0),
        now,
    );
    assert_eq!(
        g.grants[0].added_nano_usd,
        USD / 1000,
        "but not below the floor (1/1000)"
    );

    // Random traffic from five sidecars, each spending at most what it holds: the
    // recorded spend never passes the limit, and the ledger's held is what they hold.
    let mut rng = fastrand::Rng::with_seed(11);
    let mut book = book_with(BUDGETS, false, now);
    let mut holds: BTreeMap<String, u64> = BTreeMap::new();
    let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
    for step in 0..3000 {
        let name = format!("p{}", rng.u8(..5));
        let held = holds.entry(name.clone()).or_default();
        let spend = rng.u64(0..=*held);
        *held -= spend;
        let want = if rng.bool() { rng.u64(1..USD) } else { 0 };
        let seq = seqs.entry(name.clone()).or_default();
        *seq += 1;
        let answer = book.report(
            &pod(&name),
            &usage(*seq, "i", &[(team.clone(), spend, *held, want)]),
            at(step),
            now,
        );
        *held += answer.grants[0].added_nano_usd;
        let account = book.account(&k).expect("the account");
        assert!(account.spent() + account.held() <= USD);
        assert_eq!(account.held(), holds.values().sum::<u64>());
        assert_eq!(answer.grants[0].exhausted, account.unallocated() == 0);
    }
}

#[test]
fn a_grant_on_the_wire_is_not_a_give_back() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let team = key("team", "", "2026-12");
    let k = account_key("team", "", "2026-12");
    let a = pod("a");
    let granted = book.report(
        &a,
        &usage(1, "i", &[(team.clone(), 0, 0, u64::MAX)]),
        at(0),
        now,
    );
    let g = granted.grants[0].added_nano_usd;
    // Report 2 was written before the answer to 1 arrived: it says it holds 0.
    let mut stale = usage(2, "i", &[(team.clone(), 0, 0, 0)]);
    stale.answers_applied = 0;
    book.report(&a, &stale, at(1), now);
    assert_eq!(book.account(&k).map(Account::held), Some(g), "still held");
    // Once it had applied the grant, saying it holds less is a give-back.
    book.report(
        &a,
        &usage(3, "i", &[(team.clone(), 0, g / 2, 0)]),
        at(2),
        now,
    );
    assert_eq!(book.account(&k).map(Account::held), Some(g / 2));
    // After a reconnect, a report written on the old stream before answer 4 arrived is
    // re-sent: the grant of answer 4 stays held.
    let g4 = book
        .report(
            &a,
            &usage(4, "i", &[(team.clone(), 0, g / 2, 1000)]),
            at(3),
            now,
        )
        .grants[0]
        .added_nano_usd;
    let mut resent = usage(5, "i", &[(team, 0, g / 2, 0)]);
    resent.answers_applied = 3;
    book.report(&a, &resent, at(4), now);
    assert_eq!(book.account(&k).map(Account::held), Some(g / 2 + g4));
}

#[test]
fn keys_a_sidecar_may_not_report_are_ignored() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let mut other_ns = key("team", "", "2026-12");
    other_ns.namespace = "other".into();
    let cases = [
        (other_ns, KeyError::OtherNamespace),
        (key("nope", "", "2026-12"), KeyError::UnknownBudget),
        (key("team", "", "December"), KeyError::BadWindow),
        (key("team", "", "2026-10"), KeyError::StaleWindow),
        (key("team", "", "2026-12-10"), KeyError::StaleWindow),
        (key("team", "x", "2026-12"), KeyError::ScopedRoute),
        (key("per-pod", "b", "2026-12"), KeyError::OtherPod),
        (
            key("tenant", &"x".repeat(257), "2026-12-10"),
            KeyError::LongScopeValue,
        ),
    ];
    for (k, why) in cases {
        let answer = book.report(
            &pod("a"),
            &usage(1, &format!("{why:?}"), &[(k, 5, 0, 10)]),
            at(0),
            now,
        );
        assert_eq!(
            (answer.ignored, answer.grants.len()),
            (vec![why], 0),
            "{why:?}"
        );
    }
    // Its own pod, any tenant, the window before and after: booked.
    for k in [
        key("per-pod", "a", "2026-12"),
        key("tenant", "acme", "2026-12-10"),
        key("tenant", "acme", "2026-12-09"),
        key("tenant", "acme", "2026-12-11"),
        key("team", "", "2026-11"),
    ] {
        let answer = book.report(
            &pod("a"),
            &usage(1, &format!("{k:?}"), &[(k.clone(), 5, 0, 0)]),
            at(0),
            now,
        );
        assert_eq!(answer.ignored, vec![], "{k:?}");
    }
    // Nothing is granted for a window that is over.
    let past = book.report(
        &pod("a"),
        &usage(2, "p", &[(key("team", "", "2026-11"), 0, 0, 100)]),
        at(0),
        now,
    );
    assert_eq!(past.grants[0].added_nano_usd, 0);
}

#[test]
fn windows_roll_over_at_month_end() {
    let jan = wall("2026-01-31T23:59:30Z");
    let mut book = book_with(BUDGETS, false, jan);
    let team_jan = account_key("team", "", "2026-01");
    assert_eq!(spent(&book, &team_jan), 0, "opened before any spend");
    assert!(
        book.statuses(&ObjectKey::new("shop", "chat"), jan)
            .iter()
            .any(|s| s.name == "team")
    );
    book.report(
        &pod("a"),
        &usage(1, "i", &[(key("team", "", "2026-01"), 600, 0, 0)]),
        at(0),
        jan,
    );
    // A sidecar whose clock is a little ahead already spends in February.
    book.report(
        &pod("b"),
        &usage(1, "i", &[(key("team", "", "2026-02"), 9, 0, 0)]),
        at(0),
        jan,
    );
    let feb = wall("2026-02-01T00:00:30Z");
    book.tick(at(60), feb);
    let team_feb = account_key("team", "", "2026-02");
    assert_eq!(
        spent(&book, &team_feb),
        9,
        "a fresh account: only February's spend"
    );
    assert_eq!(spent(&book, &team_jan), 600, "January kept for status");
    // Late settlement of a January request still counts in January.
    book.report(
        &pod("a"),
        &usage(2, "i", &[(key("team", "", "2026-01"), 1, 0, 0)]),
        at(61),
        feb,
    );
    assert_eq!(spent(&book, &team_jan), 601);
    let windows: Vec<String> = book
        .statuses(&ObjectKey::new("shop", "chat"), feb)
        .iter()
        .filter(|s| s.name == "team")
        .map(|s| s.window.to_string())
        .collect();
    assert_eq!(windows, ["2026-02", "2026-01"], "newest first");
    // February is 28 days in 2026: on March 1st January is gone.
    book.tick(at(120), wall("2026-03-01T00:00:00Z"));
    assert!(book.account(&team_jan).is_none());
    assert!(book.account(&team_feb).is_some(), "the previous window");
    assert!(book.account(&account_key("team", "", "2026-03")).is_some());
    // A daily per-tenant account ends with its day.
    let tenant = account_key("tenant", "acme", "2026-03-01");
    book.report(
        &pod("a"),
        &usage(3, "i", &[(key("tenant", "acme", "2026-03-01"), 1, 0, 0)]),
        at(121),
        wall("2026-03-01T10:00:00Z"),
    );
    book.tick(at(122), wall("2026-03-02T00:00:00Z"));
    assert!(book.account(&tenant).is_some());
    book.tick(at(123), wall("2026-03-03T00:00:00Z"));
    assert!(book.account(&tenant).is_none());
}

#[test]
fn thresholds_are_announced_once_per_key_and_window() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let team = key("team", "", "2026-12");
    let report = |book: &mut Book, seq, spend| {
        book.report(
            &pod("a"),
            &usage(seq, "i", &[(team.clone(), spend, 0, 0)]),
            at(seq),
            now,
        );
        book.take_crossings()
            .into_iter()
            .map(|c| c.kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(report(&mut book, 1, USD / 2 - 1), vec![]);
    assert_eq!(report(&mut book, 2, 1), vec![CrossingKind::Threshold(50)]);
    assert_eq!(report(&mut book, 3, USD / 10), vec![]);
    assert_eq!(
        report(&mut book, 4, USD / 5),
        vec![CrossingKind::Threshold(80)]
    );
    assert_eq!(report(&mut book, 5, USD / 10), vec![], "once");
    assert_eq!(
        report(&mut book, 6, USD / 10),
        vec![CrossingKind::Exhausted],
        "all spent"
    );
    // The next window starts over.
    let jan = wall("2027-01-02T00:00:00Z");
    book.tick(at(10), jan);
    book.report(
        &pod("a"),
        &usage(7, "i", &[(key("team", "", "2027-01"), USD, 0, 0)]),
        at(11),
        jan,
    );
    let crossings = book.take_crossings();
    let kinds: Vec<_> = crossings.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            CrossingKind::Threshold(50),
            CrossingKind::Threshold(80),
            CrossingKind::Exhausted
        ]
    );
    assert_eq!(crossings[0].key.window.to_string(), "2027-01");
    assert_eq!((crossings[0].spent, crossings[0].limit), (USD, USD));
}

#[test]
fn exhaustion_is_told_once_and_lifted_by_a_push() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let tenant = key("tenant", "acme", "2026-12-10");
    let limit = USD / 100;
    // One sidecar, asking for everything twice: all of it.
    let g1 = book.report(
        &pod("a"),
        &usage(1, "i", &[(tenant.clone(), 0, 0, u64::MAX)]),
        at(0),
        now,
    );
    let g2 = book.report(
        &pod("a"),
        &usage(
            2,
            "i",
            &[(tenant.clone(), 0, g1.grants[0].added_nano_usd, u64::MAX)],
        ),
        at(0),
        now,
    );
    let held = g1.grants[0].added_nano_usd + g2.grants[0].added_nano_usd;
    assert!(held < limit);
    // The last bit goes in steps no smaller than the floor.
    let mut seq = 3;
    let mut held = held;
    while book
        .account(&account_key("tenant", "acme", "2026-12-10"))
        .is_none_or(|a| a.unallocated() > 0)
    {
        let g = book.report(
            &pod("a"),
            &usage(seq, "i", &[(tenant.clone(), 0, held, u64::MAX)]),
            at(0),
            now,
        );
        held += g.grants[0].added_nano_usd;
        seq += 1;
        assert!(seq < 100, "never exhausted");
    }
    assert_eq!(held, limit);
    // Another sidecar asks: nothing left.
    let b = book.report(
        &pod("b"),
        &usage(1, "i", &[(tenant.clone(), 0, 0, 100)]),
        at(1),
        now,
    );
    assert_eq!(
        (b.grants[0].added_nano_usd, b.grants[0].exhausted),
        (0, true)
    );
    let crossings = book.take_crossings();
    assert_eq!(
        crossings.iter().map(|c| c.kind).collect::<Vec<_>>(),
        [CrossingKind::Exhausted],
        "once"
    );
    assert!(book.take_notices(&pod("b")).is_empty());
    // The first gives a tenth back: the second hears that the key is no longer exhausted.
    book.report(
        &pod("a"),
        &usage(seq, "i", &[(tenant, 0, held - limit / 10, 0)]),
        at(2),
        now,
    );
    let notices = book.take_notices(&pod("b"));
    assert_eq!(notices.len(), 1);
    assert!(!notices[0].exhausted);
    assert_eq!(notices[0].added_nano_usd, 0, "pushes add nothing");
    assert!(book.take_notices(&pod("b")).is_empty(), "told once");
}

#[test]
fn a_changed_amount_moves_the_limit_and_a_removed_budget_its_accounts() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let team = account_key("team", "", "2026-12");
    book.report(
        &pod("a"),
        &usage(1, "i", &[(key("team", "", "2026-12"), 100, 0, 0)]),
        at(0),
        now,
    );
    let (index, _) = Index::new();
    let raised = BUDGETS.replace("{name: team, amountUsd: 1,", "{name: team, amountUsd: 3,");
    index.update(
        &[route("shop", "chat", 2, &raised)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    sync(&mut book, &index.current(), now);
    assert_eq!(book.account(&team).map(Account::limit), Some(3 * USD));
    assert_eq!(spent(&book, &team), 100, "spend stays");
    let without: String = raised
        .lines()
        .filter(|l| !l.contains("name: team"))
        .map(|l| format!("{l}\n"))
        .collect();
    index.update(
        &[route("shop", "chat", 3, &without)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    sync(&mut book, &index.current(), now);
    assert!(book.account(&team).is_none());
    let statuses = book.statuses(&ObjectKey::new("shop", "chat"), now);
    assert!(statuses.iter().all(|s| s.name != "team"), "{statuses:?}");
}

#[test]
fn persisted_state_round_trips_through_status_and_the_file() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, true, now);
    let route_key = ObjectKey::new("shop", "chat");
    book.report(
        &pod("a"),
        &usage(
            1,
            "i",
            &[(key("team", "", "2026-12"), 123_456_789, 0, USD / 10)],
        ),
        at(0),
        now,
    );
    for (i, tenant) in ["t1", "t2", "t3"].iter().enumerate() {
        let spend = 1000 * (i as u64 + 1);
        book.report(
            &pod("a"),
            &usage(
                2 + i as u64,
                "i",
                &[(key("tenant", tenant, "2026-12-10"), spend, 0, 0)],
            ),
            at(0),
            now,
        );
    }
    let before: Vec<SavedAccount> = book.saved();
    // Through status.budgets (what Kubernetes keeps)...
    let statuses = book.statuses(&route_key, now);
    let team = statuses.iter().find(|s| s.name == "team").expect("team");
    assert_eq!(team.spent_usd.to_string(), "0.123456789");
    assert_eq!(team.held_usd.nanos(), USD / 10);
    assert_eq!(team.remaining_usd.nanos(), USD - 123_456_789);
    let mut saved = Saved::default();
    saved.add_status(&route_key, &statuses);
    let mut restored = book_with(BUDGETS, true, now);
    restored.restore(saved, at(0));
    assert_eq!(restored.saved(), before);
    // ...and through the ledger file.
    let mut from_file = book_with(BUDGETS, true, now);
    from_file.restore(
        Saved {
            accounts: before.clone(),
            ..Saved::default()
        },
        at(0),
    );
    assert_eq!(from_file.saved(), before);
    // Thresholds crossed before the restart are not news again.
    from_file.report(
        &pod("a"),
        &usage(1, "j", &[(key("team", "", "2026-12"), 0, 0, 0)]),
        at(1),
        now,
    );
    assert!(from_file.take_crossings().is_empty());
}

#[test]
fn after_a_restart_held_allowance_is_outstanding_until_reported_or_the_grace_ends() {
    let now = wall(DEC);
    let team = key("team", "", "2026-12");
    let k = account_key("team", "", "2026-12");
    let saved = Saved {
        accounts: vec![SavedAccount::new(&k, 300_000_000, 400_000_000)],
        ..Saved::default()
    };
    let mut book = book_with(BUDGETS, true, now);
    book.restore(saved, at(0));
    let account = book.account(&k).expect("restored");
    assert_eq!(
        (account.spent(), account.held(), account.unallocated()),
        (300_000_000, 400_000_000, 300_000_000)
    );
    // The sidecar holding 250 of it reports (re-sending its last report after the reconnect).
    book.report(
        &pod("a"),
        &usage(9, "i", &[(team.clone(), 50_000_000, 250_000_000, 0)]),
        at(5),
        now,
    );
    let account = book.account(&k).expect("restored");
    assert_eq!(account.spent(), 350_000_000);
    assert_eq!(
        account.held(),
        400_000_000,
        "its 250 and the 150 not reported yet"
    );
    // The grace passes: the sidecars that did not report hold nothing any more.
    book.tick(at(30), now);
    assert_eq!(book.account(&k).map(Account::held), Some(400_000_000));
    book.tick(at(61), now);
    let account = book.account(&k).expect("restored");
    assert_eq!(
        (account.held(), account.unallocated()),
        (250_000_000, 400_000_000)
    );
}

#[test]
fn scope_values_a_status_did_not_list_restart_at_the_most_any_spent() {
    let now = wall(DEC);
    let route_key = ObjectKey::new("shop", "chat");
    let mut book = book_with(BUDGETS, true, now);
    let n = STATUS_SCOPE_VALUES + 5;
    for i in 0..n {
        let tenant = format!("t{i:03}");
        book.report(
            &pod("a"),
            &usage(
                1 + i as u64,
                "i",
                &[(key("tenant", &tenant, "2026-12-10"), 1000 + i as u64, 0, 0)],
            ),
            at(0),
            now,
        );
    }
    let statuses = book.statuses(&route_key, now);
    let tenant: Vec<&BudgetStatus> = statuses.iter().filter(|s| s.name == "tenant").collect();
    assert_eq!(tenant.len(), STATUS_SCOPE_VALUES + 1);
    let others = tenant.last().expect("others");
    assert_eq!(others.others, Some(5));
    assert_eq!(
        others.most_spent_usd.map(NanoUsd::nanos),
        Some(1004),
        "t000..t004 spent 1000..1004"
    );
    let mut saved = Saved::default();
    saved.add_status(&route_key, &statuses);
    let mut restored = book_with(BUDGETS, true, now);
    restored.restore(saved, at(0));
    // t000 was not listed: it restarts at the most an unlisted value spent, never below
    // what it spent.
    restored.report(
        &pod("a"),
        &usage(1, "j", &[(key("tenant", "t000", "2026-12-10"), 0, 0, 0)]),
        at(1),
        now,
    );
    assert_eq!(
        spent(&restored, &account_key("tenant", "t000", "2026-12-10")),
        1004
    );
    assert_eq!(
        spent(&restored, &account_key("tenant", "t104", "2026-12-10")),
        1104,
        "listed: exact"
    );
}

#[test]
fn too_many_scope_values_get_no_account() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    for i in 0..MAX_SCOPE_VALUES {
        let k = key("tenant", &format!("t{i}"), "2026-12-10");
        let answer = book.report(
            &pod("a"),
            &usage(1 + i as u64, "i", &[(k, 1, 0, 0)]),
            at(0),
            now,
        );
        assert!(answer.ignored.is_empty());
    }
    let k = key("tenant", "one-too-many", "2026-12-10");
    let answer = book.report(
        &pod("a"),
        &usage(u64::MAX, "i", &[(k, 1, 0, 10)]),
        at(0),
        now,
    );
    assert_eq!(answer.ignored, vec![KeyError::TooManyScopeValues]);
}

#[test]
fn what_sidecars_of_deleted_pods_held_is_released() {
    let now = wall(DEC);
    let mut book = book_with(BUDGETS, false, now);
    let team = key("team", "", "2026-12");
    let k = account_key("team", "", "2026-12");
    for name in ["a", "b"] {
        book.report(
            &pod(name),
            &usage(1, "i", &[(team.clone(), 0, 0, 1000)]),
            at(0),
            now,
        );
    }
    let held = book.account(&k).map(Account::held).expect("account");
    let live = std::collections::HashSet::from(["shop/a".to_string()]);
    book.release_gone(&live);
    assert_eq!(book.account(&k).map(Account::held), Some(held / 2));
}

#[test]
fn a_new_leader_writes_a_status_only_once_something_changed_in_it() {
    let now = wall(DEC);
    let route_key = ObjectKey::new("shop", "chat");
    let k = account_key("team", "", "2026-12");
    let mut book = book_with(BUDGETS, true, now);
    book.restore(
        Saved {
            accounts: vec![SavedAccount::new(&k, 5, 0)],
            ..Saved::default()
        },
        at(0),
    );
    book.tick(at(1), now);
    assert!(
        book.begin_flush(false, now).is_none(),
        "what was read is not written back"
    );
    book.report(
        &pod("a"),
        &usage(1, "i", &[(key("team", "", "2026-12"), 1, 0, 0)]),
        at(2),
        now,
    );
    let flush = book.begin_flush(false, now).expect("a change");
    assert_eq!(flush.routes.len(), 1);
    assert_eq!(flush.routes[0].0, route_key);
    // A budget removed from a ModelRoute this leader knows: its entries go.
    let (index, _) = Index::new();
    let without: String = BUDGETS
        .lines()
        .filter(|l| !l.contains("name: team"))
        .map(|l| format!("{l}\n"))
        .collect();
    index.update(
        &[route("shop", "chat", 2, &without)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    sync(&mut book, &index.current(), now);
    let flush = book.begin_flush(false, now).expect("a removed budget");
    assert!(flush.routes[0].2.iter().all(|s| s.name != "team"));
}
