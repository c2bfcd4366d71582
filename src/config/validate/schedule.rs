//! A repo's schedule: a cron expression (with its time zone) or an interval, and the jitter.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};

use super::{DAY, Validator};
use crate::config::raw::RawRepo;
use crate::config::{DEFAULT_JITTER, Schedule, Timing};

/// From every second to once a year (`@yearly` and cron for anything rarer); the next tick is
/// a date, which a longer interval could carry past the end of the calendar.
const INTERVAL: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(365 * 24 * 60 * 60);

/// Zero ticks on time; past a day the jitter is no longer a spread but a delay.
const JITTER: RangeInclusive<Duration> = Duration::ZERO..=DAY;

impl Validator<'_, '_> {
    pub(super) fn schedule(&mut self, r: &RawRepo) -> Option<Schedule> {
        let timezone = self.opt("timezone", &r.timezone).and_then(|tz| {
            let parsed = chrono_tz::Tz::from_str(tz.trim()).ok();
            if parsed.is_none() {
                self.problem(
                    "timezone",
                    format!("`{tz}` is not an IANA time zone (e.g. Europe/Berlin, UTC)"),
                );
            }
            parsed
        });
        let timing = match (self.opt("schedule", &r.schedule), &r.interval) {
            (Some(_), Some(_)) => {
                self.problem("interval", "set `schedule` or `interval`, not both");
                return None;
            }
            (Some(expr), None) => match parse_cron(&expr) {
                Ok(cron) => Timing::Cron {
                    expr,
                    cron: Box::new(cron),
                    timezone,
                },
                Err(e) => {
                    self.problem(
                        "schedule",
                        format!("`{expr}` is not a cron expression: {e}"),
                    );
                    return None;
                }
            },
            (None, Some(_)) => {
                let d = self.duration_within("interval", &r.interval, Duration::ZERO, INTERVAL);
                if d.is_zero() {
                    return None;
                }
                if r.timezone.is_some() {
                    self.problem("timezone", "only applies to `schedule`");
                }
                Timing::Interval(d)
            }
            (None, None) => {
                if r.timezone.is_some() || r.jitter.is_some() {
                    self.problem(
                        "schedule",
                        "`timezone` and `jitter` need a `schedule` or `interval`",
                    );
                }
                return None;
            }
        };
        let default_jitter = match timing {
            Timing::Interval(d) => DEFAULT_JITTER.min(d / 2),
            Timing::Cron { .. } => DEFAULT_JITTER,
        };
        let jitter = self.duration_within("jitter", &r.jitter, default_jitter, JITTER);
        Some(Schedule { timing, jitter })
    }
}

/// Parses crontab syntax: 5 fields (or 6 with seconds first), names (`SUN`, `JAN`), ranges,
/// steps, `@hourly`/`@daily`/`@weekly`/…; day-of-month and day-of-week combine with OR as in cron.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "expected 5 fields (minute hour day month weekday) or 6 with seconds, found {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::{assert_bound, repo_with};

    #[test]
    fn an_interval_is_1s_to_365d() {
        let text = |v: &str| repo_with(&format!("    interval: {v}\n"));
        let range = "between 1s and 365d";
        let (inside, outside) = (["1s", "1", "365d"], ["999ms", "0", "365d 1s"]);
        assert_bound(text, "interval", range, &inside, &outside);
    }

    #[test]
    fn jitter_is_at_most_24h() {
        let text = |v: &str| repo_with(&format!("    interval: 1h\n    jitter: {v}\n"));
        let (inside, outside) = (["0s", "24h"], ["24h 1ms", "86401"]);
        assert_bound(text, "jitter", "at most 24h", &inside, &outside);
    }
}
