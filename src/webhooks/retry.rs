//! When a failed delivery is tried again: a schedule of delays after each failed attempt, with
//! jitter so that an endpoint coming back is not hit by every retry at once, and never sooner
//! than the receiver asked with `Retry-After`.

use std::time::Duration;

/// `Retry-After` is honoured up to this long; a receiver asking for more waits this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Each delay moves by up to this fraction either way.
const JITTER: f64 = 0.1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about 28 hours.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
        }
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// How many attempts a delivery gets before it is dead.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait before the next attempt after the `failed`-th attempt failed (counting from 1),
    /// or `None` when that was the last one. `spread` is a number in [-1, 1] (random in use)
    /// that places the delay within its jitter.
    pub fn after_failure(
        &self,
        failed: u32,
        retry_after: Option<Duration>,
        spread: f64,
    ) -> Option<Duration> {
        let index = usize::try_from(failed.checked_sub(1)?).ok()?;
        let scheduled = *self.delays.get(index)?;
        let jittered = scheduled.mul_f64(1.0 + JITTER * spread.clamp(-1.0, 1.0));
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(MAX_RETRY_AFTER));
        Some(jittered.max(asked))
    }
}

/// A `Retry-After` header's wait: delay-seconds, or an HTTP date (how long from `now`; a date
/// already past asks for no wait). `None` when it is neither.
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}
