//! From [`RawConfig`] to [`Config`]: gwg's keys rewritten into hookmirror's first (see `gwg`),
//! then defaults applied, `${VAR}` expanded, paths made absolute, and every problem collected with
//! the repo, the key and the line. Pure: the environment and the folders come in through
//! [`Context`].

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};

use super::gwg::{self, Notes, Rewritten};
use super::raw::{Format, RawConfig, RawDuration, RawRepo, RawSize, find_key_line};
use super::*;
use crate::url::{RemoteUrl, Scheme};

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
        repo: None,
        notes: std::iter::once(top).chain(repos).collect(),
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
    /// The repo being validated: (index, display name).
    repo: Option<(usize, String)>,
    /// The rewrite's notes on the top level, then on each repo.
    notes: Vec<Notes>,
}

/// Names are used in URL paths and the API: keep them to a safe alphabet.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
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

    fn config(&mut self, raw: RawConfig) -> Config {
        self.report_rewrite();
        let listen = self.listen(&raw);
        let workers = match raw.workers {
            Some(n) => {
                if !(1..=1024).contains(&n) {
                    let field = self.written("workers");
                    self.problem(field, format!("must be between 1 and 1024, not {n}"));
                }
                n.clamp(1, 1024) as usize
            }
            None => 4,
        };
        let log = self.log(&raw);
        let api_token = match &raw.api {
            Some(api) => {
                self.credential("api.token", &api.token, "api.token_file", &api.token_file)
            }
            None => None,
        };
        let limits = self.limits(&raw);

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

        Config {
            source: self.ctx.file.clone(),
            listen,
            workers,
            initialise: raw.initialise.unwrap_or(true),
            log,
            api_token,
            limits,
            repos,
        }
    }

    fn listen(&mut self, raw: &RawConfig) -> ListenAddr {
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

    fn log(&mut self, raw: &RawConfig) -> LogConfig {
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

    fn limits(&mut self, raw: &RawConfig) -> Limits {
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

    fn repo_config(&mut self, r: RawRepo) -> Repo {
        let url = match &r.url {
            Some(u) => self.url(u),
            None => {
                self.problem("url", "is required");
                None
            }
        };
        let directory = match &r.directory {
            Some(d) => self.path("directory", d, false),
            None => {
                self.problem("directory", "is required");
                PathBuf::new()
            }
        };
        let path_field = self.opt("path", &r.path);
        let name = match self.opt("name", &r.name) {
            Some(n) => n,
            None => path_field
                .as_deref()
                .and_then(|p| p.trim_end_matches('/').rsplit('/').next())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .or_else(|| {
                    directory
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                })
                .unwrap_or_default(),
        };
        if !valid_name(&name) {
            self.problem(
                "name",
                format!(
                    "`{name}` is not a usable name (letters, digits, `-`, `_`, `.`; set `name`)"
                ),
            );
        }
        if let Some((i, _)) = self.repo {
            self.repo = Some((i, format!("`{name}`")));
        }
        self.report_rewrite();

        let target = self.target(&r);
        let remote = self
            .opt("remote", &r.remote)
            .unwrap_or_else(|| "origin".into());
        if !crate::refname::is_valid(&remote) || remote.contains('/') {
            self.problem("remote", format!("`{remote}` is not a valid remote name"));
        }

        let secrets = self.secrets(&r);
        let insecure_no_secret = r.insecure_no_secret.unwrap_or(false);
        if secrets.is_empty() && !insecure_no_secret {
            self.problem(
                "secret",
                "no webhook secret: set `secret`, `secret_file` or `secrets` (or `insecure_no_secret: true` to accept unauthenticated webhooks)",
            );
        }

        let path = path_field.unwrap_or_else(|| format!("/hooks/{name}"));
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.contains("//") {
            self.problem(
                "path",
                format!("`{path}` must be a URL path starting with `/`"),
            );
        } else if path == "/hooks" || path.starts_with("/api/") || path == "/api" {
            self.problem(
                "path",
                format!("`{path}` is reserved (shared /hooks endpoint and the API)"),
            );
        }

        let provider = self.opt("provider", &r.provider).and_then(|p| {
            let parsed = Provider::from_str(&p).ok();
            if parsed.is_none() {
                self.problem(
                    "provider",
                    format!(
                        "`{p}` is not one of github, gitlab, gitea, forgejo, bitbucket, standard"
                    ),
                );
            }
            parsed
        });
        let schedule = self.schedule(&r);
        let depth = match r.depth {
            None | Some(0) => None,
            Some(d) if (1..=i64::from(i32::MAX)).contains(&d) => Some(d as u32),
            Some(d) => {
                self.problem("depth", format!("must be a positive number, not {d}"));
                None
            }
        };

        let auth = self.auth(&r);
        let retry = self.retry(&r);
        let on_success = self.on_success(&r);
        Repo {
            name,
            url: url.unwrap_or_else(RemoteUrl::missing),
            directory,
            target,
            remote,
            secrets,
            insecure_no_secret,
            path,
            provider,
            allow_sha1: r.allow_sha1.unwrap_or(false),
            schedule,
            depth,
            submodules: r.submodules.unwrap_or(false),
            clean: r.clean.unwrap_or(false),
            auth,
            retry,
            on_success,
        }
    }

    /// Checks the URL's form and splits it, once; a relative local path becomes absolute
    /// (against the config folder). `None` when it is refused.
    fn url(&mut self, written: &str) -> Option<RemoteUrl> {
        let before = self.problems.len();
        let url = self.expand("url", written);
        if url.is_empty() {
            if self.problems.len() == before {
                self.problem("url", "is empty");
            }
            return None;
        }
        let checked = match RemoteUrl::parse(url.as_str()) {
            Some(u) if u.scheme() == Scheme::File && !url.contains("://") => {
                let path = self.path("url", &url, false);
                RemoteUrl::parse(path.to_string_lossy())
            }
            checked => checked,
        };
        if checked.is_none() {
            self.problem("url", format!("`{}` is not a git URL hookmirror accepts (ssh, scp-like, https, http, git, file or a path)", crate::url::redact(&url)));
        }
        checked
    }

    fn target(&mut self, r: &RawRepo) -> Target {
        let target = match (&r.branch, &r.tag) {
            (Some(_), Some(_)) => {
                self.problem("tag", "set `branch` or `tag`, not both");
                Target::DefaultBranch
            }
            (Some(b), None) => Target::Branch(b.clone()),
            (None, Some(t)) => Target::Tag(t.clone()),
            (None, None) => Target::DefaultBranch,
        };
        let (field, name) = match &target {
            Target::Branch(b) => ("branch", b),
            Target::Tag(t) => ("tag", t),
            Target::DefaultBranch => return target,
        };
        let name = self.expand(field, name);
        if name.starts_with("refs/") {
            self.problem(
                field,
                format!("write the short name, without `refs/`: `{name}`"),
            );
        } else if !crate::refname::is_valid(&name) {
            self.problem(field, format!("`{name}` is not a valid git ref name"));
        }
        match target {
            Target::Branch(_) => Target::Branch(name),
            _ => Target::Tag(name),
        }
    }

    fn secrets(&mut self, r: &RawRepo) -> Vec<Credential> {
        let set = [
            r.secret.is_some(),
            r.secret_file.is_some(),
            r.secrets.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            self.problem("secrets", "set one of `secret`, `secret_file` or `secrets`");
        }
        let mut out = Vec::new();
        if let Some(v) = &r.secret {
            let v = self.expand("secret", v);
            if v.is_empty() {
                self.problem("secret", "is empty");
            }
            out.push(Credential::inline(v));
        } else if let Some(f) = &r.secret_file {
            let file = self.path("secret_file", f, true);
            out.push(Credential {
                value: Default::default(),
                file: Some(file),
            });
        }
        for s in r.secrets.iter().flatten() {
            let v = self.expand("secrets", s);
            if v.is_empty() {
                self.problem("secrets", "holds an empty secret");
            } else {
                out.push(Credential::inline(v));
            }
        }
        out
    }

    fn schedule(&mut self, r: &RawRepo) -> Option<Schedule> {
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

    fn auth(&mut self, r: &RawRepo) -> Auth {
        let a = r.auth.clone().unwrap_or_default();
        let field = self.written("auth.ssh_key");
        let ssh_key = a.ssh_key.as_ref().map(|k| self.path(field, k, true));
        let passphrase = self.credential(
            self.written("auth.ssh_key_passphrase"),
            &a.ssh_key_passphrase,
            "auth.ssh_key_passphrase_file",
            &a.ssh_key_passphrase_file,
        );
        if passphrase.is_some() && ssh_key.is_none() {
            self.problem("auth.ssh_key_passphrase", "is set but no `ssh_key` is");
        }
        let known_hosts = a
            .known_hosts
            .as_ref()
            .map(|k| self.path("auth.known_hosts", k, false));
        let username = self.opt("auth.username", &a.username);
        let token = self.credential("auth.token", &a.token, "auth.token_file", &a.token_file);
        Auth {
            ssh_key,
            ssh_key_passphrase: passphrase,
            known_hosts,
            username,
            token,
        }
    }

    fn retry(&mut self, r: &RawRepo) -> Retry {
        let d = Retry::default();
        let Some(raw) = &r.retry else { return d };
        let attempts = raw.attempts.unwrap_or(d.attempts);
        if !(1..=100).contains(&attempts) {
            self.problem(
                "retry.attempts",
                format!("must be between 1 and 100, not {attempts}"),
            );
        }
        let initial_delay =
            self.duration("retry.initial_delay", &raw.initial_delay, d.initial_delay);
        let max_delay = self.duration(
            "retry.max_delay",
            &raw.max_delay,
            d.max_delay.max(initial_delay),
        );
        if max_delay < initial_delay {
            self.problem("retry.max_delay", "is shorter than `retry.initial_delay`");
        }
        Retry {
            attempts: attempts.clamp(1, 100),
            initial_delay,
            max_delay,
        }
    }

    fn on_success(&mut self, r: &RawRepo) -> OnSuccess {
        let raw = r.on_success.clone().unwrap_or_default();
        let field = self.written("on_success.touch");
        let touch = raw.touch.as_ref().map(|t| self.path(field, t, false));
        let command: Vec<String> = raw
            .command
            .iter()
            .flatten()
            .map(|a| self.expand("on_success.command", a))
            .collect();
        if raw.command.is_some() && command.first().is_none_or(|c| c.trim().is_empty()) {
            self.problem(
                "on_success.command",
                "must name a program: an argv list such as [\"systemctl\", \"reload\", \"nginx\"]",
            );
        }
        let timeout = self.duration("on_success.timeout", &raw.timeout, Duration::from_secs(60));
        if timeout.is_zero() {
            self.problem("on_success.timeout", "must be longer than zero");
        }
        OnSuccess {
            touch,
            command,
            timeout,
        }
    }

    fn duplicates(&mut self, repos: &[Repo]) {
        let mut seen: HashMap<(&str, String), usize> = HashMap::new();
        for (i, r) in repos.iter().enumerate() {
            let keys = [
                ("name", r.name.clone()),
                ("path", r.path.clone()),
                ("directory", r.directory.to_string_lossy().into_owned()),
            ];
            for (field, value) in keys {
                if value.is_empty() {
                    continue;
                }
                if let Some(first) = seen.insert((field, value.clone()), i) {
                    self.repo = Some((i, format!("`{}`", r.name)));
                    self.problem(
                        field,
                        format!("`{value}` is also used by repo `{}`", repos[first].name),
                    );
                }
            }
        }
        for (i, a) in repos.iter().enumerate() {
            for b in &repos[i + 1..] {
                if a.directory != b.directory
                    && !a.directory.as_os_str().is_empty()
                    && b.directory.starts_with(&a.directory)
                {
                    self.repo = Some((i, format!("`{}`", b.name)));
                    self.problem(
                        "directory",
                        format!("lies inside repo `{}`'s directory", a.name),
                    );
                }
            }
        }
        self.repo = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn check(text: &str) -> Result<Config, Vec<Problem>> {
        let raw = parse_str(text, Format::Yaml).expect("parses");
        validate(raw, &Context::bare(Format::Yaml, "/etc/hookmirror"))
    }

    fn repo_with_url(url: &str) -> String {
        format!("repos:\n  - url: {url}\n    directory: /d\n    secret: s\n")
    }

    #[test]
    fn each_url_is_checked_and_split_once() {
        let c = check(&repo_with_url("https://u:tok@GitHub.com/Octo/Hello.git")).unwrap();
        let url = &c.repos[0].url;
        assert_eq!(url.scheme(), Scheme::Https);
        assert_eq!(url.match_key(), "github.com/octo/hello");
        assert_eq!(url.parsed().user.as_deref(), Some("u"));
        assert!(url.parsed().has_password);
        let c = check(&repo_with_url("../origin.git")).unwrap();
        let url = &c.repos[0].url;
        assert_eq!(
            url.as_str(),
            "/etc/origin.git",
            "resolved against the config folder"
        );
        assert_eq!(url.parsed().path, "/etc/origin.git");
        assert_eq!(url.match_key(), "file:/etc/origin");
    }

    #[test]
    fn a_config_never_prints_a_url_credential() {
        let c = check(&repo_with_url("https://u:tok3n@h.example/r.git")).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("tok3n"), "{shown}");
        assert!(shown.contains("https://u:***@h.example/r.git"), "{shown}");
    }

    #[test]
    fn an_empty_url_is_refused() {
        let p = check(&repo_with_url("''")).unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            (p[0].field.as_deref(), p[0].message.as_str()),
            (Some("url"), "is empty")
        );
        let p = check(&repo_with_url("${UNSET}")).unwrap_err();
        assert_eq!(p.len(), 1, "one problem, the variable: {p:?}");
        assert!(p[0].message.contains("`UNSET` is not set"), "{p:?}");
        let p = check("repos:\n  - directory: /d\n    secret: s\n").unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].message, "is required");
    }
}
