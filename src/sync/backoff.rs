//! Retry delays: exponential backoff with jitter.
//!
//! Pure arithmetic; the caller supplies the random number so tests are exact.

use std::time::Duration;

/// The delay before retry number `retry` (1 = the first retry): `initial · 2^(retry-1)`, capped at
/// `max`, then "equal jitter": half of it fixed and half scaled by `unit` ∈ [0, 1]. Fixed half keeps
/// retries from hammering the remote; the random half spreads many repos that failed together.
pub fn delay(retry: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = retry.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    let half = base / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_until_the_cap() {
        let s = Duration::from_secs;
        let no_jitter: Vec<Duration> = (1..=7).map(|r| delay(r, s(1), s(30), 1.0)).collect();
        assert_eq!(no_jitter, vec![s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let s = Duration::from_secs;
        assert_eq!(delay(3, s(1), s(30), 0.0), s(2));
        assert_eq!(delay(3, s(1), s(30), 0.5), Duration::from_millis(3000));
        assert_eq!(delay(3, s(1), s(30), 7.0), s(4), "unit is clamped");
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let d = delay(
            u32::MAX,
            Duration::from_secs(1),
            Duration::from_secs(60),
            1.0,
        );
        assert_eq!(d, Duration::from_secs(60));
    }
}
