//! The top-level keys: `listen`, `workers`, `log` and `limits` (with its byte sizes).

use std::ops::RangeInclusive;

use super::{TIMEOUT, Validator};
use crate::config::raw::{RawConfig, RawSize};
use crate::config::{Limits, ListenAddr, LogConfig, LogFormat, LogOutput};

/// Syncs that may run at once.
const WORKERS: RangeInclusive<i64> = 1..=crate::config::MAX_WORKERS as i64;

/// Webhook bodies are read into memory whole: at least 1KiB (a push payload's size), at most 1GiB.
const MAX_BODY: RangeInclusive<usize> = 1024..=1024 * 1024 * 1024;

/// Open connections, each a file descriptor: tokio's semaphore panics past its maximum, and
/// shutdown takes the permits back as a `u32`.
const MAX_CONNECTIONS: RangeInclusive<i64> = 1..=65_536;

impl Validator<'_, '_> {
    pub(super) fn listen(&mut self, raw: &RawConfig) -> ListenAddr {
        let listen = self.opt("listen", &raw.listen);
        let default = ListenAddr {
            host: "127.0.0.1".into(),
            port: 8080,
        };
        let Some(text) = listen else { return default };
        let text = text.trim();
        let parsed = if let Some(rest) = text.strip_prefix('[') {
            rest.split_once("]:").map(|(h, p)| (h.to_string(), p))
        } else {
            text.rsplit_once(':').map(|(h, p)| (h.to_string(), p))
        };
        match parsed {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) if !host.contains(':') || text.starts_with('[') => ListenAddr {
                    host: if host.is_empty() {
                        "0.0.0.0".into()
                    } else {
                        host
                    },
                    port,
                },
                _ => {
                    self.problem(
                        "listen",
                        format!("`{text}` is not address:port (e.g. 127.0.0.1:8080, [::1]:8080)"),
                    );
                    default
                }
            },
            // A bare host: the default port.
            None if !text.is_empty() => ListenAddr {
                host: text.to_string(),
                port: 8080,
            },
            None => default,
        }
    }

    pub(super) fn workers(&mut self, raw: &RawConfig) -> usize {
        match raw.workers {
            Some(n) => {
                let field = self.written("workers");
                self.within(field, n, WORKERS);
                n.clamp(*WORKERS.start(), *WORKERS.end()) as usize
            }
            None => 4,
        }
    }

    pub(super) fn log(&mut self, raw: &RawConfig) -> LogConfig {
        let field = self.written("log");
        let block = raw.log.clone().unwrap_or_default();
        let format = match block
            .format
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.problem(
                    &format!("{field}.format"),
                    format!("`{other}` is not text or json"),
                );
                LogFormat::Text
            }
        };
        let level = block
            .level
            .clone()
            .unwrap_or_else(|| "info".into())
            .to_ascii_lowercase();
        if !matches!(
            level.as_str(),
            "error" | "warn" | "warning" | "info" | "debug" | "trace"
        ) {
            self.problem(
                &format!("{field}.level"),
                format!("`{level}` is not one of error, warn, info, debug, trace"),
            );
        }
        let level = if level == "warning" {
            "warn".to_string()
        } else {
            level
        };
        let output = match block.output.as_deref() {
            None | Some("stdout") => LogOutput::Stdout,
            Some("stderr") => LogOutput::Stderr,
            Some(path) => LogOutput::File(self.path(&format!("{field}.output"), path, false)),
        };
        LogConfig {
            format,
            level,
            output,
            timestamp: block.timestamp,
        }
    }

    pub(super) fn limits(&mut self, raw: &RawConfig) -> Limits {
        let d = Limits::default();
        let Some(l) = &raw.limits else { return d };
        let max_body = match &l.max_body {
            None => d.max_body,
            Some(RawSize::Bytes(n)) => *n as usize,
            Some(RawSize::Text(t)) => match parse_size(t) {
                Some(n) => n,
                None => {
                    self.problem(
                        "limits.max_body",
                        format!("`{t}` is not a size (e.g. 25MB, 512KiB)"),
                    );
                    d.max_body
                }
            },
        };
        if !MAX_BODY.contains(&max_body) {
            let written = match &l.max_body {
                Some(RawSize::Text(t)) => t.trim().to_string(),
                _ => max_body.to_string(),
            };
            self.problem(
                "limits.max_body",
                format!("must be between 1KiB and 1GiB, not {written}"),
            );
        }
        let max_connections = l
            .max_connections
            .filter(|&n| self.within("limits.max_connections", n, MAX_CONNECTIONS))
            .map_or(d.max_connections, |n| n as usize);
        Limits {
            max_body,
            header_timeout: self.duration_within(
                "limits.header_timeout",
                &l.header_timeout,
                d.header_timeout,
                TIMEOUT,
            ),
            body_timeout: self.duration_within(
                "limits.body_timeout",
                &l.body_timeout,
                d.body_timeout,
                TIMEOUT,
            ),
            max_connections,
        }
    }
}

/// Sizes such as `25MB`, `25 MiB`, `512k`, `1024`.
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::super::assert_bound;

    #[test]
    fn workers_are_1_to_1024() {
        let text = |v: &str| format!("workers: {v}\n");
        let range = "between 1 and 1024";
        assert_bound(text, "workers", range, &["1", "1024"], &["0", "1025"]);
    }

    #[test]
    fn max_body_is_1kib_to_1gib() {
        let text = |v: &str| format!("limits: {{max_body: {v}}}\n");
        let range = "between 1KiB and 1GiB";
        let inside = ["1024", "1KiB", "1GiB", "1073741824"];
        let outside = ["1023", "1073741825", "1025MiB"];
        assert_bound(text, "limits.max_body", range, &inside, &outside);
    }

    #[test]
    fn max_connections_are_1_to_65536() {
        let text = |v: &str| format!("limits: {{max_connections: {v}}}\n");
        let range = "between 1 and 65536";
        let (inside, outside) = (["1", "65536"], ["0", "65537", "4294967297"]);
        assert_bound(text, "limits.max_connections", range, &inside, &outside);
    }

    #[test]
    fn request_timeouts_are_1ms_to_24h() {
        for key in ["header_timeout", "body_timeout"] {
            let text = |v: &str| format!("limits: {{{key}: {v}}}\n");
            let field = format!("limits.{key}");
            let (inside, outside) = (["1ms", "24h", "86400"], ["0s", "0", "24h 1ms", "86401"]);
            assert_bound(text, &field, "between 1ms and 24h", &inside, &outside);
        }
    }
}
