use super::*;

/// An instant written in RFC 3339, e.g. `2024-02-29T23:59:59Z`.
fn t(rfc3339: &str) -> SystemTime {
    let at: Timestamp = rfc3339.parse().expect("an RFC 3339 instant");
    at.into()
}

/// The id, start and end of the `window` holding `at`, as strings.
fn window(window: Window, at: &str) -> (String, SystemTime, SystemTime) {
    let id = window.id(t(at));
    assert_eq!(window.bounds(t(at)), (id.start(), id.end()));
    assert!(id.contains(t(at)), "{id} holds {at}");
    (id.to_string(), id.start(), id.end())
}

#[test]
fn hours_change_exactly_on_the_second() {
    assert_eq!(
        window(Window::Hourly, "2026-11-22T03:00:00Z"),
        (
            "2026-11-22T03".into(),
            t("2026-11-22T03:00:00Z"),
            t("2026-11-22T04:00:00Z")
        )
    );
    assert_eq!(
        window(Window::Hourly, "2026-11-22T02:59:59.999Z").0,
        "2026-11-22T02"
    );
    assert_eq!(
        window(Window::Hourly, "2026-11-22T03:59:59Z").0,
        "2026-11-22T03"
    );
    assert_eq!(
        window(Window::Hourly, "2026-12-31T23:30:00Z"),
        (
            "2026-12-31T23".into(),
            t("2026-12-31T23:00:00Z"),
            t("2027-01-01T00:00:00Z")
        )
    );
    let id = Window::Hourly.id(t("2026-11-22T03:00:00Z"));
    assert!(!id.contains(t("2026-11-22T04:00:00Z")));
    assert!(!id.contains(t("2026-11-22T02:59:59Z")));
}

#[test]
fn days_start_at_midnight_utc() {
    assert_eq!(
        window(Window::Daily, "2026-11-22T00:00:00Z"),
        (
            "2026-11-22".into(),
            t("2026-11-22T00:00:00Z"),
            t("2026-11-23T00:00:00Z")
        )
    );
    assert_eq!(
        window(Window::Daily, "2026-11-21T23:59:59Z").0,
        "2026-11-21"
    );
    assert_eq!(
        window(Window::Daily, "2024-02-29T12:00:00Z").2,
        t("2024-03-01T00:00:00Z")
    );
}

#[test]
fn months_end_on_their_last_day_leap_years_included() {
    for (at, id, start, end) in [
        (
            "2026-01-31T23:59:59Z",
            "2026-01",
            "2026-01-01",
            "2026-02-01",
        ),
        (
            "2026-02-01T00:00:00Z",
            "2026-02",
            "2026-02-01",
            "2026-03-01",
        ),
        (
            "2026-04-30T12:00:00Z",
            "2026-04",
            "2026-04-01",
            "2026-05-01",
        ),
        // 2024 is a leap year: February has 29 days.
        (
            "2024-02-29T23:59:59Z",
            "2024-02",
            "2024-02-01",
            "2024-03-01",
        ),
        (
            "2024-03-01T00:00:00Z",
            "2024-03",
            "2024-03-01",
            "2024-04-01",
        ),
        // 2100 is not (divisible by 100), 2000 was (divisible by 400).
        (
            "2100-02-28T23:59:59Z",
            "2100-02",
            "2100-02-01",
            "2100-03-01",
        ),
        (
            "2000-02-29T00:00:00Z",
            "2000-02",
            "2000-02-01",
            "2000-03-01",
        ),
        // December rolls over into January of the next year.
        (
            "2026-12-31T23:59:59Z",
            "2026-12",
            "2026-12-01",
            "2027-01-01",
        ),
        (
            "2027-01-01T00:00:00Z",
            "2027-01",
            "2027-01-01",
            "2027-02-01",
        ),
    ] {
        let midnight = |d: &str| t(&format!("{d}T00:00:00Z"));
        assert_eq!(
            window(Window::Monthly, at),
            (id.to_string(), midnight(start), midnight(end)),
            "{at}"
        );
    }
    let feb = Window::Monthly.id(t("2024-02-10T00:00:00Z"));
    assert_eq!(feb.end_unix_secs() - feb.start_unix_secs(), 29 * DAY);
    let feb = Window::Monthly.id(t("2100-02-10T00:00:00Z"));
    assert_eq!(feb.end_unix_secs() - feb.start_unix_secs(), 28 * DAY);
}

