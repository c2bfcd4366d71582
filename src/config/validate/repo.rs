//! One repo's keys, from its URL to `on_success`, and what no two repos may share.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::{DAY, TIMEOUT, Validator};
use crate::config::raw::RawRepo;
use crate::config::{Auth, Credential, OnSuccess, Repo, Retry, Target, Timeouts, TransportChoice};
use crate::url::{RemoteUrl, Scheme};

/// Fetch depth; 0 (or unset) fetches the whole history. libgit2 reads `i32::MAX` as "unshallow",
/// and a million commits is deeper than almost any history.
const DEPTH: RangeInclusive<i64> = 1..=1_000_000;

/// Attempts in all (1 = no retry).
const ATTEMPTS: RangeInclusive<u32> = 1..=100;

/// Retry delays: zero retries at once; past a day a sync looks stuck.
const RETRY_DELAY: RangeInclusive<Duration> = Duration::ZERO..=DAY;

/// `sync_timeout`: under a second no fetch completes; past a day a hang goes unnoticed.
const SYNC_TIMEOUT: RangeInclusive<Duration> = Duration::from_secs(1)..=DAY;

/// `stall_timeout`: a remote may pause for a moment (TCP retransmits take ~200 ms); past an hour
/// of silence it is gone.
const STALL_TIMEOUT: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(3600);

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
    pub(super) fn repo_config(&mut self, r: RawRepo) -> Repo {
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
        } else if path == "/hooks"
            || path.starts_with("/api/")
            || ["/api", "/", "/healthz", "/readyz", "/metrics"].contains(&path.as_str())
        {
            self.problem(
                "path",
                format!(
                    "`{path}` is reserved (shared /hooks endpoint, the API, the status page, health and metrics)"
                ),
            );
        }

        let provider = self.provider("provider", &r.provider);
        let schedule = self.schedule(&r);
        let depth = match r.depth {
            None | Some(0) => None,
            Some(d) if DEPTH.contains(&d) => Some(d as u32),
            Some(d) => {
                self.problem(
                    "depth",
                    format!(
                        "must be a positive number up to {} (0: the whole history), not {d}",
                        DEPTH.end()
                    ),
                );
                None
            }
        };

        let auth = self.auth(&r);
        let transport = match self.opt("transport", &r.transport).as_deref() {
            None | Some("hookmirror") => TransportChoice::Hookmirror,
            Some("libgit2") => TransportChoice::Libgit2,
            Some(other) => {
                self.problem(
                    "transport",
                    format!("`{other}` is not one of hookmirror, libgit2"),
                );
                TransportChoice::Hookmirror
            }
        };
        let retry = self.retry(&r);
        let timeouts = self.timeouts(&r);
        let limits = self.repo_fetch_limits(&r);
        let on_success = self.on_success(&r);
        let notify = self.notify_targets(&r.notify);
        let deploy = self.deploy(&r, &target);
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
            transport,
            auth,
            retry,
            timeouts,
            limits,
            on_success,
            notify,
            deploy,
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
        self.secret_set("", &r.secret, &r.secret_file, &r.secrets)
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
        let proxy = self.opt("auth.proxy", &a.proxy);
        if let Some(p) = &proxy
            && let Err(why) = crate::url::check_proxy(p)
        {
            self.problem("auth.proxy", why);
        }
        let ca_file = a
            .ca_file
            .as_ref()
            .map(|f| self.path("auth.ca_file", f, false));
        Auth {
            ssh_key,
            ssh_key_passphrase: passphrase,
            known_hosts,
            username,
            token,
            proxy,
            ca_file,
        }
    }

    fn retry(&mut self, r: &RawRepo) -> Retry {
        let d = Retry::default();
        let Some(raw) = &r.retry else { return d };
        let attempts = raw.attempts.unwrap_or(d.attempts);
        self.within("retry.attempts", attempts, ATTEMPTS);
        let initial_delay = self.duration_within(
            "retry.initial_delay",
            &raw.initial_delay,
            d.initial_delay,
            RETRY_DELAY,
        );
        let max_delay = self.duration_within(
            "retry.max_delay",
            &raw.max_delay,
            d.max_delay.max(initial_delay),
            RETRY_DELAY,
        );
        if max_delay < initial_delay {
            self.problem("retry.max_delay", "is shorter than `retry.initial_delay`");
        }
        Retry {
            attempts: attempts.clamp(*ATTEMPTS.start(), *ATTEMPTS.end()),
            initial_delay,
            max_delay,
        }
    }

    fn timeouts(&mut self, r: &RawRepo) -> Timeouts {
        let d = Timeouts::default();
        Timeouts {
            sync: self.duration_within("sync_timeout", &r.sync_timeout, d.sync, SYNC_TIMEOUT),
            stall: self.duration_within("stall_timeout", &r.stall_timeout, d.stall, STALL_TIMEOUT),
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
        let timeout = self.duration_within(
            "on_success.timeout",
            &raw.timeout,
            Duration::from_secs(60),
            TIMEOUT,
        );
        OnSuccess {
            touch,
            command,
            timeout,
        }
    }

    pub(super) fn duplicates(&mut self, repos: &[Repo]) {
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

#[cfg(test)]
mod tests {
    use super::super::{assert_bound, check, repo_with};
    use super::*;

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

    #[test]
    fn depth_is_0_or_1_to_a_million() {
        let text = |v: &str| repo_with(&format!("    depth: {v}\n"));
        let range = "positive number up to 1000000 (0: the whole history)";
        let (inside, outside) = (["0", "1", "1000000"], ["-1", "1000001", "2147483647"]);
        assert_bound(text, "depth", range, &inside, &outside);
    }

    #[test]
    fn retry_attempts_are_1_to_100() {
        let text = |v: &str| repo_with(&format!("    retry: {{attempts: {v}}}\n"));
        let range = "between 1 and 100";
        assert_bound(text, "retry.attempts", range, &["1", "100"], &["0", "101"]);
    }

    #[test]
    fn retry_delays_are_at_most_24h() {
        for key in ["initial_delay", "max_delay"] {
            let text = |v: &str| repo_with(&format!("    retry: {{{key}: {v}}}\n"));
            let field = format!("retry.{key}");
            let (inside, outside) = (["24h", "86400"], ["24h 1ms", "86401"]);
            assert_bound(text, &field, "at most 24h", &inside, &outside);
        }
        let zero = "    retry: {initial_delay: 0s, max_delay: 0s}\n";
        assert!(check(&repo_with(zero)).is_ok(), "zero retries at once");
    }

    #[test]
    fn the_on_success_timeout_is_1ms_to_24h() {
        let text = |v: &str| repo_with(&format!("    on_success: {{timeout: {v}}}\n"));
        let (inside, outside) = (["1ms", "24h"], ["0s", "24h 1ms", "86401"]);
        assert_bound(
            text,
            "on_success.timeout",
            "between 1ms and 24h",
            &inside,
            &outside,
        );
    }

    #[test]
    fn sync_timeout_is_1s_to_24h_and_stall_timeout_1s_to_1h() {
        let text = |v: &str| repo_with(&format!("    sync_timeout: {v}\n"));
        let (inside, outside) = (["1s", "24h", "600"], ["999ms", "24h 1ms", "0"]);
        assert_bound(
            text,
            "sync_timeout",
            "between 1s and 24h",
            &inside,
            &outside,
        );
        let text = |v: &str| repo_with(&format!("    stall_timeout: {v}\n"));
        let (inside, outside) = (["1s", "1h", "60"], ["500ms", "61m", "0"]);
        assert_bound(
            text,
            "stall_timeout",
            "between 1s and 1h",
            &inside,
            &outside,
        );
        let c = check(&repo_with("")).unwrap();
        assert_eq!(c.repos[0].timeouts, Timeouts::default());
        assert_eq!(c.repos[0].timeouts.sync, Duration::from_secs(600));
        assert_eq!(c.repos[0].timeouts.stall, Duration::from_secs(60));
    }

    #[test]
    fn timeouts_are_inherited_from_defaults() {
        let text = "defaults:\n  sync_timeout: 2m\n  stall_timeout: 5s\nrepos:\n  - {url: /o.git, directory: /d, secret: s}\n  - {url: /o.git, directory: /e, secret: s, stall_timeout: 9s}\n";
        let c = check(text).unwrap();
        let t = |i: usize| c.repos[i].timeouts;
        assert_eq!(
            (t(0).sync, t(0).stall),
            (Duration::from_secs(120), Duration::from_secs(5))
        );
        assert_eq!(
            (t(1).sync, t(1).stall),
            (Duration::from_secs(120), Duration::from_secs(9))
        );
    }
}
