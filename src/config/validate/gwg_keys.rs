//! gwg's keys through validation: problems named under the key the file has, with line and repo.

use super::{Context, validate};
use crate::config::{Config, Format, ListenAddr, Problem, Target, parse_str};

const REPO: &str = "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n";

fn check_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
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
    let c = check(&format!(
        "{repo}    sshPassPhrase: ''\n    auth:\n      ssh_key: /k\n      ssh_key_passphrase: p\n"
    ))
    .unwrap();
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
