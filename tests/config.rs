//! Config: every format, gwg's sample, each validation error, `${VAR}` and `*_file` resolution.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookmirror::config::{
    self, Context, Format, ListenAddr, LogFormat, LogOutput, Problem, Target, parse_str, validate,
};
use hookmirror::webhook::Provider;

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Parses and validates `text` with no environment, relative paths against /base.
fn validate_text(text: &str, format: Format) -> Result<config::Config, Vec<Problem>> {
    let raw = parse_str(text, format)?;
    let ctx = Context {
        text: Some(text),
        ..Context::bare(format, "/base")
    };
    validate(raw, &ctx)
}

fn problems(text: &str) -> Vec<Problem> {
    validate_text(text, Format::Yaml).expect_err("config should be refused")
}

fn assert_problem(problems: &[Problem], field: &str, needle: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.field.as_deref() == Some(field) && p.message.contains(needle)),
        "no problem on `{field}` containing {needle:?} in {problems:#?}"
    );
}

const MINIMAL: &str = "repos:\n  - url: /srv/origin.git\n    directory: /srv/site\n    secret: s\n";

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = validate_text(MINIMAL, Format::Yaml).unwrap();
    assert_eq!(
        c.listen,
        ListenAddr {
            host: "127.0.0.1".into(),
            port: 8080
        }
    );
    assert_eq!(c.workers, 4);
    assert!(c.initialise);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.output, LogOutput::Stdout);
    let r = &c.repos[0];
    assert_eq!(r.name, "site", "name defaults to the directory's basename");
    assert_eq!(r.path, "/hooks/site");
    assert_eq!(r.target, Target::DefaultBranch);
    assert_eq!(r.remote, "origin");
    assert!(!r.clean && !r.submodules && r.depth.is_none() && r.provider.is_none());
    assert_eq!(r.retry.attempts, 3);
    assert_eq!(r.secrets[0].value.expose(), "s");
}

#[test]
fn the_three_formats_mean_the_same() {
    let yaml = "listen: 0.0.0.0:9000\nworkers: 2\nrepos:\n  - name: a\n    url: https://h.example/a.git\n    directory: /srv/a\n    tag: v1\n    secret: s\n    schedule: \"0 22 * * 1-5\"\n    retry: {attempts: 5, initial_delay: 2s, max_delay: 1m}\n";
    let toml = "listen = \"0.0.0.0:9000\"\nworkers = 2\n[[repos]]\nname = \"a\"\nurl = \"https://h.example/a.git\"\ndirectory = \"/srv/a\"\ntag = \"v1\"\nsecret = \"s\"\nschedule = \"0 22 * * 1-5\"\n[repos.retry]\nattempts = 5\ninitial_delay = \"2s\"\nmax_delay = \"1m\"\n";
    let json = r#"{"listen": "0.0.0.0:9000", "workers": 2, "repos": [{"name": "a", "url": "https://h.example/a.git", "directory": "/srv/a", "tag": "v1", "secret": "s", "schedule": "0 22 * * 1-5", "retry": {"attempts": 5, "initial_delay": "2s", "max_delay": "1m"}}]}"#;
    let a = validate_text(yaml, Format::Yaml).unwrap();
    let b = validate_text(toml, Format::Toml).unwrap();
    let c = validate_text(json, Format::Json).unwrap();
    for x in [&b, &c] {
        assert_eq!(x.listen, a.listen);
        assert_eq!(x.workers, a.workers);
        assert_eq!(x.repos, a.repos);
    }
    let r = &a.repos[0];
    assert_eq!(r.target, Target::Tag("v1".into()));
    assert_eq!(r.retry.initial_delay, Duration::from_secs(2));
    assert_eq!(r.retry.max_delay, Duration::from_secs(60));
    assert_eq!(
        r.schedule.as_ref().unwrap().to_string(),
        "schedule 0 22 * * 1-5"
    );
}

