//! The top-level keys: `listen`, `workers`, `log` and `limits` (with its byte sizes).

use super::Validator;
use crate::config::raw::{RawConfig, RawSize};
use crate::config::{Limits, ListenAddr, LogConfig, LogFormat, LogOutput};

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
                if !(1..=1024).contains(&n) {
                    let field = self.written("workers");
                    self.problem(field, format!("must be between 1 and 1024, not {n}"));
                }
                n.clamp(1, 1024) as usize
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
        if max_body < 1024 {
            self.problem("limits.max_body", "must be at least 1KiB");
        }
        let max_connections = match l.max_connections {
            None => d.max_connections,
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                self.problem(
                    "limits.max_connections",
                    format!("must be at least 1, not {n}"),
                );
                d.max_connections
            }
        };
        Limits {
            max_body,
            header_timeout: self.duration(
                "limits.header_timeout",
                &l.header_timeout,
                d.header_timeout,
            ),
            body_timeout: self.duration("limits.body_timeout", &l.body_timeout, d.body_timeout),
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
