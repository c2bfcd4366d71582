//! The top-level keys: `listen`, `workers`, `log`, `hooks`, `limits` (with its byte sizes) and `ssh`.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{DAY, TIMEOUT, Validator};
use crate::config::raw::{RawConfig, RawSize};
use crate::config::{Hooks, Limits, ListenAddr, LogConfig, LogFormat, LogOutput, SshSettings};

/// An idle pooled SSH session: under a second it is never reused between pushes; past a day
/// servers and middleboxes have long dropped it.
const SSH_IDLE: RangeInclusive<Duration> = Duration::from_secs(1)..=DAY;

/// Syncs that may run at once.
const WORKERS: RangeInclusive<i64> = 1..=crate::config::MAX_WORKERS as i64;

/// Webhook bodies are read into memory whole: at least 1KiB (a push payload's size), at most 1GiB.
const MAX_BODY: RangeInclusive<usize> = 1024..=1024 * 1024 * 1024;

/// Open connections, each a file descriptor: tokio's semaphore panics past its maximum, and
/// shutdown takes the permits back as a `u32`.
const MAX_CONNECTIONS: RangeInclusive<i64> = 1..=65_536;

/// A body must keep up at least a byte a second (a slower one is no upload), and a floor above
/// 1GiB/s would cut off every real sender.
const MIN_BODY_RATE: RangeInclusive<usize> = 1..=1024 * 1024 * 1024;

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

    /// The `ssh:` block: how long a pooled SSH session may stay unused.
    pub(super) fn ssh(&mut self, raw: &RawConfig) -> SshSettings {
        let d = SshSettings::default();
        let Some(s) = &raw.ssh else { return d };
        SshSettings {
            idle_timeout: self.duration_within(
                "ssh.idle_timeout",
                &s.idle_timeout,
                d.idle_timeout,
                SSH_IDLE,
            ),
        }
    }

    pub(super) fn limits(&mut self, raw: &RawConfig) -> Limits {
        let d = Limits::default();
        let Some(l) = &raw.limits else { return d };
        let max_body = match &l.max_body {
            None => d.max_body,
            Some(raw) => self.size("limits.max_body", raw).unwrap_or(d.max_body),
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
        let max_connections_per_ip = l
            .max_connections_per_ip
            .filter(|&n| self.within("limits.max_connections_per_ip", n, MAX_CONNECTIONS))
            .map_or(d.max_connections_per_ip, |n| n as usize);
        let min_body_rate = match &l.min_body_rate {
            None => d.min_body_rate,
            Some(raw) => self
                .size("limits.min_body_rate", raw)
                .filter(|&n| {
                    let ok = MIN_BODY_RATE.contains(&n);
                    if !ok {
                        self.problem(
                            "limits.min_body_rate",
                            format!("must be between 1B and 1GiB (per second), not {n}B"),
                        );
                    }
                    ok
                })
                .unwrap_or(d.min_body_rate),
        };
        Limits {
            max_connections_per_ip,
            min_body_rate,
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

    /// A byte size as written (`25MB`, `512 KiB`, a number of bytes); `None` when it is none.
    pub(super) fn size(&mut self, field: &str, raw: &RawSize) -> Option<usize> {
        match raw {
            // Saturates on 32-bit targets: far outside every bound.
            RawSize::Bytes(n) => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
            RawSize::Text(t) => {
                let parsed = parse_size(t);
                if parsed.is_none() {
                    self.problem(field, format!("`{t}` is not a size (e.g. 25MB, 512KiB)"));
                }
                parsed
            }
        }
    }

    /// The shared `/hooks` endpoint's secret; a `hooks` block without one is an error.
    pub(super) fn hooks(&mut self, raw: &RawConfig) -> Option<Hooks> {
        let h = raw.hooks.as_ref()?;
        let secrets = self.secret_set("hooks.", &h.secret, &h.secret_file, &h.secrets);
        if secrets.is_empty() {
            self.problem(
                "hooks.secret",
                "the shared /hooks endpoint needs a secret: set `secret`, `secret_file` or `secrets`",
            );
        }
        Some(Hooks {
            secrets,
            provider: self.provider("hooks.provider", &h.provider),
            allow_sha1: h.allow_sha1.unwrap_or(false),
        })
    }
}

/// Sizes such as `25MB`, `25 MiB`, `512k`, `1024`, `1TiB` (units are powers of 1024).
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
        "t" | "tb" | "tib" => 1024 * 1024 * 1024 * 1024,
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
    fn max_connections_per_ip_are_1_to_65536() {
        let text = |v: &str| format!("limits: {{max_connections_per_ip: {v}}}\n");
        let range = "between 1 and 65536";
        let (inside, outside) = (["1", "65536"], ["0", "65537", "-1"]);
        assert_bound(
            text,
            "limits.max_connections_per_ip",
            range,
            &inside,
            &outside,
        );
    }

    #[test]
    fn min_body_rate_is_1b_to_1gib_per_second() {
        let text = |v: &str| format!("limits: {{min_body_rate: {v}}}\n");
        let range = "between 1B and 1GiB";
        let (inside, outside) = (["1", "1KiB", "1GiB"], ["0", "1073741825", "1025MiB"]);
        assert_bound(text, "limits.min_body_rate", range, &inside, &outside);
        let p = super::super::check("limits: {min_body_rate: fast}\n").unwrap_err();
        assert_eq!(p[0].field.as_deref(), Some("limits.min_body_rate"));
        assert!(p[0].message.contains("is not a size"), "{p:?}");
    }

    #[test]
    fn hooks_needs_a_secret_and_names_a_provider() {
        let repos = "repos:\n  - {url: /o.git, directory: /d, secret: s}\n";
        let check = |hooks: &str| super::super::check(&format!("hooks: {hooks}\n{repos}"));
        let c = check("{secrets: [old, new], provider: forgejo}").unwrap();
        let hooks = c.hooks.unwrap();
        assert_eq!(hooks.secrets.len(), 2);
        assert_eq!(hooks.provider, Some(crate::webhook::Provider::Gitea));
        assert!(super::super::check(repos).unwrap().hooks.is_none());
        for (hooks, field, message) in [
            ("{provider: github}", "hooks.secret", "needs a secret"),
            ("{secret: ''}", "hooks.secret", "is empty"),
            (
                "{secret: s, provider: gitbucket}",
                "hooks.provider",
                "is not one of",
            ),
            ("{secret: s, secret_file: f}", "hooks.secrets", "set one of"),
        ] {
            let p = check(hooks).unwrap_err();
            assert_eq!(p[0].field.as_deref(), Some(field), "{hooks}: {p:?}");
            assert!(p[0].message.contains(message), "{hooks}: {p:?}");
        }
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