#[test]
fn gwg_readme_sample_loads_unchanged_and_means_the_same() {
    let text = include_str!("fixtures/config/gwg-readme-sample.yaml");
    let c = validate_text(text, Format::Yaml).expect("gwg's sample must load unchanged");
    assert_eq!(
        c.listen,
        ListenAddr {
            host: "localhost".into(),
            port: 5555
        }
    );
    assert_eq!(c.workers, 5, "threads");
    assert!(c.initialise);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.timestamp, Some(true));
    assert_eq!(c.repos.len(), 2);
    let r1 = &c.repos[0];
    assert_eq!(r1.name, "repo-1", "named after the last segment of path");
    assert_eq!(r1.path, "/gwg/repo-1");
    assert_eq!(r1.url, "git@github.com:ns/repo-1.git");
    assert_eq!(r1.directory, PathBuf::from("/path/to/local/repo"));
    assert_eq!(r1.target, Target::Branch("master".into()));
    assert_eq!(r1.remote, "origin");
    assert_eq!(
        r1.on_success.touch.as_deref(),
        Some(Path::new("/path/to/trigger/file"))
    );
    assert_eq!(r1.secrets[0].value.expose(), "webhookPassword");
    assert_eq!(
        r1.auth.ssh_key.as_deref(),
        Some(Path::new("/path/to/private/key"))
    );
    assert_eq!(
        r1.auth.ssh_key_passphrase.as_ref().unwrap().value.expose(),
        "sshPassPhrase-123"
    );
    assert_eq!(r1.retry.attempts, 10, "retry_count");
    assert_eq!(
        r1.retry.initial_delay,
        Duration::from_secs(1),
        "retry_delay in seconds"
    );
    let r2 = &c.repos[1];
    assert_eq!(r2.name, "repo-2");
    assert_eq!(r2.target, Target::Branch("master".into()));
    assert_eq!(r2.secrets[0].value.expose(), "superSecret-repo-2");
    assert_eq!(r2.retry.attempts, 10);
}

#[test]
fn gwg_label_type_tag_and_listen_without_host() {
    let c = validate_text(
        "port: 5555\nrepos:\n  - url: /o.git\n    path: /gwg/r\n    directory: /d\n    label: v2\n    labelType: tag\n    secret: s\n",
        Format::Yaml,
    )
    .unwrap();
    assert_eq!(
        c.listen,
        ListenAddr {
            host: "0.0.0.0".into(),
            port: 5555
        }
    );
    assert_eq!(c.repos[0].target, Target::Tag("v2".into()));
}

#[test]
fn every_shipped_config_loads_from_disk() {
    let mut seen = 0;
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        if Format::from_path(&path).is_none() {
            continue;
        }
        let c = config::load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!c.repos.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 5,
        "expected demo, example.{{yaml,toml,json}} and gwg-compatible, saw {seen}"
    );
}

#[test]
fn shipped_examples_mean_what_they_say() {
    let demo = config::load_file(&config_dir().join("demo.yaml")).unwrap();
    let repo = &demo.repos[0];
    assert_eq!(
        repo.url,
        env!("CARGO_MANIFEST_DIR"),
        "`..` is this repository, resolved against config/"
    );
    assert_eq!(
        repo.directory,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo/hookmirror")
    );
    let gwg = config::load_file(&config_dir().join("gwg-compatible.yaml")).unwrap();
    assert_eq!(
        gwg.repos[0].auth.ssh_key.as_deref(),
        Some(config_dir().join("gwg-keys/repo-1").as_path())
    );
    let json = config::load_file(&config_dir().join("example.json")).unwrap();
    assert_eq!(json.repos[0].provider, Some(Provider::Github));
    let toml = config::load_file(&config_dir().join("example.toml")).unwrap();
    assert_eq!(toml.repos[1].secrets.len(), 2);
    assert_eq!(toml.repos[0].retry.attempts, 5, "inherited from defaults");
}

#[test]
fn unknown_keys_are_all_reported_with_lines() {
    let p = problems(
        "listen: 127.0.0.1:1\nrepos:\n  - url: /o.git\n    directory: /d\n    secret: s\n    brnach: main\n    on_succes:\n      touch: /t\n",
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].line, Some(6));
    assert!(p[0].message.contains("unknown key `brnach`"));
    assert_eq!(p[1].line, Some(7));
}

#[test]
fn branch_and_tag_together_are_refused() {
    let p = problems(
        "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n    branch: main\n    tag: v1\n",
    );
    assert_problem(&p, "tag", "not both");
    assert_eq!(p[0].line, Some(6));
    assert_eq!(p[0].repo.as_deref(), Some("`d`"));
}

