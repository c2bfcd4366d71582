//! Logging setup: text or JSON lines to stdout, stderr or a file, with or without timestamps
//! (off by default under systemd, where journald stamps each line). The level comes from
//! `--log-level`, else `RUST_LOG`, else the config's `log.level`. Both formats escape every
//! value (`format`), so text from outside never starts a line of its own.

mod format;

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, LogOutput};

/// The filter: `override_level` (from `--log-level`), else `RUST_LOG`, else `config.level`.
fn filter(config: &LogConfig, override_level: Option<&str>) -> EnvFilter {
    let directives = match override_level {
        Some(level) => level.to_string(),
        None => std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| config.level.clone()),
    };
    EnvFilter::new(with_quiet_watchers(&directives))
}

/// The file watcher's crates log every filesystem event at trace level; with a log file in the
/// config's folder each line written would be logged again, without end. The HTTP client's
/// crates log every request's steps at debug (hookmirror logs the sync). They stay at info
/// unless a directive names them.
fn with_quiet_watchers(directives: &str) -> String {
    let mut out = directives.to_string();
    for noisy in ["notify", "inotify", "mio", "ureq", "ureq_proto"] {
        if !directives.contains(noisy) {
            out.push_str(&format!(",{noisy}=info"));
        }
    }
    out
}

/// Whether lines carry a timestamp: the config's choice, else off under journald.
pub fn timestamps(config: &LogConfig) -> bool {
    config
        .timestamp
        .unwrap_or_else(|| std::env::var_os("JOURNAL_STREAM").is_none())
}

/// Installs the global subscriber for the daemon. Returns an error message when the log file
/// cannot be opened.
pub fn init(config: &LogConfig, override_level: Option<&str>) -> Result<(), String> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(config, override_level))
        .with_target(false)
        .fmt_fields(format::EscapedFields);
    let ts = timestamps(config);
    macro_rules! finish {
        ($b:expr) => {{
            let b = $b;
            let r = match (config.format, ts) {
                (LogFormat::Json, timestamps) => {
                    b.event_format(format::JsonLines { timestamps }).try_init()
                }
                (LogFormat::Text, true) => b.try_init(),
                (LogFormat::Text, false) => b.without_time().try_init(),
            };
            r.map_err(|e| e.to_string())
        }};
    }
    match &config.output {
        LogOutput::Stdout => {
            let ansi = std::io::stdout().is_terminal();
            finish!(builder.with_ansi(ansi).with_writer(std::io::stdout))
        }
        LogOutput::Stderr => {
            let ansi = std::io::stderr().is_terminal();
            finish!(builder.with_ansi(ansi).with_writer(std::io::stderr))
        }
        LogOutput::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            finish!(builder.with_ansi(false).with_writer(Mutex::new(file)))
        }
    }
}

/// Logging for one-shot commands: like the daemon's, but to stderr unless the config names a
/// file, so stdout carries only the result lines.
pub fn init_cli(config: &LogConfig, override_level: Option<&str>) {
    let mut c = config.clone();
    if c.output == LogOutput::Stdout {
        c.output = LogOutput::Stderr;
    }
    if let Err(e) = init(&c, override_level) {
        eprintln!("hookmirror: {e}; logging to stderr");
        c.output = LogOutput::Stderr;
        let _ = init(&c, override_level);
    }
}
