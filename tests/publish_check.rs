//! `pre_publish:` against the real `hookmirror serve`, in place and atomic: the command runs in
//! the new commit's tree before it is published (in place: a temporary tree, the checkout still
//! at the old commit); a failing check and a check past its timeout leave the published tree
//! where it was, with state `rejected` and the output's last lines in the API, and are not
//! retried; a passing check publishes.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use serde_json::Value;
use support::daemon::*;
use support::forge::github_main_push;
use support::{git, read_file_lossy};

const SECRET: &str = "check-secret-0b3e";

/// The check: fails when the tree has `BROKEN` (printing to both streams), hangs when it has
/// `SLOW`; logs what it saw: the new commit, its working directory, the published VERSION.
fn check(log: &Path, dir: &Path) -> String {
    let script = format!(
        "echo \"$HOOKMIRROR_NEW $PWD $HOOKMIRROR_DIR $(cat VERSION) $(cat {}/VERSION)\" >> {}; \
         if [ -e SLOW ]; then sleep 30; fi; \
         if [ -e BROKEN ]; then echo 'checking 3 files'; echo 'lint: 3 errors in BROKEN' >&2; exit 3; fi",
        dir.display(),
        log.display()
    );
    let script = script.replace('\'', "''");
    format!("    pre_publish:\n      command: ['sh', '-c', '{script}']\n      timeout: 2s\n")
}

