//! A repo's schedule: a cron expression (with its time zone) or an interval, and the jitter.

use std::str::FromStr;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};

use super::Validator;
use crate::config::raw::RawRepo;
use crate::config::{DEFAULT_JITTER, Schedule, Timing};

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
                let d = self.duration("interval", &r.interval, Duration::ZERO);
                if d < Duration::from_secs(1) {
                    self.problem("interval", "must be at least 1s");
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
        let jitter = self.duration("jitter", &r.jitter, default_jitter);
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