#[test]
fn duplicates_are_refused() {
    let p = problems(
        "repos:\n  - {name: a, url: /o.git, directory: /d, secret: s}\n  - {name: a, url: /o.git, directory: /d, secret: s}\n  - {name: b, url: /o.git, directory: /e, path: /hooks/a, secret: s}\n",
    );
    assert_problem(&p, "name", "also used by repo `a`");
    assert_problem(&p, "directory", "also used by repo `a`");
    assert_problem(&p, "path", "also used by repo `a`");
}

#[test]
fn nested_directories_are_refused() {
    let p = problems(
        "repos:\n  - {name: a, url: /o.git, directory: /srv/a, secret: s}\n  - {name: b, url: /o.git, directory: /srv/a/b, secret: s}\n",
    );
    assert_problem(&p, "directory", "inside repo `a`");
}

#[test]
fn invalid_refnames_are_refused() {
    for bad in ["'main..x'", "'-x'", "'x.lock'", "'a b'", "refs/heads/main"] {
        let p = problems(&format!(
            "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n    branch: {bad}\n"
        ));
        assert!(
            p.iter().any(|p| p.field.as_deref() == Some("branch")),
            "{bad}: {p:#?}"
        );
    }
}

#[test]
fn cron_expressions_are_validated_with_crontab_syntax() {
    for good in [
        "* * * * *",
        "45 23 * * 6",
        "0 9 * * 1",
        "5 4 * * SUN",
        "0 22 * * 1-5",
        "*/10 * * * * *",
        "@hourly",
        "@daily",
        "@weekly",
    ] {
        let c = validate_text(
            &format!(
                "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n    schedule: \"{good}\"\n"
            ),
            Format::Yaml,
        );
        assert!(c.is_ok(), "{good}: {:?}", c.err());
    }
    for bad in [
        "* * * *",
        "61 * * * *",
        "* * * * FOO",
        "every day",
        "0 0 * * * * * *",
    ] {
        let p = problems(&format!(
            "repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n    schedule: \"{bad}\"\n"
        ));
        assert_problem(&p, "schedule", "is not a cron expression");
    }
}

#[test]
fn a_repo_without_a_secret_needs_the_explicit_opt_out() {
    let p = problems("repos:\n  - url: /o.git\n    directory: /d\n");
    assert_problem(&p, "secret", "insecure_no_secret");
    assert!(
        validate_text(
            "repos:\n  - url: /o.git\n    directory: /d\n    insecure_no_secret: true\n",
            Format::Yaml
        )
        .is_ok()
    );
}

#[test]
fn every_problem_is_collected_at_once() {
    let p = problems(
        "workers: 0\nlisten: nonsense:port\nrepos:\n  - url: 'ext::sh -c x'\n    directory: /d\n    branch: a..b\n    provider: sourcehut\n    depth: -1\n  - url: /o.git\n    secret: s\n",
    );
    for (field, needle) in [
        ("workers", "between 1 and 1024"),
        ("listen", "not address:port"),
        ("url", "not a git URL"),
        ("branch", "not a valid git ref name"),
        ("provider", "sourcehut"),
        ("depth", "positive"),
        ("secret", "no webhook secret"),
        ("directory", "required"),
    ] {
        assert_problem(&p, field, needle);
    }
}

#[test]
fn env_variables_expand_and_missing_ones_are_named() {
    let text = "listen: ${HOST}:${PORT:-9999}\nrepos:\n  - url: https://h.example/${REPO}.git\n    directory: /d\n    secret: ${HOOK_SECRET}\n    auth:\n      token: ${MISSING}\n";
    let env = |k: &str| match k {
        "HOST" => Some("0.0.0.0".to_string()),
        "REPO" => Some("site".to_string()),
        "HOOK_SECRET" => Some("from-env".to_string()),
        _ => None,
    };
    let raw = parse_str(text, Format::Yaml).unwrap();
    let ctx = Context {
        text: Some(text),
        env: &env,
        ..Context::bare(Format::Yaml, "/base")
    };
    let p = validate(raw, &ctx).unwrap_err();
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_problem(&p, "auth.token", "`MISSING` is not set");
    assert_eq!(p[0].line, Some(7));

    let text = text.replace("${MISSING}", "$${literal}");
    let raw = parse_str(&text, Format::Yaml).unwrap();
    let ctx = Context {
        text: Some(&text),
        env: &env,
        ..Context::bare(Format::Yaml, "/base")
    };
    let c = validate(raw, &ctx).unwrap();
    assert_eq!(
        c.listen,
        ListenAddr {
            host: "0.0.0.0".into(),
            port: 9999
        }
    );
    assert_eq!(c.repos[0].url, "https://h.example/site.git");
    assert_eq!(c.repos[0].secrets[0].value.expose(), "from-env");
    assert_eq!(
        c.repos[0].auth.token.as_ref().unwrap().value.expose(),
        "${literal}"
    );
}