fn push(server: &Daemon, remote: &Remote, files: &[(&str, Option<&str>)]) -> (String, Value) {
    let w = &remote.origin.work;
    for (name, content) in files {
        match content {
            Some(c) => std::fs::write(w.join(name), c).unwrap(),
            None => {
                let _ = std::fs::remove_file(w.join(name));
            }
        }
    }
    git(w, &["add", "-A"]);
    git(w, &["commit", "-q", "--allow-empty", "-m", "change"]);
    git(w, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let new = git(w, &["rev-parse", "HEAD"]);
    let syncs = server.status("site")["syncs"].as_u64().unwrap();
    let (_, d) = github_main_push(SECRET, &remote.forms(), &new, &new);
    assert_eq!(server.deliver("/hooks/site", &d).status, 202);
    (new, server.wait_syncs("site", syncs + 1))
}

#[track_caller]
fn assert_rejected(s: &Value, commit: &str, what: &[&str], published: &str) {
    assert_eq!(s["last_error"]["kind"], "rejected", "{s:#}");
    let msg = s["last_error"]["message"].as_str().unwrap();
    eprintln!("rejected: {msg}");
    assert!(msg.contains(commit), "{msg}");
    for w in what {
        assert!(msg.contains(w), "{w:?} in {msg}");
    }
    assert_eq!(s["commit"], published, "{s:#}");
    assert_eq!(s["state"], "idle", "not retried: {s:#}");
}

#[test]
fn a_failing_or_hanging_check_keeps_the_published_tree() {
    for publish in ["in_place", "atomic"] {
        let remote = Remote::new();
        let w = &remote.origin.work;
        std::fs::write(w.join("VERSION"), "v1\n").unwrap();
        git(w, &["add", "VERSION"]);
        git(w, &["commit", "-q", "-m", "v1"]);
        git(w, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
        let work = scratch("check");
        let dir = work.path().join("site");
        let log = work.path().join("check.log");
        let keys = format!(
            "    branch: main\n    provider: github\n    secret: {SECRET}\n    publish: {publish}\n{}",
            check(&log, &dir)
        );
        let server = Daemon::builder()
            .top("log: {level: info, output: stdout}\n")
            .repo(repo_yaml("site", &remote.url(), &dir, &keys))
            .start();
        let v1 = remote.head();
        server.wait_head("site", &dir, &v1);

        let (broken, s) = push(
            &server,
            &remote,
            &[("VERSION", Some("v2\n")), ("BROKEN", Some("x"))],
        );
        let what = [
            "exit code 3",
            "checking 3 files",
            "lint: 3 errors in BROKEN",
        ];
        assert_rejected(&s, &broken, &what, &v1);
        assert_eq!(head_of(&dir).as_deref(), Some(v1.as_str()), "{publish}");
        assert_eq!(
            std::fs::read_to_string(dir.join("VERSION")).unwrap(),
            "v1\n"
        );
        // It ran in the new commit's tree, while the published one was still the old.
        let ran = read_file_lossy(&log);
        let line = ran.lines().last().unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[0], broken, "{line}");
        assert_eq!(
            words[1], words[2],
            "HOOKMIRROR_DIR is the tree it runs in: {line}"
        );
        assert_eq!(&words[3..], ["v2", "v1"], "{line}");
        if publish == "atomic" {
            assert!(
                words[1].ends_with(&format!("site.hookmirror/trees/{broken}")),
                "{line}"
            );
            let trees = std::fs::read_dir(format!("{}.hookmirror/trees", dir.display())).unwrap();
            assert_eq!(trees.count(), 1, "the rejected tree is removed");
        } else {
            assert!(
                words[1].ends_with("site/.git/hookmirror-pre-publish"),
                "{line}"
            );
            assert!(
                !dir.join(".git/hookmirror-pre-publish").exists(),
                "temporary tree removed"
            );
        }

        let (slow, s) = push(&server, &remote, &[("BROKEN", None), ("SLOW", Some("x"))]);
        assert_rejected(&s, &slow, &["did not finish within 2s"], &v1);

        let (good, s) = push(
            &server,
            &remote,
            &[("SLOW", None), ("VERSION", Some("v3\n"))],
        );
        assert!(s["last_error"].is_null(), "{s:#}");
        server.wait_head("site", &dir, &good);
        assert_eq!(
            std::fs::read_to_string(dir.join("VERSION")).unwrap(),
            "v3\n"
        );
        assert_eq!(s["failures"], 2, "{s:#}");
        server.assert_clean_logs(&[SECRET]);
    }
}

#[test]
fn a_check_added_by_reload_gates_the_next_push() {
    let remote = Remote::new();
    let work = scratch("check-reload");
    let dir = work.path().join("site");
    let log = work.path().join("check.log");
    std::fs::write(remote.origin.work.join("VERSION"), "v1\n").unwrap();
    let config = |extra: &str| {
        let keys = format!("    branch: main\n    provider: github\n    secret: {SECRET}\n{extra}");
        config_text("", &[repo_yaml("site", &remote.url(), &dir, &keys)])
    };
    let server = Daemon::builder().config(&config("")).start();
    let first = remote.head();
    server.wait_head("site", &dir, &first);
    server.replace_config(&config(&check(&log, &dir)));
    server.wait_reloads(1);
    let (broken, s) = push(
        &server,
        &remote,
        &[("VERSION", Some("v2\n")), ("BROKEN", Some("x"))],
    );
    assert_rejected(&s, &broken, &["exit code 3"], &first);
}

/// A command's timeout holds whatever the command leaves behind: a `pre_publish` check that
/// exits at once but leaves a child holding its output (`sleep 30 &`), and an `on_success`
/// command whose child left its process group (`setsid sleep 25`) while it hangs, each with a
/// 3 s timeout: the sync is over in about 3 + 3 s (it took 30 + 25 s when the output was read
/// to its end), the check passed (its exit code stands), the command timed out.
#[test]
fn timeouts_hold_against_children_that_keep_the_pipes_open() {
    let remote = Remote::new();
    let work = scratch("check-children");
    let dir = work.path().join("site");
    let keys = "    branch: main\n    provider: github\n    secret: check-secret-0b3e\n    \
         pre_publish:\n      command: ['sh', '-c', 'sleep 30 & echo started; exit 0']\n      timeout: 3s\n    \
         on_success:\n      command: ['sh', '-c', 'setsid sleep 25 & sleep 100']\n      timeout: 3s\n";
    let t0 = std::time::Instant::now();
    let server = Daemon::builder()
        .top("log: {level: info, output: stdout}\n")
        .repo(repo_yaml("site", &remote.url(), &dir, keys))
        .start();
    let mut s = Value::Null;
    let done = support::wait_until(std::time::Duration::from_secs(90), || {
        s = server.status("site");
        s["syncs"].as_u64() >= Some(1) && idle(&s)
    });
    let took = t0.elapsed();
    assert!(done, "{s:#}");
    eprintln!("first sync done after {took:?}");
    assert!(took < std::time::Duration::from_secs(14), "took {took:?}");
    assert_eq!(head_of(&dir), Some(remote.head()), "the check passed");
    assert_eq!(s["last_error"]["kind"], "on_success", "{s:#}");
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("timed out"), "{msg}");
    let logs = server.logs();
    assert!(
        logs.contains("pre_publish check exited, but processes it started held its output"),
        "{logs}"
    );
}