#[test]
fn weeks_are_iso_weeks_from_monday() {
    for (at, id, monday) in [
        // 2026-01-01 is a Thursday: week 1 of 2026 starts in 2025.
        ("2026-01-01T00:00:00Z", "2026-W01", "2025-12-29"),
        ("2025-12-29T00:00:00Z", "2026-W01", "2025-12-29"),
        ("2025-12-28T23:59:59Z", "2025-W52", "2025-12-22"),
        ("2026-11-22T10:00:00Z", "2026-W47", "2026-11-16"),
        // 2020 has 53 weeks; its week 53 ends on Sunday 2021-01-03.
        ("2020-12-31T00:00:00Z", "2020-W53", "2020-12-28"),
        ("2021-01-03T23:59:59Z", "2020-W53", "2020-12-28"),
        ("2021-01-04T00:00:00Z", "2021-W01", "2021-01-04"),
        // 2026 has 53 weeks too: 2027-01-01 (a Friday) is in 2026-W53.
        ("2027-01-01T00:00:00Z", "2026-W53", "2026-12-28"),
        // A Monday in December can start week 1 of the next year.
        ("2024-12-30T00:00:00Z", "2025-W01", "2024-12-30"),
        // The week holding the Unix epoch (a Thursday) starts before it.
        ("1970-01-01T00:00:00Z", "1970-W01", "1969-12-29"),
    ] {
        let (got, start, end) = window(Window::Weekly, at);
        assert_eq!(got, id, "{at}");
        assert_eq!(start, t(&format!("{monday}T00:00:00Z")), "{at}");
        assert_eq!(
            end.duration_since(start).ok(),
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
    }
}

#[test]
fn total_runs_from_the_epoch_to_the_far_future() {
    assert_eq!(
        window(Window::Total, "2026-11-22T03:00:00Z"),
        (
            "total".into(),
            SystemTime::UNIX_EPOCH,
            system_time(FAR_FUTURE)
        )
    );
    let total = Window::Total.id(t("2026-11-22T03:00:00Z"));
    assert_eq!(total.next(), total);
}

#[test]
fn next_windows_follow_without_gap_and_ids_sort_as_time() {
    for (window, steps) in [
        (Window::Hourly, 24 * 800),
        (Window::Daily, 366 * 60),
        (Window::Weekly, 53 * 60),
        (Window::Monthly, 12 * 200),
    ] {
        let mut id = window.id(t("1999-12-31T23:59:59Z"));
        for _ in 0..steps {
            let next = id.next();
            assert_eq!(next.start(), id.end(), "{id} -> {next}");
            assert_eq!(next.window(), window);
            assert!(next > id, "{id} -> {next}");
            assert!(next.to_string() > id.to_string(), "{id} -> {next}");
            assert_eq!(next.to_string().parse(), Ok(next), "{next}");
            assert_eq!(window.id(next.start()), next);
            assert_eq!(window.id(system_time(next.end_unix_secs() - 1)), next);
            id = next;
        }
    }
}

#[test]
fn ids_parse_back_and_refuse_what_names_no_window() {
    for s in [
        "2026-11-22T03",
        "2026-11-22",
        "2026-W47",
        "2020-W53",
        "2026-11",
        "total",
    ] {
        let id: WindowId = s.parse().expect(s);
        assert_eq!(id.to_string(), s);
    }
    assert_eq!(
        "2026-W01".parse::<WindowId>().map(WindowId::start),
        Ok(t("2025-12-29T00:00:00Z"))
    );
    for s in [
        "2026-13",
        "2026-00",
        "2026-02-30",
        "2100-02-29",
        "2026-W00",
        "2026-W54",
        "2021-W53",
        "2026-11-22T24",
        "2026-11-22T3",
        "2026-1",
        "1969-12",
        "+026-11",
        "2026/11",
        "2026-11-22 03",
        "Total",
        "",
    ] {
        let err = s.parse::<WindowId>().expect_err(s);
        assert!(err.to_string().contains("not a window id"), "{s}: {err}");
    }
}

#[test]
fn ids_serialize_as_their_string() {
    let id = Window::Weekly.id(t("2026-11-22T10:00:00Z"));
    assert_eq!(serde_json::to_string(&id).ok(), Some("\"2026-W47\"".into()));
    let back: WindowId = serde_json::from_str("\"2026-W47\"").expect("an id");
    assert_eq!(back, id);
    assert!(serde_json::from_str::<WindowId>("\"2026-W99\"").is_err());
}

#[test]
fn times_outside_the_calendar_are_clamped() {
    let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(86_400);
    assert_eq!(
        Window::Daily.id(before).to_string(),
        "1970-01-01",
        "before the epoch reads as the epoch"
    );
    let far = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 40);
    for window in [
        Window::Hourly,
        Window::Daily,
        Window::Weekly,
        Window::Monthly,
    ] {
        let id = window.id(far);
        assert!(id.to_string().starts_with("9999-"), "{id}");
        assert!(id.end() > id.start(), "{id}");
    }
    assert_eq!(Window::Monthly.id(far).end(), system_time(FAR_FUTURE));
}

#[test]
fn window_kinds_read_as_lowercase_names() {
    let w: Window = serde_json::from_str("\"monthly\"").expect("a window");
    assert_eq!(w, Window::Monthly);
    assert_eq!(w.to_string(), "monthly");
    assert!(serde_json::from_str::<Window>("\"yearly\"").is_err());
}
