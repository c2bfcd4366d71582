//! The config model. `raw` reads text (YAML, TOML, JSON; hookmirror's keys and gwg's), `gwg`
//! rewrites gwg's keys into hookmirror's, `validate` turns the result into a [`Config`] while
//! collecting every problem, and `load` finds the file and reads the secret and key files it
//! names. Only `load` touches the filesystem.

mod gwg;
mod load;
mod raw;
mod validate;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use load::{LoadError, candidate_paths, find_config, load, load_file, resolve_files};
pub use raw::{Format, RawConfig, parse_lenient, parse_str};
pub use validate::{
    Context, DEFAULT_STREAM, SINGLE_TOKEN_NAME, parse_cron, parse_expiry, token_sha256,
    valid_fleet_name, validate,
};

use crate::secret::Secret;
use crate::url::RemoteUrl;
use crate::webhook::Provider;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (for messages and reload).
    pub source: Option<PathBuf>,
    pub listen: ListenAddr,
    /// Syncs that may run at once across all repositories.
    pub workers: usize,
    /// Clone or sync every repository on start (and each repository added by a reload).
    pub initialise: bool,
    pub log: LogConfig,
    /// Who may call the HTTP API, and whether reading needs a token.
    pub api: Api,
    pub limits: Limits,
    /// The fleet this node belongs to (`fleet`); `None`: a node on its own.
    pub fleet: Option<Fleet>,
    pub repos: Vec<Repo>,
    /// What is allowed but probably not meant (a token glob that matches no repository, an
    /// expired token): `check` prints them, the daemon logs them at start and reload.
    pub warnings: Vec<Problem>,
}

impl Config {
    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.iter().find(|r| r.name == name)
    }

    /// What passes validation but is probably not meant, one line each: [`Config::warnings`]
    /// and the API tokens expired at `now`. `check` prints them; the daemon logs them.
    pub fn notices(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
        let mut out: Vec<String> = self.warnings.iter().map(|w| w.to_string()).collect();
        for t in self.api.expired(now) {
            let at = t
                .expires
                .map(|e| e.format("%Y-%m-%d %H:%M UTC").to_string());
            out.push(format!(
                "api token `{}` expired at {}; it is refused",
                t.name,
                at.unwrap_or_default()
            ));
        }
        out
    }
}

/// The API's tokens (`api.tokens`, plus `api.token` as one that may do everything) and
/// `api.protect_reads`. No tokens: reads are open and the sync endpoint is disabled.
#[derive(Debug, Clone, Default)]
pub struct Api {
    pub tokens: Vec<ApiToken>,
    /// GET endpoints (but the health checks) need a token with the `read` scope.
    pub protect_reads: bool,
}

impl Api {
    /// The tokens whose `expires` has passed at `now`: allowed in the config (a reload must not
    /// fail over one), refused when used, worth a warning.
    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> impl Iterator<Item = &ApiToken> {
        self.tokens
            .iter()
            .filter(move |t| t.expires.is_some_and(|e| now >= e))
    }
}

/// One API token. The config holds its SHA-256, never the token itself (an inline `token` is
/// hashed when the config is read, a `token_file` when `load` reads it).
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Shown in logs and refusals; never the secret.
    pub name: String,
    pub sha256: [u8; 32],
    /// `token_file`: read (and hashed) by `load`, again on every reload.
    pub file: Option<PathBuf>,
    pub scopes: Scopes,
    /// Names or globs (`docs-*`); `None`: every repository.
    pub repos: Option<Vec<glob::Pattern>>,
    /// From this moment on the token is refused with "expired".
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a token may do. `admin` covers everything, on every repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    /// The GET endpoints, when `api.protect_reads` is on.
    pub read: bool,
    /// `POST /api/repos/{name}/sync`.
    pub sync: bool,
    /// Everything, also `POST /api/reload`.
    pub admin: bool,
}

impl Scopes {
    /// Every scope: what the single `api.token` may do.
    pub const ALL: Scopes = Scopes {
        read: true,
        sync: true,
        admin: true,
    };

    /// The names as written in the config: `read`, `sync`, `admin`.
    pub fn names(&self) -> Vec<&'static str> {
        [
            ("read", self.read),
            ("sync", self.sync),
            ("admin", self.admin),
        ]
        .into_iter()
        .filter_map(|(n, on)| on.then_some(n))
        .collect()
    }
}

/// `host:port` as configured; resolved when bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter directive: `error`, `warn`, `info`, `debug`, `trace`.
    pub level: String,
    pub output: LogOutput,
    /// `None`: on unless running under systemd (`JOURNAL_STREAM`), where journald adds its own.
    pub timestamp: Option<bool>,
}

