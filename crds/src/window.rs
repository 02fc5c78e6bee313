//! Budget windows aligned to the UTC calendar, and the ids that name them.
//!
//! A window is a half-open interval `[start, end)` of Unix time (UTC, no leap seconds, so
//! every hour is 3600 s and every day 86400 s): a clock hour, a day from 00:00, an ISO week
//! from Monday 00:00, a calendar month, or `total` (from the Unix epoch on). Calendar months
//! and ISO week numbers come from `jiff`.
//!
//! A [`WindowId`] names one window, e.g. `2026-11-22T03`, `2026-11-22`, `2026-W47`,
//! `2026-11` or `total`: the key spend is kept under in status and on the wire. Within one
//! kind of window, ids sort as their windows follow each other, both as strings and as values.
//!
//! Times are clamped to the range `jiff` can represent: before the epoch reads as the epoch,
//! after `9999-12-30T22:00Z` as that instant.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use jiff::Timestamp;
use jiff::civil::{Date, ISOWeekDate, Time, Weekday};
use jiff::tz::Offset;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How long a budget counts spend before starting again from zero.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Window {
    /// A clock hour, from minute 0 (UTC).
    Hourly,
    /// A day, from 00:00 UTC.
    Daily,
    /// An ISO week, from Monday 00:00 UTC.
    Weekly,
    /// A calendar month, from the 1st at 00:00 UTC.
    Monthly,
    /// Never starts again.
    Total,
}

/// One window: its kind and where it starts. `Ord` follows time within a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowId {
    window: Window,
    /// Unix seconds.
    start: i64,
}

/// Why a string is not a [`WindowId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowIdError(String);

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
/// `10000-01-01T00:00:00Z`: the end of the `total` window, and of windows ending past what
/// the calendar can represent.
const FAR_FUTURE: i64 = 253_402_300_800;

// === impl Window ===

impl Window {
    /// The window of this kind that holds `at`.
    pub fn id(self, at: SystemTime) -> WindowId {
        self.id_at(unix_secs(at))
    }

    /// Start (inclusive) and end (exclusive) of the window that holds `at`; the end is the
    /// next window's start.
    pub fn bounds(self, at: SystemTime) -> (SystemTime, SystemTime) {
        let id = self.id(at);
        (id.start(), id.end())
    }

    fn id_at(self, secs: i64) -> WindowId {
        let secs = secs.clamp(0, Timestamp::MAX.as_second());
        let start = match self {
            Self::Hourly => secs - secs.rem_euclid(HOUR),
            Self::Daily => secs - secs.rem_euclid(DAY),
            Self::Weekly => {
                let date = utc_date(secs);
                let back = i64::from(date.weekday().to_monday_zero_offset());
                secs - secs.rem_euclid(DAY) - back * DAY
            }
            Self::Monthly => date_secs(utc_date(secs).first_of_month()).unwrap_or(0),
            Self::Total => 0,
        };
        WindowId {
            window: self,
            start,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Total => "total",
        })
    }
}

// === impl WindowId ===

impl WindowId {
    pub fn window(self) -> Window {
        self.window
    }

    pub fn start(self) -> SystemTime {
        system_time(self.start)
    }

    /// The first instant after the window, which is where the next one starts. For `total`,
    /// `10000-01-01T00:00:00Z`.
    pub fn end(self) -> SystemTime {
        system_time(self.end_unix_secs())
    }

    /// The start in Unix seconds (UTC).
    pub fn start_unix_secs(self) -> i64 {
        self.start
    }

    /// The end in Unix seconds (UTC).
    pub fn end_unix_secs(self) -> i64 {
        match self.window {
            Window::Hourly => self.start + HOUR,
            Window::Daily => self.start + DAY,
            Window::Weekly => self.start + WEEK,
            Window::Monthly => utc_date(self.start)
                .last_of_month()
                .tomorrow()
                .ok()
                .and_then(date_secs)
                .unwrap_or(FAR_FUTURE),
            Window::Total => FAR_FUTURE,
        }
    }

    /// The window right after this one (`total` is its own next).
    pub fn next(self) -> WindowId {
        match self.window {
            Window::Total => self,
            window => window.id_at(self.end_unix_secs()),
        }
    }

