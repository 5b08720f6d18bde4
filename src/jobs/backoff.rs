//! When a failed job runs again: exponential backoff with jitter.

use std::time::Duration;

/// The delay before retrying after failed attempt number `attempt` (1-based): `base · 2^(attempt-1)`,
/// capped at `max`, then scaled into its upper half by `jitter` (in `[0, 1)`) so that jobs that
/// failed together do not all come back together.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let ceiling = base.saturating_mul(factor).min(max);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn delays_double_with_each_attempt_until_the_cap() {
        let table = [
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (8, 640),
            (10, 2560),
            (11, 3600),
            (40, 3600),
            (u32::MAX, 3600),
        ];
        for (attempt, seconds) in table {
            assert_eq!(
                retry_delay(attempt, BASE, MAX, 1.0),
                Duration::from_secs(seconds),
                "attempt {attempt}"
            );
            assert_eq!(
                retry_delay(attempt, BASE, MAX, 0.0),
                Duration::from_secs(seconds) / 2,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first() {
        assert_eq!(retry_delay(0, BASE, MAX, 1.0), BASE);
    }

    proptest! {
        #[test]
        fn the_delay_stays_between_half_the_ceiling_and_the_ceiling(
            attempt in 0u32..200,
            base_ms in 0u64..100_000,
            max_ms in 0u64..10_000_000,
            jitter in proptest::num::f64::ANY,
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms);
            let delay = retry_delay(attempt, base, max, jitter);
            prop_assert!(delay <= max);
            let ceiling = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1))).min(max);
            prop_assert!(delay >= (ceiling / 2).saturating_sub(Duration::from_nanos(1)));
            prop_assert!(delay <= ceiling);
        }
    }
}
