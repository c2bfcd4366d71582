//! From [`RawConfig`] to [`Config`]: the walk, the shared helpers, and where problems are noted.
//!
//! gwg's keys are rewritten into hookmirror's first (see `gwg`), then defaults applied, `${VAR}`
//! expanded, paths made absolute, and every problem collected with the repo, the key and the line.
//! Pure: the environment and the folders come in through [`Context`]. The top-level keys are
//! checked in `top`, a repo's in `repo`, its schedule in `schedule`, what a fetch may receive
//! (`limits.max_*`, top level and per repo) in `fetch`, and `notify`/`health` in `notify`.

mod api;
mod deploy;
mod fetch;
mod fleet;
#[cfg(test)]
mod gwg_keys;
mod notify;
mod repo;
mod schedule;
mod top;

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::gwg::{self, Notes, Rewritten};
use super::lines::find_key_line;
use super::raw::{Format, RawConfig, RawDuration};
use super::{Config, Credential, Problem};
use crate::webhook::Provider;

pub use api::{SINGLE_TOKEN_NAME, parse_expiry, token_sha256};
pub(crate) use fleet::block_line;
pub use fleet::{DEFAULT_STREAM, valid_fleet_name};
pub use schedule::parse_cron;

/// A day: the longest timeout, retry delay or jitter.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Timeouts: zero would cut everything off at once, and past a day a hang goes unnoticed.
const TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(1)..=DAY;

/// What validation needs from the world, passed in so it stays pure.
pub struct Context<'a> {
    /// The config file, for messages.
    pub file: Option<PathBuf>,
    /// The config text, to find the line of a key.
    pub text: Option<&'a str>,
    pub format: Format,
    /// Relative paths resolve against this (the config file's folder).
    pub base_dir: PathBuf,
    /// `$CREDENTIALS_DIRECTORY`: relative secret-file paths resolve against it when set.
    pub credentials_dir: Option<PathBuf>,
    /// For `~/` in paths.
    pub home: Option<PathBuf>,
    /// Looks up `${NAME}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Context<'_> {
    /// A context for text that has no file: relative paths resolve against `base_dir`, no env.
    pub fn bare(format: Format, base_dir: impl Into<PathBuf>) -> Context<'static> {
        Context {
            file: None,
            text: None,
            format,
            base_dir: base_dir.into(),
            credentials_dir: None,
            home: None,
            env: &|_| None,
        }
    }
}

/// Turns the file as written into a [`Config`], or lists everything wrong with it.
pub fn validate(raw: RawConfig, ctx: &Context) -> Result<Config, Vec<Problem>> {
    let Rewritten { raw, top, repos } = gwg::rewrite(raw);
    let mut v = Validator {
        ctx,
        problems: Vec::new(),
        warnings: Vec::new(),
        repo: None,
        notes: std::iter::once(top).chain(repos).collect(),
        fetch_defaults: Default::default(),
    };
    let config = v.config(raw);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(v.problems)
    }
}

struct Validator<'c, 'a> {
    ctx: &'c Context<'a>,
    problems: Vec<Problem>,
    /// What passes but is probably not meant; kept in [`Config::warnings`].
    warnings: Vec<Problem>,
    /// The repo being validated: (index, display name).
    repo: Option<(usize, String)>,
    /// The rewrite's notes on the top level, then on each repo.
    notes: Vec<Notes>,
    /// The top-level `limits.max_*`, which a repository's own `limits` override.
    fetch_defaults: super::FetchLimits,
}