    pub fn contains(self, at: SystemTime) -> bool {
        let at = unix_secs(at);
        self.start <= at && at < self.end_unix_secs()
    }
}

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = utc_date(self.start);
        let (y, m, d) = (date.year(), date.month(), date.day());
        match self.window {
            Window::Hourly => {
                let hour = self.start.rem_euclid(DAY) / HOUR;
                write!(f, "{y:04}-{m:02}-{d:02}T{hour:02}")
            }
            Window::Daily => write!(f, "{y:04}-{m:02}-{d:02}"),
            Window::Weekly => {
                let week = date.iso_week_date();
                write!(f, "{:04}-W{:02}", week.year(), week.week())
            }
            Window::Monthly => write!(f, "{y:04}-{m:02}"),
            Window::Total => f.write_str("total"),
        }
    }
}

impl FromStr for WindowId {
    type Err = WindowIdError;

    /// Reads what `Display` writes, and nothing else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            WindowIdError(format!(
                "{s:?} is not a window id ({why}); expected 2026-11-22T03 (hourly), \
                 2026-11-22 (daily), 2026-W47 (weekly), 2026-11 (monthly) or total"
            ))
        };
        if s == "total" {
            return Ok(WindowId {
                window: Window::Total,
                start: 0,
            });
        }
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Result<i16, WindowIdError> {
            let part = b.get(from..from + len).ok_or_else(|| bad("too short"))?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(bad("digits expected"));
            }
            let text = std::str::from_utf8(part).map_err(|_| bad("digits expected"))?;
            text.parse().map_err(|_| bad("digits expected"))
        };
        let sep = |at: usize, c: u8| b.get(at) == Some(&c);
        let year = num(0, 4)?;
        let (window, date, hour) = match b.len() {
            7 if sep(4, b'-') => (Window::Monthly, civil_date(year, num(5, 2)?, 1), 0),
            8 if sep(4, b'-') && sep(5, b'W') => {
                let week = i8::try_from(num(6, 2)?).map_err(|_| bad("no such week"))?;
                let monday = ISOWeekDate::new(year, week, Weekday::Monday).ok();
                (Window::Weekly, monday.map(ISOWeekDate::date), 0)
            }
            10 if sep(4, b'-') && sep(7, b'-') => {
                (Window::Daily, civil_date(year, num(5, 2)?, num(8, 2)?), 0)
            }
            13 if sep(4, b'-') && sep(7, b'-') && sep(10, b'T') => {
                let hour = num(11, 2)?;
                if hour > 23 {
                    return Err(bad("no such hour"));
                }
                let day = civil_date(year, num(5, 2)?, num(8, 2)?);
                (Window::Hourly, day, i64::from(hour))
            }
            _ => return Err(bad("unknown shape")),
        };
        let date = date.ok_or_else(|| bad("no such date"))?;
        if year < 1970 {
            return Err(bad("before 1970"));
        }
        let start = date_secs(date).ok_or_else(|| bad("out of range"))? + hour * HOUR;
        Ok(WindowId { window, start })
    }
}

impl Serialize for WindowId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for WindowId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WindowId".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]{4}-(W[0-9]{2}|[0-9]{2}(-[0-9]{2}(T[0-9]{2})?)?)|total)$",
            "description": "A budget window: 2026-11-22T03 (hourly), 2026-11-22 (daily), 2026-W47 (ISO week), 2026-11 (monthly) or total."
        })
    }
}

// === impl WindowIdError ===

impl fmt::Display for WindowIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WindowIdError {}

fn civil_date(year: i16, month: i16, day: i16) -> Option<Date> {
    let month = i8::try_from(month).ok()?;
    let day = i8::try_from(day).ok()?;
    Date::new(year, month, day).ok()
}

/// Unix seconds of `at`, rounded down; before the epoch reads as the epoch.
fn unix_secs(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn system_time(secs: i64) -> SystemTime {
    let offset = std::time::Duration::from_secs(secs.unsigned_abs());
    let at = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    };
    at.unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The UTC calendar date of Unix second `secs` (clamped to what jiff represents).
fn utc_date(secs: i64) -> Date {
    let secs = secs.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    let at = Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH);
    Offset::UTC.to_datetime(at).date()
}

/// Unix seconds of `date` at 00:00 UTC, if jiff can represent that instant.
fn date_secs(date: Date) -> Option<i64> {
    Offset::UTC
        .to_timestamp(date.to_datetime(Time::midnight()))
        .ok()
        .map(Timestamp::as_second)
}

#[cfg(test)]
mod tests;
