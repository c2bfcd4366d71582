//! Fault suite, two writers on one checkout: a one-shot `hookmirror sync` run while the daemon
//! syncs the same directory (started together, in either order). hookmirror's lock comes before
//! any cleanup, so neither removes a lock file the other holds (neither reports a removed lock,
//! and nothing fails with git's "failed to lock"); the daemon, finding the lock taken, waits
//! without a worker and syncs after; both end fine and the checkout is at the pushed commit.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::daemon::*;
use support::faults::{leftovers, rounds, write_tree_round};
use support::forge::github_main_push;
use support::git;

const SECRET: &str = "faults-lock-secret";

/// Whether some process holds a `flock` on `path` (from `/proc/locks`).
fn locked(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(ino) = std::fs::metadata(path).map(|m| m.ino()) else {
        return false;
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|l| {
        l.contains("FLOCK")
            && l.split_whitespace()
                .nth(5)
                .and_then(|id| id.rsplit(':').next())
                .is_some_and(|i| i == ino.to_string())
    })
}

#[test]
fn a_one_shot_sync_beside_the_daemon_removes_none_of_its_locks() {
    let remote = Remote::new();
    write_tree_round(&remote.origin, 1000, 1024, 0);
    let work = scratch("lock");
    let dir = work.path().join("site");
    let repo = repo_yaml(
        "site",
        &remote.url(),
        &dir,
        &format!("    branch: main\n    provider: github\n    secret: {SECRET}\n"),
    );
    let server = Daemon::builder()
        .top("log: {level: debug, output: stdout}\n")
        .repo(repo.clone())
        .start();
    let mut tip = remote.head();
    server.wait_head("site", &dir, &tip);
    let home = scratch("home");
    let config = home.path().join("hookmirror.yaml");
    std::fs::write(
        &config,
        with_listen(support::free_port(), &config_text("", &[repo])),
    )
    .unwrap();

    let rounds = rounds(10);
    for round in 1..=rounds {
        let before = tip.clone();
        tip = write_tree_round(&remote.origin, 1000, 1024, round);
        let (_, d) = github_main_push(SECRET, &remote.forms(), &before, &tip);
        let cli = || {
            hookmirror_command(home.path())
                .args(["sync", "--config"])
                .arg(&config)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        // Either goes first.
        let child = if round % 2 == 0 {
            let c = cli();
            let lock = dir.join(".git/hookmirror.lock");
            assert!(
                support::wait_until(WAIT, || locked(&lock)),
                "round {round}: the one-shot sync never took its lock"
            );
            assert_eq!(server.deliver("/hooks/site", &d).status, 202);
            c
        } else {
            assert_eq!(server.deliver("/hooks/site", &d).status, 202);
            std::thread::sleep(Duration::from_millis(20));
            cli()
        };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("site\tok\t"),
            "round {round}: the one-shot sync failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !stdout.contains("removed stale"),
            "round {round}: the one-shot sync removed a lock: {stdout}"
        );
        let s = server.wait_for("site", "the pushed commit", |s| {
            s["commit"] == tip.as_str() && idle(s)
        });
        assert_eq!(s["failures"], 0, "round {round}: {s:#}\n{}", server.logs());
        assert_eq!(head_of(&dir).as_deref(), Some(tip.as_str()));
    }
    let logs = server.logs();
    let waits = logs.matches("checkout locked by another process").count();
    eprintln!("{rounds} rounds; the daemon found the checkout locked {waits} times");
    assert!(waits > 0, "the daemon never met the one-shot sync's lock");
    assert!(
        !logs.contains("lock_removed") && !logs.contains("failed to lock"),
        "the daemon removed a lock or found one taken by git:\n{logs}"
    );
    assert_eq!(
        git(&dir, &["status", "--porcelain", "--untracked-files=all"]),
        ""
    );
    assert!(leftovers(&dir.join(".git")).is_empty());
    server.assert_clean_logs(&[SECRET]);
}
