//! The config model. `raw` reads text (YAML, TOML, JSON; hookmirror's keys and gwg's), `gwg`
//! rewrites gwg's keys into hookmirror's, `validate` turns the result into a [`Config`] while
//! collecting every problem, and `load` finds the file and reads the secret and key files it
//! names. Only `load` touches the filesystem.

mod deploy;
mod fetch;
mod format;
mod gwg;
mod lines;
mod load;
mod notify;
mod raw;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use deploy::{Deploy, PrePublish, Publish, RepoMode, Verify, VerifyMode};
pub use fetch::{FetchLimits, Timeouts, size_text};
pub use load::{LoadError, candidate_paths, find_config, load, load_file, resolve_files};
pub use notify::{NotifyEvent, NotifyTarget, notify_secret_problem};
pub use raw::{Format, RawConfig, parse_lenient, parse_str};
pub use validate::{
    Context, DEFAULT_STREAM, SINGLE_TOKEN_NAME, parse_cron, parse_expiry, token_sha256,
    valid_fleet_name, validate,
};

use crate::secret::Secret;
use crate::url::RemoteUrl;
use crate::webhook::Provider;

/// The most `workers` a config may set. The runtime's pool of blocking threads (where git runs) is
/// sized for it at start, so a reload that raises `workers` is never held back by the pool.
pub const MAX_WORKERS: usize = 1024;

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
    /// The shared `/hooks` endpoint's own secret; `None`: deliveries there are verified with the
    /// secrets of the repositories their payload names.
    pub hooks: Option<Hooks>,
    pub limits: Limits,
    pub health: Health,
    /// Notification targets for every repository (each repository may add its own).
    pub notify: Vec<NotifyTarget>,
    pub ssh: SshSettings,
    /// The fleet this node belongs to (`fleet`); `None`: a node on its own.
    pub fleet: Option<Fleet>,
    pub repos: Vec<Repo>,
    /// What is allowed but probably not meant (a token glob that matches no repository, an
    /// expired token): `check` prints them, the daemon logs them at start and reload.
    pub warnings: Vec<Problem>,
    /// Indices into `repos` by their URL's match key (see [`crate::url::match_key`]), so that the
    /// shared endpoint finds the repositories a payload names without a walk over all of them.
    pub by_match_key: HashMap<String, Vec<usize>>,
    /// Indices into `repos` by webhook path (paths are unique), so that routing a request costs
    /// the same whatever the number of repositories.
    pub by_path: HashMap<String, usize>,
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

    /// The repositories whose URL has this match key.
    pub fn repos_with_key(&self, key: &str) -> impl Iterator<Item = &Repo> {
        let found = self.by_match_key.get(key).map_or(&[][..], Vec::as_slice);
        found.iter().filter_map(|&i| self.repos.get(i))
    }

    /// The repository whose webhook path is `path`.
    pub fn repo_at_path(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    /// Builds [`Config::by_path`] from `repos` (the first repository of a path, should two
    /// share one: validation refuses that).
    pub fn index_paths(repos: &[Repo]) -> HashMap<String, usize> {
        let mut index = HashMap::with_capacity(repos.len());
        for (i, repo) in repos.iter().enumerate() {
            index.entry(repo.path.clone()).or_insert(i);
        }
        index
    }

    /// Builds [`Config::by_match_key`] from `repos`.
    pub fn index_repos(repos: &[Repo]) -> HashMap<String, Vec<usize>> {
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, repo) in repos.iter().enumerate() {
            index
                .entry(repo.url.match_key().to_owned())
                .or_default()
                .push(i);
        }
        index
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
    /// Why the token matches nothing: its `token_file` could not be read (gone, unreadable,
    /// empty) when the config was last loaded. Fail closed: the rest of the config applies.
    pub disabled: Option<String>,
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

/// The shared `/hooks` endpoint's secret: one MAC per secret verifies a delivery there, however
/// many repositories are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    /// Any of these verifies (rotation); never empty.
    pub secrets: Vec<Credential>,
    /// `None`: detected from each delivery's headers.
    pub provider: Option<Provider>,
    pub allow_sha1: bool,
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
    /// Open connections from one client address (an IPv6 client: its /64).
    pub max_connections_per_ip: usize,
    /// Bytes per second a body must keep up, on average, after a short grace.
    pub min_body_rate: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // GitHub's payloads reach 25 MB.
            max_body: 25 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            // A forge sends from many addresses and rarely more than a few deliveries at once
            // from one; a reverse proxy in front is one address for all: raise it there.
            max_connections_per_ip: 64,
            // A forge sends a body at network speed; 1 KiB/s cuts a byte-a-second trickle
            // within about a second and still admits a 25 MB body over a slow 1 MB/s link.
            min_body_rate: 1024,
        }
    }
}

/// When `/readyz` turns red.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// A repository failing this many syncs in a row makes the daemon not ready.
    pub max_consecutive_failures: u64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            max_consecutive_failures: 3,
        }
    }
}

/// A secret from the config, inline or from a file; `file` is kept so a reload re-reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub value: Secret,
    pub file: Option<PathBuf>,
}

impl AsRef<Secret> for Credential {
    fn as_ref(&self) -> &Secret {
        &self.value
    }
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

/// Settings of hookmirror's SSH transport (`ssh:`), shared by every repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshSettings {
    /// A pooled SSH session unused this long is closed.
    pub idle_timeout: Duration,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Which code talks to an `https`/`http`/`ssh`/`git` remote (`transport:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportChoice {
    /// hookmirror's own transports: pooled connections (src/sync/http.rs, ssh.rs, git_proto.rs).
    #[default]
    Hookmirror,
    /// libgit2's built-in transports, for setups the own ones do not cover.
    Libgit2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub ssh_key: Option<PathBuf>,
    pub ssh_key_passphrase: Option<Credential>,
    /// Where host keys are checked; `None` means `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    pub username: Option<String>,
    pub token: Option<Credential>,
    /// HTTP(S) proxy for this repository's remote (`http://host:port`); `None`: the
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` environment.
    pub proxy: Option<String>,
    /// Extra CA certificates (PEM) trusted for the remote, besides the system's.
    pub ca_file: Option<PathBuf>,
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
    pub transport: TransportChoice,
    pub auth: Auth,
    pub retry: Retry,
    pub timeouts: Timeouts,
    /// What one fetch may receive (`limits.max_*`, per repo or from the top level).
    pub limits: FetchLimits,
    pub on_success: OnSuccess,
    /// Notification targets of this repository (beside the top-level ones).
    pub notify: Vec<NotifyTarget>,
    /// Mirror or checkout; in place or atomic; signatures and the pre-publish check.
    pub deploy: Deploy,
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
