//! Schedules: when a repository's next scheduled sync is due (cron in a time zone, or a plain
//! interval), and the tick loop that only enqueues sync requests. `next_run` is pure; the loop
//! takes its clock as a parameter so tests drive it with tokio's paused time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use tokio::sync::watch;

use crate::config::{Schedule, Timing};

/// The first scheduled time strictly after `after`, without jitter. `None` when the expression
/// has no future occurrence.
pub fn next_run(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match &schedule.timing {
        Timing::Interval(d) => Some(after + chrono::Duration::from_std(*d).ok()?),
        Timing::Cron {
            cron,
            timezone: Some(tz),
            ..
        } => cron
            .find_next_occurrence(&after.with_timezone(tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Timing::Cron {
            cron,
            timezone: None,
            ..
        } => cron
            .find_next_occurrence(&after.with_timezone(&Local), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// Wall-clock time for the tick loop.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time that advances with tokio's clock from a fixed start, so a test with
/// `tokio::time::pause()` controls both the sleeps and "now".
pub struct TokioClock {
    start_wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start_wall: DateTime<Utc>) -> Self {
        TokioClock {
            start_wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.start_wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// Runs until `stop` turns true: sleeps until the next scheduled time plus a random jitter in
/// `[0, schedule.jitter]`, then calls `tick`. `on_next` learns each next run (for status). Ticks
/// missed while the daemon was down are not replayed: the next run is always computed from now.
pub async fn tick_loop(
    schedule: Schedule,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    mut on_next: impl FnMut(Option<DateTime<Utc>>) + Send,
    mut tick: impl FnMut() + Send,
) {
    loop {
        let now = clock.now();
        let next = next_run(&schedule, now);
        on_next(next);
        let Some(next) = next else { return };
        let jitter = schedule.jitter.mul_f64(fastrand::f64());
        let wait = (next - now).to_std().unwrap_or(Duration::ZERO) + jitter;
        tokio::select! {
            _ = tokio::time::sleep(wait) => tick(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cron;
    use chrono::TimeZone;

    fn cron(expr: &str, tz: Option<chrono_tz::Tz>) -> Schedule {
        Schedule {
            timing: Timing::Cron {
                expr: expr.into(),
                cron: Box::new(parse_cron(expr).unwrap()),
                timezone: tz,
            },
            jitter: Duration::ZERO,
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// From Wednesday 2026-11-18 10:30:15 UTC.
    fn from() -> DateTime<Utc> {
        utc(2026, 11, 18, 10, 30, 15)
    }

    #[test]
    fn exact_next_runs_for_the_forms_operators_write() {
        let z = Some(chrono_tz::UTC);
        let cases = [
            ("* * * * *", utc(2026, 11, 18, 10, 31, 0)),
            ("45 23 * * 6", utc(2026, 11, 21, 23, 45, 0)), // Saturday
            ("0 9 * * 1", utc(2026, 11, 23, 9, 0, 0)),     // Monday
            ("5 4 * * SUN", utc(2026, 11, 22, 4, 5, 0)),   // Sunday, once: not every minute
            ("0 22 * * 1-5", utc(2026, 11, 18, 22, 0, 0)), // today is a weekday
            ("0 0 * * 0", utc(2026, 11, 22, 0, 0, 0)),     // 0 is Sunday
            ("0 0 * * 7", utc(2026, 11, 22, 0, 0, 0)),     // and so is 7
            ("*/20 * * * * *", utc(2026, 11, 18, 10, 30, 20)), // 6 fields: seconds first
            ("@hourly", utc(2026, 11, 18, 11, 0, 0)),
            ("@daily", utc(2026, 11, 19, 0, 0, 0)),
            ("@weekly", utc(2026, 11, 22, 0, 0, 0)),
        ];
        for (expr, want) in cases {
            assert_eq!(next_run(&cron(expr, z), from()), Some(want), "{expr}");
        }
    }

    #[test]
    fn sunday_schedule_fires_once_per_week() {
        let s = cron("5 4 * * SUN", Some(chrono_tz::UTC));
        let first = next_run(&s, from()).unwrap();
        let second = next_run(&s, first).unwrap();
        assert_eq!(second - first, chrono::Duration::days(7));
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_with_or() {
        // The 1st of the month OR any Monday, as in cron.
        let s = cron("0 12 1 * MON", Some(chrono_tz::UTC));
        assert_eq!(
            next_run(&s, from()),
            Some(utc(2026, 11, 23, 12, 0, 0)),
            "Monday 23rd"
        );
        assert_eq!(
            next_run(&s, utc(2026, 11, 29, 0, 0, 0)),
            Some(utc(2026, 11, 30, 12, 0, 0)),
            "Monday 30th"
        );
        assert_eq!(
            next_run(&s, utc(2026, 11, 30, 13, 0, 0)),
            Some(utc(2026, 12, 1, 12, 0, 0)),
            "the 1st, a Tuesday"
        );
    }

    #[test]
    fn time_zones_shift_the_instant() {
        let s = cron("0 9 * * *", Some(chrono_tz::Europe::Berlin));
        // 09:00 in Berlin in November (CET, UTC+1) is 08:00 UTC.
        assert_eq!(next_run(&s, from()), Some(utc(2026, 11, 19, 8, 0, 0)));
        let s = cron("0 9 * * *", Some(chrono_tz::America::New_York));
        assert_eq!(next_run(&s, from()), Some(utc(2026, 11, 18, 14, 0, 0)));
    }

    #[test]
    fn intervals_count_from_now() {
        let s = Schedule {
            timing: Timing::Interval(Duration::from_secs(300)),
            jitter: Duration::ZERO,
        };
        assert_eq!(next_run(&s, from()), Some(utc(2026, 11, 18, 10, 35, 15)));
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_enqueue_on_schedule_with_a_paused_clock() {
        use std::sync::Mutex;
        let clock = Arc::new(TokioClock::starting_at(utc(2026, 11, 18, 10, 0, 30)));
        let ticks: Arc<Mutex<Vec<DateTime<Utc>>>> = Arc::default();
        let nexts: Arc<Mutex<Vec<Option<DateTime<Utc>>>>> = Arc::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (t, n, c) = (ticks.clone(), nexts.clone(), clock.clone());
        let task = tokio::spawn(tick_loop(
            cron("*/15 * * * *", Some(chrono_tz::UTC)),
            clock.clone(),
            stop_rx,
            move |next| n.lock().unwrap().push(next),
            move || t.lock().unwrap().push(c.now()),
        ));
        // One hour of paused time passes in an instant.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let ticks = ticks.lock().unwrap().clone();
        assert_eq!(
            ticks,
            vec![
                utc(2026, 11, 18, 10, 15, 0),
                utc(2026, 11, 18, 10, 30, 0),
                utc(2026, 11, 18, 10, 45, 0),
                utc(2026, 11, 18, 11, 0, 0),
            ]
        );
        assert_eq!(
            nexts.lock().unwrap()[0],
            Some(utc(2026, 11, 18, 10, 15, 0)),
            "status learns the next run"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_ticks_within_its_bound() {
        use std::sync::Mutex;
        let clock = Arc::new(TokioClock::starting_at(utc(2026, 11, 18, 10, 0, 0)));
        let ticks: Arc<Mutex<Vec<DateTime<Utc>>>> = Arc::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (t, c) = (ticks.clone(), clock.clone());
        let s = Schedule {
            timing: Timing::Interval(Duration::from_secs(60)),
            jitter: Duration::from_secs(10),
        };
        let task = tokio::spawn(tick_loop(
            s,
            clock.clone(),
            stop_rx,
            |_| {},
            move || t.lock().unwrap().push(c.now()),
        ));
        tokio::time::sleep(Duration::from_secs(700)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let ticks = ticks.lock().unwrap().clone();
        assert!(ticks.len() >= 10 && ticks.len() <= 11, "{}", ticks.len());
        for pair in ticks.windows(2) {
            let gap = (pair[1] - pair[0]).num_milliseconds();
            assert!((60_000..=70_000).contains(&gap), "gap {gap} ms");
        }
    }
}
