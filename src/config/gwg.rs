//! gwg's keys rewritten into hookmirror's, in one pass before validation. Pure.
//!
//! Validation then reads hookmirror's keys only. gwg's are `listen`+`port`, `threads`, `logging`,
//! `retry_count` and `retry_delay` at the top, and `label`/`labelType`, `trigger`, `sshPrivKey`
//! and `sshPassPhrase` in a repo or in `defaults`.

use super::raw::{RawConfig, RawRepo};

/// The config in hookmirror's keys, and what the rewrite noted on the way.
#[derive(Debug)]
pub(super) struct Rewritten {
    /// No gwg key is set. Each repo has `defaults` filled in already (gwg's top-level retry keys
    /// became defaults first), so that a gwg key in `defaults` meets a hookmirror key in a repo
    /// just as the repo's own would; `defaults` itself is left for validation's own checks.
    pub raw: RawConfig,
    pub top: Notes,
    /// One for each repo, in order.
    pub repos: Vec<Notes>,
}

/// What the rewrite noted about the top level or one repo.
#[derive(Debug)]
pub(super) struct Notes {
    top_level: bool,
    /// (hookmirror's key, the gwg key its value was written under), so that a problem in the
    /// value names the key the file has.
    renamed: Vec<(&'static str, &'static str)>,
    /// (field, message): a gwg key set together with hookmirror's, or a gwg value that names
    /// nothing. Validation reports them with the file, the line and the repo's name.
    pub problems: Vec<(&'static str, String)>,
}

impl Notes {
    fn new(top_level: bool) -> Notes {
        Notes {
            top_level,
            renamed: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The key `field`'s value was written under: a gwg key, or `field` itself.
    pub fn written_as(&self, field: &'static str) -> &'static str {
        self.renamed
            .iter()
            .find(|(ours, _)| *ours == field)
            .map_or(field, |(_, gwg)| gwg)
    }

    /// gwg's `gwg` and hookmirror's `ours` (quoted as the message shows it) are both set.
    fn clash(&mut self, gwg: &'static str, ours: &str) {
        let message = if self.top_level {
            format!("`{gwg}` (gwg's name) and {ours} are both set; keep {ours}")
        } else {
            format!("gwg's `{gwg}` and {ours} are both set; keep one")
        };
        self.problems.push((gwg, message));
    }

    /// Puts gwg's `value` into `slot`, hookmirror's key `ours`. When `slot` is set already, that
    /// is a clash: `slot` keeps its value if `keep_ours`, else it is emptied, as if neither key
    /// were set. True on a clash.
    fn adopt<T>(
        &mut self,
        (gwg, ours): (&'static str, &'static str),
        value: Option<T>,
        slot: &mut Option<T>,
        keep_ours: bool,
    ) -> bool {
        let Some(value) = value else { return false };
        if slot.is_some() {
            self.clash(gwg, &format!("`{ours}`"));
            if !keep_ours {
                *slot = None;
            }
            return true;
        }
        *slot = Some(value);
        self.renamed.push((ours, gwg));
        false
    }

    /// [`Notes::adopt`] for a key gwg leaves blank for "none": a blank value is adopted as no
    /// value, yet still clashes with hookmirror's key when that is set.
    fn adopt_unless_blank(
        &mut self,
        pair: (&'static str, &'static str),
        value: Option<String>,
        slot: &mut Option<String>,
    ) {
        let value = value.filter(|v| slot.is_some() || !v.trim().is_empty());
        self.adopt(pair, value, slot, false);
    }
}

/// Rewrites every gwg key of `raw` into hookmirror's (see [`Rewritten`]).
pub(super) fn rewrite(mut raw: RawConfig) -> Rewritten {
    let mut top = Notes::new(true);
    listen(&mut raw, &mut top);
    let threads = raw.threads.take();
    top.adopt(("threads", "workers"), threads, &mut raw.workers, false);
    let logging = raw.logging.take();
    top.adopt(("logging", "log"), logging, &mut raw.log, true);

    let mut defaults = raw.defaults.take().unwrap_or_default();
    let retry_count = raw.retry_count.take();
    let retry_delay = raw.retry_delay.take();
    if retry_count.is_some() || retry_delay.is_some() {
        let r = defaults.retry.get_or_insert_with(Default::default);
        // gwg's retry_count counts attempts in all.
        r.attempts = r.attempts.or(retry_count.map(|n| n.max(1)));
        r.initial_delay = r.initial_delay.take().or(retry_delay);
    }
    let mut repos = raw.repos.take().unwrap_or_default();
    let notes = repos
        .iter_mut()
        .map(|r| {
            r.inherit(&defaults);
            repo(r)
        })
        .collect();
    // Every repo has them now; validation only checks that no per-repo key is a default.
    GwgKeys::take(&mut defaults);
    raw.defaults = Some(defaults);
    raw.repos = Some(repos);
    Rewritten {
        raw,
        top,
        repos: notes,
    }
}

/// gwg: `listen` is a host (blank: all interfaces) and `port` the port.
fn listen(raw: &mut RawConfig, notes: &mut Notes) {
    let Some(port) = raw.port.take() else { return };
    let host = match raw.listen.as_deref().map(str::trim) {
        None | Some("") => "0.0.0.0",
        Some(h) => match colons(h).as_slice() {
            [colon] if !h.starts_with('[') => {
                notes.problems.push((
                    "port",
                    "`listen` already has a port; drop `port` or the port in `listen`".into(),
                ));
                &h[..*colon]
            }
            _ => h.trim_start_matches('[').trim_end_matches(']'),
        },
    };
    // In brackets any host reads back as itself: a name, an IPv6 address, a `${VAR}`.
    raw.listen = Some(format!("[{host}]:{port}"));
}

/// Where the `:`s of `text` are, leaving out those inside a `${…}` (`${HOST:-localhost}`).
fn colons(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].find([':', '$']).map(|c| i + c) {
        let rest = &text[c..];
        i = if rest.starts_with("$${") {
            c + 3
        } else if rest.starts_with("${") {
            rest.find('}').map_or(text.len(), |end| c + end + 1)
        } else {
            if rest.starts_with(':') {
                found.push(c);
            }
            c + 1
        };
    }
    found
}

/// A repo's gwg keys, taken out of it.
struct GwgKeys {
    label: Option<String>,
    label_type: Option<String>,
    trigger: Option<String>,
    ssh_priv_key: Option<String>,
    ssh_pass_phrase: Option<String>,
}

impl GwgKeys {
    fn take(r: &mut RawRepo) -> GwgKeys {
        GwgKeys {
            label: r.label.take(),
            label_type: r.label_type.take(),
            trigger: r.trigger.take(),
            ssh_priv_key: r.ssh_priv_key.take(),
            ssh_pass_phrase: r.ssh_pass_phrase.take(),
        }
    }
}

/// Rewrites one repo's gwg keys into its own.
fn repo(r: &mut RawRepo) -> Notes {
    let mut notes = Notes::new(false);
    let gwg = GwgKeys::take(r);
    label(r, gwg.label, gwg.label_type, &mut notes);
    let auth = r.auth.get_or_insert_with(Default::default);
    let pair = ("sshPrivKey", "auth.ssh_key");
    notes.adopt_unless_blank(pair, gwg.ssh_priv_key, &mut auth.ssh_key);
    let passphrase = gwg.ssh_pass_phrase.filter(|p| !p.is_empty());
    let pair = ("sshPassPhrase", "auth.ssh_key_passphrase");
    if notes.adopt(pair, passphrase, &mut auth.ssh_key_passphrase, false) {
        auth.ssh_key_passphrase_file = None;
    }
    let on_success = r.on_success.get_or_insert_with(Default::default);
    let pair = ("trigger", "on_success.touch");
    notes.adopt_unless_blank(pair, gwg.trigger, &mut on_success.touch);
    notes
}

/// `label` names the branch or tag, `labelType` says which: a branch when blank or unrecognised.
fn label(r: &mut RawRepo, label: Option<String>, label_type: Option<String>, notes: &mut Notes) {
    let label_type = label_type.map(|t| t.to_ascii_lowercase());
    let (label, is_tag) = match (label, label_type.as_deref()) {
        (Some(l), t) => (l, t == Some("tag")),
        // gwg: "defaults to master if labelType is branch".
        (None, Some("branch")) => ("master".to_string(), false),
        (None, Some("tag")) => {
            let message = "is tag but `label` names no tag".to_string();
            notes.problems.push(("labelType", message));
            return;
        }
        (None, _) => return,
    };
    match (&r.branch, &r.tag) {
        // Validation refuses `branch` and `tag` together.
        (Some(_), Some(_)) => {}
        (Some(_), None) | (None, Some(_)) => {
            notes.clash("label", "`branch`/`tag`");
            r.branch = None;
            r.tag = None;
        }
        (None, None) if is_tag => r.tag = Some(label),
        (None, None) => r.branch = Some(label),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Context, Format, ListenAddr, Problem, Target, parse_str, validate};
    use super::*;

    const REPO: &str = "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n";

    fn check_with(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<Problem>> {
        let raw = parse_str(text, Format::Yaml).expect("parses");
        let ctx = Context {
            text: Some(text),
            env,
            ..Context::bare(Format::Yaml, "/base")
        };
        validate(raw, &ctx)
    }

    fn check(text: &str) -> Result<Config, Vec<Problem>> {
        check_with(text, &|_| None)
    }

    type Seen = (Option<usize>, Option<String>, String, String);

    /// Every problem as (line, repo, field, message), sorted.
    fn problems(text: &str) -> Vec<Seen> {
        let mut seen: Vec<Seen> = check(text)
            .expect_err("should be refused")
            .into_iter()
            .map(|p| (p.line, p.repo, p.field.unwrap_or_default(), p.message))
            .collect();
        seen.sort();
        seen
    }

    fn one(line: Option<usize>, repo: Option<&str>, field: &str, message: &str) -> Seen {
        (
            line,
            repo.map(str::to_string),
            field.to_string(),
            message.to_string(),
        )
    }

    #[test]
    fn the_gwg_sample_comes_out_in_hookmirrors_keys() {
        let text = include_str!("../../tests/fixtures/config/gwg-readme-sample.yaml");
        let Rewritten { raw, top, repos } = rewrite(parse_str(text, Format::Yaml).unwrap());
        assert!(top.problems.is_empty() && repos.iter().all(|n| n.problems.is_empty()));
        assert_eq!(raw.listen.as_deref(), Some("[localhost]:5555"));
        assert_eq!((raw.workers, raw.threads), (Some(5), None));
        assert!(raw.log.is_some() && raw.logging.is_none());
        assert_eq!(top.written_as("log"), "logging");
        assert_eq!(top.written_as("listen"), "listen");
        assert_eq!(
            (raw.port, raw.retry_count, raw.retry_delay),
            (None, None, None)
        );
        let r = &raw.repos.as_ref().unwrap()[0];
        assert_eq!(r.branch.as_deref(), Some("master"));
        assert_eq!(r.retry.as_ref().unwrap().attempts, Some(10));
        let auth = r.auth.as_ref().unwrap();
        assert_eq!(auth.ssh_key.as_deref(), Some("/path/to/private/key"));
        assert_eq!(
            auth.ssh_key_passphrase.as_deref(),
            Some("sshPassPhrase-123")
        );
        assert_eq!(repos[0].written_as("auth.ssh_key"), "sshPrivKey");
        assert_eq!(repos[0].written_as("on_success.touch"), "trigger");
        assert!(r.label.is_none() && r.label_type.is_none() && r.trigger.is_none());
        assert!(r.ssh_priv_key.is_none() && r.ssh_pass_phrase.is_none());
    }

    #[test]
    fn top_level_conflicts_name_gwg_key_and_line() {
        assert_eq!(
            problems(&format!("workers: 2\nthreads: 3\n{REPO}")),
            vec![one(
                Some(2),
                None,
                "threads",
                "`threads` (gwg's name) and `workers` are both set; keep `workers`"
            )]
        );
        assert_eq!(
            problems(&format!(
                "log: {{level: info}}\nlogging:\n  level: debug\n{REPO}"
            )),
            vec![one(
                Some(2),
                None,
                "logging",
                "`logging` (gwg's name) and `log` are both set; keep `log`"
            )]
        );
        assert_eq!(
            problems(&format!("listen: 127.0.0.1:9000\nport: 5555\n{REPO}")),
            vec![one(
                Some(2),
                None,
                "port",
                "`listen` already has a port; drop `port` or the port in `listen`"
            )]
        );
    }

    #[test]
    fn problems_in_gwg_keys_are_reported_under_gwg_names() {
        assert_eq!(
            problems(&format!("threads: 0\n{REPO}")),
            vec![one(
                Some(1),
                None,
                "threads",
                "must be between 1 and 1024, not 0"
            )]
        );
        assert_eq!(
            problems(&format!("logging:\n  format: xml\n  level: loud\n{REPO}")),
            vec![
                one(Some(2), None, "logging.format", "`xml` is not text or json"),
                one(
                    Some(3),
                    None,
                    "logging.level",
                    "`loud` is not one of error, warn, info, debug, trace"
                ),
            ]
        );
        let repo = "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n";
        assert_eq!(
            problems(&format!(
                "{repo}    sshPrivKey: ${{KEY}}\n    trigger: ${{T}}\n"
            )),
            vec![
                one(
                    Some(5),
                    Some("`d`"),
                    "sshPrivKey",
                    "environment variable `KEY` is not set"
                ),
                one(Some(5), Some("`d`"), "sshPrivKey", "is empty"),
                one(
                    Some(6),
                    Some("`d`"),
                    "trigger",
                    "environment variable `T` is not set"
                ),
                one(Some(6), Some("`d`"), "trigger", "is empty"),
            ]
        );
        assert_eq!(
            problems(&format!(
                "{repo}    sshPrivKey: /k\n    sshPassPhrase: ${{P}}\n    auth:\n      ssh_key_passphrase_file: /p\n"
            )),
            vec![one(
                Some(8),
                Some("`d`"),
                "auth.ssh_key_passphrase_file",
                "set `sshPassPhrase` or `auth.ssh_key_passphrase_file`, not both"
            ),]
        );
        // The check that a passphrase has a key names hookmirror's key, as it always did.
        assert_eq!(
            problems(&format!("{repo}    sshPassPhrase: p\n")),
            vec![one(
                None,
                Some("`d`"),
                "auth.ssh_key_passphrase",
                "is set but no `ssh_key` is"
            )]
        );
    }

    #[test]
    fn repo_conflicts_name_gwg_key_repo_and_line() {
        let repo = "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n";
        assert_eq!(
            problems(&format!("{repo}    branch: main\n    label: dev\n")),
            vec![one(
                Some(6),
                Some("`d`"),
                "label",
                "gwg's `label` and `branch`/`tag` are both set; keep one"
            )]
        );
        assert_eq!(
            problems(&format!("{repo}    tag: v1\n    labelType: branch\n")),
            vec![one(
                None,
                Some("`d`"),
                "label",
                "gwg's `label` and `branch`/`tag` are both set; keep one"
            )]
        );
        assert_eq!(
            problems(&format!("{repo}    labelType: tag\n")),
            vec![one(
                Some(5),
                Some("`d`"),
                "labelType",
                "is tag but `label` names no tag"
            )]
        );
        assert_eq!(
            problems(&format!(
                "{repo}    branch: main\n    tag: v1\n    label: dev\n"
            )),
            vec![one(
                Some(6),
                Some("`d`"),
                "tag",
                "set `branch` or `tag`, not both"
            )]
        );
        assert_eq!(
            problems(&format!(
                "{repo}    sshPrivKey: /a\n    auth:\n      ssh_key: /b\n"
            )),
            vec![one(
                Some(5),
                Some("`d`"),
                "sshPrivKey",
                "gwg's `sshPrivKey` and `auth.ssh_key` are both set; keep one"
            )]
        );
        assert_eq!(
            problems(&format!(
                "{repo}    sshPrivKey: /a\n    sshPassPhrase: x\n    auth:\n      ssh_key_passphrase: y\n      ssh_key_passphrase_file: /z\n"
            )),
            vec![one(
                Some(6),
                Some("`d`"),
                "sshPassPhrase",
                "gwg's `sshPassPhrase` and `auth.ssh_key_passphrase` are both set; keep one"
            )]
        );
        assert_eq!(
            problems(&format!(
                "{repo}    trigger: ' '\n    on_success:\n      touch: /t\n"
            )),
            vec![one(
                Some(5),
                Some("`d`"),
                "trigger",
                "gwg's `trigger` and `on_success.touch` are both set; keep one"
            )]
        );
        // A conflict leaves the key unset, so a passphrase then lacks its key.
        assert_eq!(
            problems(&format!(
                "{repo}    sshPrivKey: /a\n    sshPassPhrase: x\n    auth:\n      ssh_key: /b\n"
            )),
            vec![
                one(
                    None,
                    Some("`d`"),
                    "auth.ssh_key_passphrase",
                    "is set but no `ssh_key` is"
                ),
                one(
                    Some(5),
                    Some("`d`"),
                    "sshPrivKey",
                    "gwg's `sshPrivKey` and `auth.ssh_key` are both set; keep one"
                ),
            ]
        );
    }

    #[test]
    fn a_gwg_key_in_defaults_meets_the_repos_own_key() {
        let text = "defaults:\n  trigger: /t\nrepos:\n  - url: /o.git\n    directory: /d\n    secret: s\n    on_success:\n      touch: /u\n";
        assert_eq!(
            problems(text),
            vec![one(
                None,
                Some("`d`"),
                "trigger",
                "gwg's `trigger` and `on_success.touch` are both set; keep one"
            )]
        );
        let text = "defaults:\n  branch: main\nrepos:\n  - url: /o.git\n    directory: /d\n    secret: s\n    label: dev\n";
        assert_eq!(
            problems(text),
            vec![one(
                Some(7),
                Some("`d`"),
                "label",
                "gwg's `label` and `branch`/`tag` are both set; keep one"
            )]
        );
        let text = "defaults:\n  label: v1\n  labelType: tag\n  sshPrivKey: k\n  sshPassPhrase: p\nrepos:\n  - url: /o.git\n    directory: /d\n    secret: s\n";
        let c = check(text).unwrap();
        let r = &c.repos[0];
        assert_eq!(r.target, Target::Tag("v1".into()));
        assert_eq!(
            r.auth.ssh_key.as_deref(),
            Some(std::path::Path::new("/base/k"))
        );
        assert_eq!(
            r.auth.ssh_key_passphrase.as_ref().unwrap().value.expose(),
            "p"
        );
    }

    #[test]
    fn blank_gwg_values_mean_unset() {
        let repo = "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n";
        let c = check(&format!(
            "{repo}    sshPrivKey: ''\n    sshPassPhrase: ''\n    trigger: ' '\n"
        ))
        .unwrap();
        let r = &c.repos[0];
        assert_eq!(r.auth.ssh_key, None);
        assert_eq!(r.auth.ssh_key_passphrase, None);
        assert_eq!(r.on_success.touch, None);
        // An empty sshPassPhrase gives way; a blank sshPrivKey or trigger still conflicts.
        let c = check(&format!("{repo}    sshPassPhrase: ''\n    auth:\n      ssh_key: /k\n      ssh_key_passphrase: p\n")).unwrap();
        let r = &c.repos[0];
        assert_eq!(r.auth.ssh_key.as_deref(), Some(std::path::Path::new("/k")));
        assert_eq!(
            r.auth.ssh_key_passphrase.as_ref().unwrap().value.expose(),
            "p"
        );
        assert_eq!(
            problems(&format!(
                "{repo}    sshPrivKey: ''\n    auth:\n      ssh_key: /k\n"
            )),
            vec![one(
                Some(5),
                Some("`d`"),
                "sshPrivKey",
                "gwg's `sshPrivKey` and `auth.ssh_key` are both set; keep one"
            )]
        );
        let c = check(&format!("{repo}    label: v1\n    labelType: nonsense\n")).unwrap();
        assert_eq!(
            c.repos[0].target,
            Target::Branch("v1".into()),
            "unrecognised labelType: branch"
        );
        let c = check(&format!("{repo}    labelType: Branch\n")).unwrap();
        assert_eq!(
            c.repos[0].target,
            Target::Branch("master".into()),
            "gwg's default"
        );
    }

    #[test]
    fn gwg_listen_is_a_host_and_port_the_port() {
        let listen = |head: &str| check(&format!("{head}{REPO}")).map(|c| c.listen);
        let at = |host: &str, port| {
            Ok(ListenAddr {
                host: host.into(),
                port,
            })
        };
        assert_eq!(listen("port: 5555\n"), at("0.0.0.0", 5555));
        assert_eq!(listen("listen: ''\nport: 5555\n"), at("0.0.0.0", 5555));
        assert_eq!(
            listen("listen: ' h.example '\nport: 5555\n"),
            at("h.example", 5555)
        );
        assert_eq!(listen("listen: '::1'\nport: 5555\n"), at("::1", 5555));
        assert_eq!(listen("listen: '[::1]'\nport: 5555\n"), at("::1", 5555));
        assert_eq!(listen("listen: localhost\n"), at("localhost", 8080));
        let default = "listen: ${HOST:-localhost}\nport: 5555\n";
        assert_eq!(listen(default), at("localhost", 5555));
        assert_eq!(
            problems(&format!("listen: ${{H:-h}}:1\nport: 5555\n{REPO}")),
            vec![one(
                Some(2),
                None,
                "port",
                "`listen` already has a port; drop `port` or the port in `listen`"
            )]
        );
        let env = |k: &str| (k == "HOST").then(|| "h.example".to_string());
        let c = check_with(&format!("listen: ${{HOST}}\nport: 5555\n{REPO}"), &env).unwrap();
        assert_eq!(
            c.listen,
            ListenAddr {
                host: "h.example".into(),
                port: 5555
            }
        );
    }

    #[test]
    fn colons_inside_variables_do_not_count() {
        assert_eq!(colons("h:1"), vec![1]);
        assert_eq!(colons("${H:-a:b}"), Vec::<usize>::new());
        assert_eq!(colons("${H:-a}:1"), vec![7]);
        assert_eq!(colons("$${H:1"), vec![4]);
        assert_eq!(colons("${H:1"), Vec::<usize>::new());
        assert_eq!(colons("::1"), vec![0, 1]);
    }

    #[test]
    fn gwg_retry_keys_become_defaults() {
        let c = check(&format!("retry_count: 0\nretry_delay: 7\n{REPO}")).unwrap();
        assert_eq!(c.repos[0].retry.attempts, 1, "gwg counts attempts in all");
        assert_eq!(
            c.repos[0].retry.initial_delay,
            std::time::Duration::from_secs(7)
        );
        let c = check(&format!(
            "retry_count: 9\ndefaults:\n  retry:\n    attempts: 2\n{REPO}"
        ))
        .unwrap();
        assert_eq!(c.repos[0].retry.attempts, 2, "hookmirror's key wins");
    }
}
