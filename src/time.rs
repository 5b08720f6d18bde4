//! Instants as hearback stores them: UTC, millisecond precision.
//!
//! Both backends keep exactly what was written (PostgreSQL `timestamptz` has microseconds, the
//! SQLite column holds integer milliseconds), so a value read back always equals the value stored.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// Truncates to whole milliseconds, the precision every backend keeps.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        let millis = at.timestamp_millis();
        Self(DateTime::from_timestamp_millis(millis).expect("milliseconds of a valid instant"))
    }

    pub fn from_millis(millis: i64) -> Option<Self> {
        DateTime::from_timestamp_millis(millis).map(Self)
    }

    pub fn as_millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }
}

/// Where the job workers read "now": the system clock, shifted by an offset that only tests move
/// ([`Clock::advance`]), so that a test lets a day pass in a moment and sees reminders and
/// expiries come due exactly when the real clock would bring them.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now(&self) -> Timestamp {
        let offset = self.offset_ms.load(std::sync::atomic::Ordering::Relaxed);
        let now = Timestamp::now();
        Timestamp::from_millis(now.as_millis().saturating_add(offset)).unwrap_or(now)
    }

    /// Moves this clock (and every copy of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms
            .fetch_add(millis, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Add<std::time::Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: std::time::Duration) -> Timestamp {
        let delta = TimeDelta::from_std(rhs).unwrap_or(TimeDelta::MAX);
        Timestamp::from_datetime(
            self.0
                .checked_add_signed(delta)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

impl Sub<std::time::Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: std::time::Duration) -> Timestamp {
        let delta = TimeDelta::from_std(rhs).unwrap_or(TimeDelta::MAX);
        Timestamp::from_datetime(
            self.0
                .checked_sub_signed(delta)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_is_ahead_by_what_it_was_moved_and_its_copies_too() {
        let clock = Clock::system();
        let copy = clock.clone();
        clock.advance(std::time::Duration::from_secs(86_400));
        let ahead = copy.now().as_millis() - Timestamp::now().as_millis();
        assert!((86_399_000..=86_400_100).contains(&ahead), "{ahead}");
    }
    use std::time::Duration;

    #[test]
    fn timestamps_keep_milliseconds_only() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456789Z").unwrap();
        let ts = Timestamp::from_datetime(at.with_timezone(&Utc));
        assert_eq!(ts.to_string(), "2026-11-23T10:00:00.123Z");
        assert_eq!(Timestamp::from_millis(ts.as_millis()), Some(ts));
    }

    #[test]
    fn adding_a_huge_duration_saturates_instead_of_panicking() {
        let ts = Timestamp::now() + Duration::from_secs(u64::MAX);
        assert!(ts > Timestamp::now());
    }
}