/// The `fleet` block: NATS JetStream servers shared by several nodes, each of which syncs every
/// push any of them accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// `nats://host:port` or `tls://host:port`, one server or the members of a cluster.
    pub servers: Vec<String>,
    /// This node's name (consumer and status key); `None`: the host name.
    pub node: Option<String>,
    /// A `.creds` file's contents (JWT and NKey seed), read by `load`.
    pub credentials: Option<Credential>,
    pub token: Option<Credential>,
    /// The JetStream stream (created when missing); the status bucket is named after it.
    pub stream: String,
    /// Copies of the stream and the status bucket in a cluster.
    pub replicas: usize,
    /// A folder where requests waiting for NATS are also written, so that they survive a
    /// restart of this node; `None`: kept in memory only.
    pub outbox: Option<PathBuf>,
}

/// HTTP intake limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // GitHub's payloads reach 25 MB.
            max_body: 25 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// A secret from the config, inline or from a file; `file` is kept so a reload re-reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub value: Secret,
    pub file: Option<PathBuf>,
}

impl Credential {
    pub fn inline(value: impl Into<String>) -> Self {
        Credential {
            value: Secret::new(value),
            file: None,
        }
    }
}

/// What a repository tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Branch(String),
    Tag(String),
    /// The remote's default branch (its `HEAD`).
    DefaultBranch,
}

impl Target {
    /// The full ref on the remote, when known without asking it.
    pub fn remote_ref(&self) -> Option<String> {
        match self {
            Target::Branch(b) => Some(format!("refs/heads/{b}")),
            Target::Tag(t) => Some(format!("refs/tags/{t}")),
            Target::DefaultBranch => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Branch(b) => write!(f, "branch {b}"),
            Target::Tag(t) => write!(f, "tag {t}"),
            Target::DefaultBranch => f.write_str("default branch"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub ssh_key: Option<PathBuf>,
    pub ssh_key_passphrase: Option<Credential>,
    /// Where host keys are checked; `None` means `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    pub username: Option<String>,
    pub token: Option<Credential>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnSuccess {
    pub touch: Option<PathBuf>,
    /// argv; run without a shell.
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// When scheduled syncs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub timing: Timing,
    /// Each tick is delayed by a random duration up to this, so many repositories on one
    /// schedule do not fetch in the same second.
    pub jitter: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    /// Crontab syntax, in `timezone` (`None`: the system's local time).
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
        timezone: Option<chrono_tz::Tz>,
    },
    /// `interval: 5m`: every so often, counted from start-up.
    Interval(Duration),
}

/// Default [`Schedule::jitter`]; never more than half an interval.
pub const DEFAULT_JITTER: Duration = Duration::from_secs(5);

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.timing {
            Timing::Cron {
                expr,
                timezone: Some(tz),
                ..
            } => write!(f, "schedule {expr} ({tz})"),
            Timing::Cron {
                expr,
                timezone: None,
                ..
            } => write!(f, "schedule {expr}"),
            Timing::Interval(d) => write!(f, "every {}", humantime::format_duration(*d)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    /// Checked and split once, here; shown redacted (see [`RemoteUrl`]).
    pub url: RemoteUrl,
    pub directory: PathBuf,
    pub target: Target,
    pub remote: String,
    /// Any of these verifies a delivery (rotation). Empty only with `insecure_no_secret`.
    pub secrets: Vec<Credential>,
    pub insecure_no_secret: bool,
    /// Webhook path, e.g. `/hooks/site`.
    pub path: String,
    /// `None`: detected from each delivery's headers.
    pub provider: Option<Provider>,
    pub allow_sha1: bool,
    pub schedule: Option<Schedule>,
    pub depth: Option<u32>,
    pub submodules: bool,
    pub clean: bool,
    pub auth: Auth,
    pub retry: Retry,
    pub on_success: OnSuccess,
}

/// One thing wrong with a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// The repo's name, or `#N` when it has none yet.
    pub repo: Option<String>,
    /// The key, e.g. `branch` or `auth.token_file`.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Self {
        Problem {
            file: None,
            line: None,
            repo: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn at_line(line: Option<usize>, message: impl Into<String>) -> Self {
        Problem {
            line,
            ..Problem::new(message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(repo) = &self.repo {
            write!(f, "repo {repo}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "`{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Configs for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A config from YAML text, validated as `hookmirror check` would (relative paths against
    /// `/srv`, no environment).
    pub fn config(yaml: &str) -> Config {
        let raw = parse_str(yaml, Format::Yaml).unwrap();
        validate(raw, &Context::bare(Format::Yaml, "/srv")).unwrap()
    }

    /// One repository following `url`'s default branch in `/srv/<name>`.
    pub fn repo(name: &str, url: &str) -> Repo {
        config(&format!(
            "repos:\n  - {{name: {name}, url: '{url}', directory: {name}, secret: s}}\n"
        ))
        .repos
        .remove(0)
    }
}
