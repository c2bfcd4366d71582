//! Fault suite, two writers on one checkout: a one-shot `hookmirror sync` run while the daemon
//! syncs the same directory (the one-shot first, holding its lock when the webhook arrives; or
//! the daemon first, in the middle of writing the tree). hookmirror's lock comes before
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
/// Files in the tree: writing them takes long enough to start the other sync meanwhile.
const FILES: usize = 2000;

/// The `flock`s on `path` from `/proc/locks`: how many are held and how many are waited for.
fn flocks(path: &std::path::Path) -> (usize, usize) {
    use std::os::unix::fs::MetadataExt;
    let Ok(ino) = std::fs::metadata(path).map(|m| m.ino()) else {
        return (0, 0);
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let (mut held, mut waiting) = (0, 0);
    for l in locks.lines().filter(|l| l.contains("FLOCK")) {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let waiter = fields.get(1) == Some(&"->");
        let id = fields
            .get(if waiter { 6 } else { 5 })
            .copied()
            .unwrap_or("");
        if id.rsplit(':').next() == Some(ino.to_string().as_str()) {
            if waiter {
                waiting += 1;
            } else {
                held += 1;
            }
        }
    }
    (held, waiting)
}

/// Whether some process holds a `flock` on `path`.
fn locked(path: &std::path::Path) -> bool {
    flocks(path).0 > 0
}

#[test]
fn nothing_is_cleaned_up_before_the_checkout_lock_is_ours() {
    let m = Mirror::on(Remote::new())
        .keys(&format!(
            "    branch: main\n    provider: github\n    secret: {SECRET}\n"
        ))
        .start();
    let (server, dir) = (&m.daemon, &m.dir);
    let git_dir = dir.join(".git");
    // Another hookmirror process syncs this checkout: it holds hookmirror's lock, and its git
    // is writing the index.
    let lock = git_dir.join("hookmirror.lock");
    let other = std::fs::File::options().write(true).open(&lock).unwrap();
    other.lock().unwrap();
    let index_lock = git_dir.join("index.lock");
    std::fs::write(&index_lock, "").unwrap();

    // The daemon, asked to sync, waits (without a worker) and touches nothing.
    let before = m.remote.head();
    let new = m.remote.advance("while locked");
    let (_, d) = github_main_push(SECRET, &m.remote.forms(), &before, &new);
    assert_eq!(server.deliver("/hooks/site", &d).status, 202);
    let s = server.wait_for("site", "the daemon waiting for the lock", |s| {
        s["state"] == "backoff" && s["retry"]["error"]["kind"] == "busy"
    });
    assert!(
        index_lock.exists(),
        "the daemon removed a lock in use: {s:#}"
    );

    // A one-shot sync waits for the lock before it removes anything.
    let home = scratch("home");
    let config = home.path().join("hookmirror.yaml");
    let repo = repo_yaml(
        "site",
        &m.remote.url(),
        dir,
        &format!("    branch: main\n    secret: {SECRET}\n"),
    );
    std::fs::write(
        &config,
        with_listen(support::free_port(), &config_text("", &[repo])),
    )
    .unwrap();
    let cli = hookmirror_command(home.path())
        .args(["sync", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        support::wait_until(WAIT, || flocks(&lock).1 >= 1),
        "the one-shot sync never waited for the lock"
    );
    assert!(
        index_lock.exists(),
        "the one-shot sync removed a lock in use"
    );
    assert_eq!(server.status("site")["state"], "backoff");

    // The other process is gone (its index.lock with it): both syncs go ahead.
    drop(other);
    let out = cli.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("site\tok\t"),
        "{stdout}"
    );
    let s = server.wait_for("site", "the pushed commit", |s| {
        s["commit"] == new.as_str() && idle(s)
    });
    assert_eq!(s["failures"], 0, "{s:#}");
    assert!(!index_lock.exists());
    assert_eq!(head_of(dir).as_deref(), Some(new.as_str()));
}

#[test]
fn a_one_shot_sync_beside_the_daemon_removes_none_of_its_locks() {
    let remote = Remote::new();
    write_tree_round(&remote.origin, FILES, 1024, 0);
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
        tip = write_tree_round(&remote.origin, FILES, 1024, round);
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
            // The daemon first: the one-shot sync starts while the daemon's checkout holds git's
            // index.lock (when the sync is too quick to catch there, a little later).
            assert_eq!(server.deliver("/hooks/site", &d).status, 202);
            let index_lock = dir.join(".git/index.lock");
            support::wait_until(Duration::from_secs(10), || index_lock.exists());
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