impl Validator<'_, '_> {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        let key = field.rsplit('.').next().unwrap_or(field);
        let line = self.ctx.text.and_then(|t| {
            find_key_line(t, self.ctx.format, key, self.repo.as_ref().map(|(i, _)| *i))
        });
        self.problems.push(Problem {
            file: self.ctx.file.clone(),
            line,
            repo: self.repo.as_ref().map(|(_, n)| n.clone()),
            field: Some(field.to_string()),
            message: message.into(),
        });
    }

    /// Where the rewrite's notes on the top level, or on the repo being validated, are.
    fn scope(&self) -> usize {
        self.repo.as_ref().map_or(0, |(i, _)| i + 1)
    }

    /// Reports what the rewrite found wrong here (once).
    fn report_rewrite(&mut self) {
        let scope = self.scope();
        let found = self
            .notes
            .get_mut(scope)
            .map(|n| std::mem::take(&mut n.problems));
        for (field, message) in found.unwrap_or_default() {
            self.problem(field, message);
        }
    }

    /// The key `field`'s value was written under here, for messages about the value.
    fn written(&self, field: &'static str) -> &'static str {
        let notes = self.notes.get(self.scope());
        notes.map_or(field, |n| n.written_as(field))
    }

    /// `${NAME}` → the variable's value; `${NAME:-default}` → the default when it is unset or
    /// empty; `$${` → a literal `${`.
    fn expand(&mut self, field: &str, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                match tail.find('}') {
                    Some(end) => {
                        let (name, default) = match tail[..end].split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (&tail[..end], None),
                        };
                        match ((self.ctx.env)(name).filter(|v| !v.is_empty()), default) {
                            (Some(v), _) => out.push_str(&v),
                            (None, Some(d)) => out.push_str(d),
                            (None, None) => self.problem(
                                field,
                                format!("environment variable `{name}` is not set"),
                            ),
                        }
                        rest = &tail[end + 1..];
                    }
                    None => {
                        self.problem(field, "`${` without a closing `}`");
                        out.push_str(after);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
        out
    }

    fn opt(&mut self, field: &str, value: &Option<String>) -> Option<String> {
        value.as_deref().map(|v| self.expand(field, v))
    }

    /// A path: `${VAR}` expanded, `~/` from home, relative ones made absolute against the
    /// config's folder (or `$CREDENTIALS_DIRECTORY` for `credential` paths), `.`/`..` folded.
    fn path(&mut self, field: &str, value: &str, credential: bool) -> PathBuf {
        let value = self.expand(field, value);
        if value.trim().is_empty() {
            self.problem(field, "is empty");
        }
        let p = match (value.strip_prefix("~/"), &self.ctx.home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(&value),
        };
        let p = if p.is_absolute() {
            p
        } else {
            match (&self.ctx.credentials_dir, credential) {
                (Some(dir), true) => dir.join(p),
                _ => self.ctx.base_dir.join(p),
            }
        };
        normalise_path(&p)
    }

    fn duration(
        &mut self,
        field: &str,
        value: &Option<RawDuration>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(RawDuration::Seconds(s)) => Duration::from_secs(*s),
            Some(RawDuration::Text(t)) => {
                let t = self.expand(field, t);
                match humantime::parse_duration(t.trim()) {
                    Ok(d) => d,
                    Err(e) => {
                        self.problem(
                            field,
                            format!("`{t}` is not a duration ({e}); write e.g. 30s, 5m, 1h"),
                        );
                        default
                    }
                }
            }
        }
    }

    /// Whether `n` lies in `range`; when not, says so with the range.
    fn within<T: PartialOrd + Display>(
        &mut self,
        field: &str,
        n: T,
        range: RangeInclusive<T>,
    ) -> bool {
        let inside = range.contains(&n);
        if !inside {
            let (min, max) = range.into_inner();
            self.problem(field, format!("must be between {min} and {max}, not {n}"));
        }
        inside
    }

    /// [`Self::duration`], bounded to `range`: a value outside is reported with the range and
    /// `default` stands in for it.
    fn duration_within(
        &mut self,
        field: &str,
        value: &Option<RawDuration>,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        let d = self.duration(field, value, default);
        if range.contains(&d) {
            return d;
        }
        let (min, max, d) = (short(*range.start()), short(*range.end()), short(d));
        let message = if range.start().is_zero() {
            format!("must be at most {max}, not {d}")
        } else {
            format!("must be between {min} and {max}, not {d}")
        };
        self.problem(field, message);
        default
    }

    /// One of an inline value or a file (read later by `load`).
    fn credential(
        &mut self,
        field: &str,
        inline: &Option<String>,
        file_field: &str,
        file: &Option<String>,
    ) -> Option<Credential> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    file_field,
                    format!("set `{field}` or `{file_field}`, not both"),
                );
                None
            }
            (Some(v), None) => {
                let before = self.problems.len();
                let v = self.expand(field, v);
                if v.is_empty() && self.problems.len() == before {
                    self.problem(field, "is empty");
                }
                Some(Credential::inline(v))
            }
            (None, Some(f)) => Some(Credential {
                value: Default::default(),
                file: Some(self.path(file_field, f, true)),
            }),
            (None, None) => None,
        }
    }

    /// A webhook provider's name (`github`, …, `forgejo`), `None` when unset or wrong.
    fn provider(&mut self, field: &str, value: &Option<String>) -> Option<Provider> {
        self.opt(field, value).and_then(|p| {
            let parsed = Provider::from_str(&p).ok();
            if parsed.is_none() {
                self.problem(
                    field,
                    format!(
                        "`{p}` is not one of github, gitlab, gitea, forgejo, bitbucket, standard"
                    ),
                );
            }
            parsed
        })
    }

    /// A webhook secret as written under `prefix` (`""` for a repo, `"hooks."`): one of `secret`,
    /// `secret_file` or a `secrets` list (rotation); a file is read later by `load`.
    fn secret_set(
        &mut self,
        prefix: &str,
        secret: &Option<String>,
        secret_file: &Option<String>,
        secrets: &Option<Vec<String>>,
    ) -> Vec<Credential> {
        let field = |key: &str| format!("{prefix}{key}");
        let set = [secret.is_some(), secret_file.is_some(), secrets.is_some()];
        if set.iter().filter(|s| **s).count() > 1 {
            self.problem(
                &field("secrets"),
                "set one of `secret`, `secret_file` or `secrets`",
            );
        }
        let mut out = Vec::new();
        if let Some(v) = secret {
            let v = self.expand(&field("secret"), v);
            if v.is_empty() {
                self.problem(&field("secret"), "is empty");
            }
            out.push(Credential::inline(v));
        } else if let Some(f) = secret_file {
            let file = self.path(&field("secret_file"), f, true);
            out.push(Credential {
                value: Default::default(),
                file: Some(file),
            });
        }
        for s in secrets.iter().flatten() {
            let v = self.expand(&field("secrets"), s);
            if v.is_empty() {
                self.problem(&field("secrets"), "holds an empty secret");
            } else {
                out.push(Credential::inline(v));
            }
        }
        out
    }

    /// The walk: the top-level keys, then each repo, then what repos may not share.
    fn config(&mut self, raw: RawConfig) -> Config {
        self.report_rewrite();
        let listen = self.listen(&raw);
        let workers = self.workers(&raw);
        let log = self.log(&raw);
        let hooks = self.hooks(&raw);
        let limits = self.limits(&raw);
        self.fetch_defaults = self.fetch_limits(&raw);
        let health = self.health(&raw);
        let notify = self.notify_targets(&raw.notify);
        let ssh = self.ssh(&raw);
        let fleet = self.fleet(raw.fleet.as_ref());

        let defaults = raw.defaults.unwrap_or_default();
        for (field, set) in [
            ("defaults.name", defaults.name.is_some()),
            ("defaults.url", defaults.url.is_some()),
            ("defaults.directory", defaults.directory.is_some()),
            ("defaults.path", defaults.path.is_some()),
        ] {
            if set {
                self.problem(field, "is different for every repo and cannot be a default");
            }
        }

        // Each repo has its defaults filled in already (by the rewrite).
        let raw_repos = raw.repos.unwrap_or_default();
        let mut repos = Vec::with_capacity(raw_repos.len());
        for (i, r) in raw_repos.into_iter().enumerate() {
            self.repo = Some((i, format!("#{}", i + 1)));
            repos.push(self.repo_config(r));
        }
        self.repo = None;
        self.duplicates(&repos);
        // After the repos: token globs are checked against their names.
        let api = self.api(raw.api.as_ref(), &repos);

        Config {
            by_match_key: Config::index_repos(&repos),
            by_path: Config::index_paths(&repos),
            hooks,
            source: self.ctx.file.clone(),
            listen,
            workers,
            initialise: raw.initialise.unwrap_or(true),
            log,
            api,
            limits,
            health,
            notify,
            ssh,
            fleet,
            repos,
            warnings: std::mem::take(&mut self.warnings),
        }
    }
}

