//! One change, synced over each transport: hookmirror's engine against the git CLI.
//!
//!     cargo bench --bench transports [-- ITERATIONS]      (default 15)
//!
//! Complements `bench/run.sh`, whose latency part runs over `git daemon` only. Here the same
//! origin (301 commits of history, 50 files in 10 folders) is served over `file://`, `git://`
//! (`git daemon`), smart HTTP (`git http-backend` behind basic auth, the test suite's server)
//! and SSH (a private `sshd`, ed25519 key), all on 127.0.0.1. Per iteration one new commit is
//! pushed to the origin, then
//! - hookmirror: `sync_with_retry` of its checkout, in process — how the daemon's workers run
//!   it, so no process start-up is counted;
//! - git CLI: `git fetch -q origin main` and `git reset -q --hard FETCH_HEAD` as subprocesses
//!   in a separate clone (no user/system config; `GIT_SSH_COMMAND` for SSH).
//!
//! Medians over the iterations and the ratio hookmirror/CLI, printed as a table.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hookmirror::config::{Context, Format, Repo, parse_str, validate};
use hookmirror::sync::{SyncOptions, sync_with_retry};
use support::{GitDaemon, GitHttp, Origin, Sshd, git_command};

fn repo(url: &str, dir: &Path, extra: &str) -> Repo {
    let text = format!(
        "repos:\n  - name: t\n    url: '{url}'\n    directory: '{}'\n    insecure_no_secret: true\n    branch: main\n{extra}",
        dir.display()
    );
    let raw = parse_str(&text, Format::Yaml).expect("config");
    let mut c = validate(raw, &Context::bare(Format::Yaml, "/")).expect("valid config");
    c.repos.remove(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

struct Case {
    name: &'static str,
    url: String,
    extra: String,
    cli_url: String,
    cli_env: Vec<(&'static str, String)>,
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    hookmirror::sync::init_libgit2();
    eprintln!("[transports] setting up the origin and the servers");
    let origin = Origin::new();
    for i in 0..300 {
        origin.commit(&format!("d{}/f{}", i % 10, i % 50), &format!("{i}\n"));
    }
    let daemon = GitDaemon::start(origin.root.path());
    let http = GitHttp::start(origin.root.path(), "bench", "bench-token");
    let sshd = Sshd::start();
    let key = sshd.unencrypted_copy(&sshd.ed25519_key);
    let cases = vec![
        Case {
            name: "file://",
            url: origin.file_url(),
            extra: String::new(),
            cli_url: origin.file_url(),
            cli_env: vec![],
        },
        Case {
            name: "git:// (git daemon)",
            url: daemon.url("origin.git"),
            extra: String::new(),
            cli_url: daemon.url("origin.git"),
            cli_env: vec![],
        },
        Case {
            name: "http:// (http-backend)",
            url: http.url("origin.git"),
            extra: "    auth:\n      username: bench\n      token: bench-token\n".into(),
            cli_url: http.url_with_credentials("origin.git", "bench", "bench-token"),
            cli_env: vec![],
        },
        Case {
            name: "ssh:// (sshd)",
            url: sshd.url(&origin.bare),
            extra: format!(
                "    auth:\n      ssh_key: '{}'\n      known_hosts: '{}'\n",
                key.display(),
                sshd.known_hosts.display()
            ),
            cli_url: sshd.url(&origin.bare),
            cli_env: vec![("GIT_SSH_COMMAND", sshd.ssh_command(&key, &sshd.known_hosts))],
        },
    ];
    println!(
        "one new commit synced, median of {iterations} (ms); hookmirror in process, git CLI as fetch + reset --hard"
    );
    println!(
        "    {:<24} {:>12} {:>12} {:>8}",
        "transport", "hookmirror", "git CLI", "ratio"
    );
    for case in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("hookmirror");
        let r = repo(&case.url, &dir, &case.extra);
        if let Err(e) = sync_with_retry(&r, &SyncOptions::default(), |_| true).result {
            panic!("{}: first sync failed: {e:?}", case.name);
        }
        let cli = tmp.path().join("cli");
        let run = |args: &[&str], cwd: &Path| {
            let mut c = git_command(cwd);
            c.args(args);
            for (k, v) in &case.cli_env {
                c.env(k, v);
            }
            let out = c.output().expect("git");
            assert!(
                out.status.success(),
                "{}: git {args:?}: {}",
                case.name,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(
            &["clone", "-q", &case.cli_url, cli.to_str().expect("utf-8")],
            tmp.path(),
        );
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for i in 0..iterations + 2 {
            let new = origin.commit("d0/f0", &format!("{} {i}\n", case.name));
            // Alternate who goes first.
            let mut order = [true, false];
            if i % 2 == 1 {
                order.reverse();
            }
            for hookmirror_turn in order {
                let t = Instant::now();
                if hookmirror_turn {
                    let synced = sync_with_retry(&r, &SyncOptions::default(), |_| true)
                        .result
                        .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
                    assert_eq!(synced.new, new, "{}", case.name);
                    if i >= 2 {
                        ours.push(ms(t));
                    }
                } else {
                    run(&["fetch", "-q", "origin", "main"], &cli);
                    run(&["reset", "-q", "--hard", "FETCH_HEAD"], &cli);
                    if i >= 2 {
                        theirs.push(ms(t));
                    }
                }
            }
            assert_eq!(
                Command::new("git")
                    .current_dir(&cli)
                    .args(["rev-parse", "HEAD"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_default(),
                new,
                "{}: the CLI clone is at the new commit",
                case.name
            );
        }
        let (h, c) = (median(ours), median(theirs));
        println!(
            "    {:<24} {:>12.1} {:>12.1} {:>8.2}",
            case.name,
            h,
            c,
            h / c
        );
    }
}
