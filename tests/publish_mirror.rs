//! `mode: mirror` against the real `hookmirror serve`: a bare repository with every branch and
//! tag of the remote, HEAD on its default branch; any push to the repository (a new tag, a
//! deleted branch, a branch no checkout would follow) syncs it, deleted refs are pruned, and
//! `on_success` runs when a ref changed. `check` refuses a checkout's keys on a mirror.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use serde_json::Value;
use support::daemon::*;
use support::forge::{ZEROS, bytes, github, github_push, new_id};
use support::{git, read_file_lossy};

const SECRET: &str = "mirror-secret-5d21";

/// `refs/heads/*` and `refs/tags/*` of the repository at `git_dir`, as `name id` lines.
fn refs(git_dir: &Path) -> String {
    git(
        git_dir,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
        ],
    )
}

/// A GitHub push of `git_ref` from `before` to `after`; the status after the sync it caused.
fn push(server: &Daemon, remote: &Remote, git_ref: &str, before: &str, after: &str) -> Value {
    let syncs = server.status("backup")["syncs"].as_u64().unwrap();
    let body = bytes(&github_push(&remote.forms(), git_ref, before, after));
    let r = server.deliver("/hooks/backup", &github(SECRET, "push", &new_id(), body));
    assert_eq!(r.status, 202, "{git_ref}: {}", r.text);
    let s = server.wait_syncs("backup", syncs + 1);
    assert!(s["last_error"].is_null(), "{s:#}");
    s
}

#[test]
fn a_mirror_follows_every_branch_and_tag_and_prunes_deleted_ones() {
    let remote = Remote::new();
    let o = &remote.origin;
    o.commit_on("feature", "f.txt", "feature\n");
    o.checkout("main");
    o.tag("v1", true);
    let work = scratch("mirror");
    let dir = work.path().join("big.git");
    let log = work.path().join("on_success.log");
    let keys = format!(
        "    mode: mirror\n    provider: github\n    secret: {SECRET}\n    on_success:\n      command: ['sh', '-c', 'echo \"$HOOKMIRROR_NEW\" >> {}']\n",
        log.display()
    );
    let server = Daemon::builder()
        .top("log: {level: info, output: stdout}\n")
        .repo(repo_yaml("backup", &remote.url(), &dir, &keys))
        .start();
    let s = server.wait_syncs("backup", 1);
    assert!(s["last_error"].is_null(), "{s:#}");
    assert_eq!(refs(&dir), refs(&o.bare), "every branch and tag");
    assert_eq!(git(&dir, &["rev-parse", "--is-bare-repository"]), "true");
    assert_eq!(git(&dir, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(s["commit"], o.head("main"), "{s:#}");
    assert_eq!(
        read_file_lossy(&log).lines().count(),
        1,
        "on_success after the first sync"
    );

    // A new annotated tag.
    o.tag("v2", true);
    let tag = git(&o.bare, &["rev-parse", "refs/tags/v2"]);
    push(&server, &remote, "refs/tags/v2", ZEROS, &tag);
    assert_eq!(
        git(&dir, &["rev-parse", "refs/tags/v2"]),
        tag,
        "the tag object itself"
    );
    assert_eq!(refs(&dir), refs(&o.bare));
    assert_eq!(
        read_file_lossy(&log).lines().count(),
        2,
        "a new tag is a change"
    );

    // A push to a branch no checkout follows.
    let before = o.head("main");
    let other = o.commit_on("other", "o.txt", "other\n");
    push(&server, &remote, "refs/heads/other", ZEROS, &other);
    assert_eq!(refs(&dir), refs(&o.bare));

    // A deleted branch is pruned.
    let feature = o.head("feature");
    o.delete_branch("feature");
    push(&server, &remote, "refs/heads/feature", &feature, ZEROS);
    assert_eq!(refs(&dir), refs(&o.bare));
    assert!(!refs(&dir).contains("refs/heads/feature"), "{}", refs(&dir));

    // Nothing changed upstream: a sync changes nothing and on_success does not run.
    let runs = read_file_lossy(&log).lines().count();
    push(&server, &remote, "refs/heads/main", &before, &before);
    assert_eq!(read_file_lossy(&log).lines().count(), runs);
    server.assert_clean_logs(&[SECRET]);
}

#[test]
fn a_directory_that_is_not_a_bare_repository_is_refused() {
    let remote = Remote::new();
    let work = scratch("mirror-refuse");
    let dir = work.path().join("big.git");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine\n").unwrap();
    let keys = format!("    mode: mirror\n    provider: github\n    secret: {SECRET}\n");
    let server = Daemon::builder()
        .repo(repo_yaml("backup", &remote.url(), &dir, &keys))
        .start();
    let s = server.wait_for("backup", "a failed sync", |s| !s["last_error"].is_null());
    assert_eq!(s["last_error"]["kind"], "foreign_directory", "{s:#}");
    assert!(dir.join("notes.txt").exists(), "nothing deleted");
}

#[test]
fn a_reload_turns_a_checkout_into_a_mirror() {
    let remote = Remote::new();
    remote.origin.tag("v1", true);
    let work = scratch("mirror-reload");
    let (checkout, mirror) = (work.path().join("site"), work.path().join("site.git"));
    let config = |mode: &str, dir: &Path| {
        let keys = format!("    mode: {mode}\n    provider: github\n    secret: {SECRET}\n");
        config_text("", &[repo_yaml("backup", &remote.url(), dir, &keys)])
    };
    let server = Daemon::builder()
        .config(&config("checkout", &checkout))
        .start();
    server.wait_head("backup", &checkout, &remote.head());
    server.replace_config(&config("mirror", &mirror));
    server.wait_reloads(1);
    let ok = support::wait_until(WAIT, || {
        mirror.join("refs").is_dir() && refs(&mirror) == refs(&remote.origin.bare)
    });
    assert!(ok, "{:#}", server.status("backup"));
    assert!(refs(&mirror).contains("refs/tags/v1"));
}