#[test]
fn file_paths_resolve_against_credentials_directory_or_the_config_folder() {
    let text = "repos:\n  - url: ../origin.git\n    directory: site\n    secret_file: hook.secret\n    auth:\n      token_file: /abs/token\n      known_hosts: kh\n    on_success:\n      touch: ./t\n";
    let raw = parse_str(text, Format::Yaml).unwrap();
    let mut ctx = Context::bare(Format::Yaml, "/etc/hookmirror");
    let c = validate(raw, &ctx).unwrap();
    let r = &c.repos[0];
    assert_eq!(r.url, "/etc/origin.git");
    assert_eq!(r.directory, PathBuf::from("/etc/hookmirror/site"));
    assert_eq!(
        r.secrets[0].file.as_deref(),
        Some(Path::new("/etc/hookmirror/hook.secret"))
    );
    assert_eq!(
        r.auth.token.as_ref().unwrap().file.as_deref(),
        Some(Path::new("/abs/token"))
    );
    assert_eq!(
        r.auth.known_hosts.as_deref(),
        Some(Path::new("/etc/hookmirror/kh"))
    );
    assert_eq!(
        r.on_success.touch.as_deref(),
        Some(Path::new("/etc/hookmirror/t"))
    );

    ctx.credentials_dir = Some(PathBuf::from("/run/credentials/hookmirror.service"));
    let c = validate(parse_str(text, Format::Yaml).unwrap(), &ctx).unwrap();
    let r = &c.repos[0];
    assert_eq!(
        r.secrets[0].file.as_deref(),
        Some(Path::new("/run/credentials/hookmirror.service/hook.secret"))
    );
    assert_eq!(
        r.directory,
        PathBuf::from("/etc/hookmirror/site"),
        "only secret files move"
    );
}

#[test]
fn load_reads_secret_files_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("not-a-key.pub"), "ssh-ed25519 AAAA x\n").unwrap();
    let cfg = dir.path().join("hookmirror.yaml");
    std::fs::write(
        &cfg,
        "repos:\n  - name: a\n    url: /o.git\n    directory: a\n    secret_file: hook.secret\n  - name: b\n    url: /o.git\n    directory: b\n    secret_file: missing.secret\n    auth:\n      ssh_key: not-a-key.pub\n",
    )
    .unwrap();
    let err = config::load_file(&cfg).unwrap_err();
    let p = err.problems();
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_problem(p, "secret_file", "missing.secret");
    assert_problem(p, "auth.ssh_key", "not a private key");
    assert!(p.iter().all(|p| p.file.as_deref() == Some(cfg.as_path())));

    std::fs::write(
        &cfg,
        "repos:\n  - name: a\n    url: /o.git\n    directory: a\n    secret_file: hook.secret\n",
    )
    .unwrap();
    let c = config::load_file(&cfg).unwrap();
    assert_eq!(
        c.repos[0].secrets[0].value.expose(),
        "s3cret",
        "trailing newline trimmed"
    );
}

#[test]
fn problems_display_file_line_repo_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[[repos]]\nname = \"x\"\nurl = \"/o.git\"\ndirectory = \"/d\"\nsecret = \"s\"\nbranch = \"a\"\ntag = \"b\"\n").unwrap();
    let err = config::load_file(&cfg).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(
            "{}:7: repo `x`: `tag`: set `branch` or `tag`, not both",
            cfg.display()
        )),
        "{shown}"
    );
}
