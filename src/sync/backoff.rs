//! When and how soon a failed sync is tried again: exponential backoff with jitter, and the
//! policy per error kind.
//!
//! Pure: the caller supplies the random number and the times, so tests are exact.

use std::time::Duration;

use super::error::ErrorKind;
use crate::config::Repo;

/// The delay before retry number `retry` (1 = the first retry): `initial · 2^(retry-1)`, capped at
/// `max`, then "equal jitter": half of it fixed and half scaled by `unit` ∈ [0, 1]. Fixed half keeps
/// retries from hammering the remote; the random half spreads many repos that failed together.
pub fn delay(retry: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = retry.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    let half = base / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// How long the daemon waits before it tries again for a checkout whose lock another process
/// holds: short, since a one-shot sync of a small repository takes well under a second, and the
/// wait holds no worker.
pub const BUSY_POLL: Duration = Duration::from_millis(250);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Report the failure.
    GiveUp,
    /// Try again after `after`; `counts` says whether it is one of `retry.attempts`.
    Retry { after: Duration, counts: bool },
}

/// The retry policy: `kind` failed after `attempts` counted attempts; the lock (for
/// [`ErrorKind::Busy`]) has been taken by another process for `busy_for`. A transient failure is
/// retried with [`delay`] until `retry.attempts` are used up; a busy lock is waited for in steps
/// of [`BUSY_POLL`] that do not count, until `sync_timeout`; anything else is reported at once.
pub fn next(kind: ErrorKind, attempts: u32, busy_for: Duration, repo: &Repo, unit: f64) -> Next {
    match kind {
        ErrorKind::Busy if busy_for < repo.timeouts.sync => Next::Retry {
            after: BUSY_POLL,
            counts: false,
        },
        ErrorKind::Busy => Next::GiveUp,
        k if k.is_transient() && attempts < repo.retry.attempts => Next::Retry {
            after: delay(
                attempts,
                repo.retry.initial_delay,
                repo.retry.max_delay,
                unit,
            ),
            counts: true,
        },
        _ => Next::GiveUp,
    }
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

    #[test]
    fn transient_kinds_are_retried_until_the_attempts_are_used_up() {
        let repo = crate::config::tests_support::repo("r", "/o.git");
        let zero = Duration::ZERO;
        for kind in [
            ErrorKind::Transient,
            ErrorKind::Timeout,
            ErrorKind::DiskFull,
            ErrorKind::Other,
        ] {
            assert_eq!(
                next(kind, 1, zero, &repo, 1.0),
                Next::Retry {
                    after: Duration::from_secs(1),
                    counts: true
                },
                "{kind:?}"
            );
            assert_eq!(next(kind, 3, zero, &repo, 1.0), Next::GiveUp, "{kind:?}");
        }
        for kind in [ErrorKind::Auth, ErrorKind::NotFound, ErrorKind::HostKey] {
            assert_eq!(next(kind, 1, zero, &repo, 1.0), Next::GiveUp, "{kind:?}");
        }
    }

    #[test]
    fn a_busy_lock_is_waited_for_without_counting_until_sync_timeout() {
        let repo = crate::config::tests_support::repo("r", "/o.git");
        let wait = Next::Retry {
            after: BUSY_POLL,
            counts: false,
        };
        assert_eq!(next(ErrorKind::Busy, 3, Duration::ZERO, &repo, 0.5), wait);
        let limit = repo.timeouts.sync;
        assert_eq!(next(ErrorKind::Busy, 1, limit / 2, &repo, 0.5), wait);
        assert_eq!(next(ErrorKind::Busy, 1, limit, &repo, 0.5), Next::GiveUp);
    }
}