/// A duration in one unit, as a config would write it: `0s`, `1500ms`, `90s`, `36h`, `365d`; one
/// finer than a millisecond in humantime's words.
fn short(d: Duration) -> String {
    const DAY_MS: u128 = 24 * 3_600_000;
    if d.is_zero() {
        return "0s".into();
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return humantime::format_duration(d).to_string();
    }
    let ms = d.as_millis();
    if ms > DAY_MS && ms.is_multiple_of(DAY_MS) {
        return format!("{}d", ms / DAY_MS);
    }
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Folds `.` and `..` without touching the filesystem.
fn normalise_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Validates YAML `text` with no environment, relative paths against `/etc/hookmirror`.
#[cfg(test)]
fn check(text: &str) -> Result<Config, Vec<Problem>> {
    let raw = super::parse_str(text, Format::Yaml).expect("parses");
    validate(raw, &Context::bare(Format::Yaml, "/etc/hookmirror"))
}

/// A config with one repo, its keys followed by `lines` (each indented by four spaces).
#[cfg(test)]
fn repo_with(lines: &str) -> String {
    format!("repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n{lines}")
}

/// A key's bound: each of `inside` passes; each of `outside` is refused, at `field` alone, with a
/// message that names `range` (e.g. `between 1 and 1024`). `text` makes a config from a value.
#[cfg(test)]
fn assert_bound(
    text: impl Fn(&str) -> String,
    field: &str,
    range: &str,
    inside: &[&str],
    outside: &[&str],
) {
    for v in inside {
        if let Err(p) = check(&text(v)) {
            panic!("{field}: {v} is refused: {p:?}");
        }
    }
    for v in outside {
        let p = check(&text(v)).expect_err(&format!("{field}: {v} passes"));
        assert_eq!(p.len(), 1, "{field}: {v}: {p:?}");
        assert_eq!(p[0].field.as_deref(), Some(field), "{p:?}");
        assert!(p[0].message.contains(range), "{field}: {v}: {p:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_shown_as_a_config_writes_them() {
        let s = Duration::from_secs;
        assert_eq!(short(Duration::ZERO), "0s");
        assert_eq!(short(Duration::from_micros(1500)), "1ms 500us");
        assert_eq!(short(Duration::from_millis(1)), "1ms");
        assert_eq!(short(Duration::from_millis(1500)), "1500ms");
        assert_eq!(short(s(1)), "1s");
        assert_eq!(short(s(90)), "90s");
        assert_eq!(short(s(600)), "10m");
        assert_eq!(short(DAY), "24h");
        assert_eq!(short(s(36 * 3600)), "36h");
        assert_eq!(short(s(48 * 3600)), "2d");
        assert_eq!(short(s(365 * 24 * 3600)), "365d");
    }
}
