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
