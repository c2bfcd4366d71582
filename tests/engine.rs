//! The git engine against real remotes on loopback: a local path, `git daemon`, a private sshd
//! and smart HTTP with a token. Faults: force-push, moved tags, deleted branches, stale locks,
//! corrupted repositories, foreign directories. Post-sync actions.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use hookmirror::config::Repo;
use hookmirror::sync::{ErrorKind, Outcome, SyncOptions, sync_once, sync_with_retry};
use support::{GitDaemon, GitHttp, Origin, Sshd, git, rev_parse};

/// A repo config as an operator would write it: `extra` holds more YAML keys, indented 4.
fn repo(url: &str, dir: &Path, extra: &str) -> Repo {
    support::repo_config(url, dir, extra)
}

fn sync(r: &Repo) -> Outcome {
    support::sync_repo(r)
}

fn head(dir: &Path) -> String {
    rev_parse(dir, "HEAD").expect("checkout has a HEAD")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn clones_then_follows_a_branch_from_a_local_path() {
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let r = repo(&origin.url(), &dir, "    branch: main\n");

    let o = sync(&r);
    let s = o.result.as_ref().unwrap();
    assert!(s.cloned && s.changed() && s.old.is_none());
    assert_eq!(s.new, origin.head("main"));
    assert_eq!(head(&dir), origin.head("main"));
    assert_eq!(
        git(&dir, &["symbolic-ref", "HEAD"]),
        "refs/heads/main",
        "a normal branch checkout"
    );
    assert_eq!(git(&dir, &["remote", "get-url", "origin"]), origin.url());

    let c1 = origin.head("main");
    let c2 = origin.commit("index.html", "v2\n");
    let s = sync(&r).result.unwrap();
    assert!(!s.cloned && s.changed());
    assert_eq!(
        (s.old.as_deref(), s.new.as_str()),
        (Some(c1.as_str()), c2.as_str())
    );
    assert_eq!(read(&dir, "index.html"), "v2\n");
    assert_eq!(
        git(&dir, &["status", "--porcelain"]),
        "",
        "index and worktree match HEAD"
    );

    let s = sync(&r).result.unwrap();
    assert!(!s.changed(), "nothing new upstream");
}

#[test]
fn follows_the_remote_default_branch_when_none_is_configured() {
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let s = sync(&repo(&origin.file_url(), &dir, "")).result.unwrap();
    assert_eq!(s.remote_ref, "refs/heads/main");
    assert_eq!(head(&dir), origin.head("main"));
}

#[test]
fn local_modifications_are_reset_and_untracked_files_kept_unless_clean() {
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(&origin.url(), &dir, "");
    sync(&r).result.unwrap();
    std::fs::write(dir.join("README"), "local edit\n").unwrap();
    std::fs::write(dir.join("runtime.log"), "keep me\n").unwrap();
    origin.commit("a", "1\n");
    sync(&r).result.unwrap();
    assert_eq!(read(&dir, "README"), "initial\n");
    assert!(
        dir.join("runtime.log").exists(),
        "reset --hard keeps untracked files by default"
    );

    let clean = repo(&origin.url(), &dir, "    clean: true\n");
    origin.commit("a", "2\n");
    sync(&clean).result.unwrap();
    assert!(
        !dir.join("runtime.log").exists(),
        "clean removes untracked files"
    );
}

#[test]
fn an_upstream_force_push_is_followed() {
    let origin = Origin::new();
    origin.commit("a", "1\n");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(&origin.url(), &dir, "    branch: main\n");
    sync(&r).result.unwrap();
    let rewritten = origin.force_push_rewrite();
    let s = sync(&r).result.unwrap();
    assert_eq!(s.new, rewritten);
    assert_eq!(head(&dir), rewritten);
}

#[test]
fn tags_are_peeled_and_a_moved_tag_is_followed() {
    for annotated in [true, false] {
        let origin = Origin::new();
        let tagged = origin.tag("v1", annotated);
        origin.commit("after", "not in the tag\n");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let r = repo(&origin.url(), &dir, "    tag: v1\n");
        let s = sync(&r).result.unwrap();
        assert_eq!(
            s.new, tagged,
            "annotated={annotated}: the commit, not the tag object"
        );
        assert_eq!(s.remote_ref, "refs/tags/v1");
        assert!(!dir.join("after").exists());
        let symbolic = support::try_git(&dir, &["symbolic-ref", "-q", "HEAD"]);
        assert!(!symbolic.status.success(), "a tag is checked out detached");

        let moved = origin.move_tag("v1", annotated);
        let s = sync(&r).result.unwrap();
        assert_eq!(s.new, moved, "annotated={annotated}");
        assert_eq!(head(&dir), moved);
    }
}

#[test]
fn a_branch_deleted_upstream_keeps_the_last_tree_and_says_so() {
    let origin = Origin::new();
    let last = origin.commit_on("feature", "f", "feature work\n");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(&origin.url(), &dir, "    branch: feature\n");
    sync(&r).result.unwrap();
    origin.delete_branch("feature");
    let o = sync(&r);
    let e = o.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RefMissing);
    assert!(
        e.message.contains("branch `feature` does not exist"),
        "{}",
        e.message
    );
    assert_eq!(o.attempts, 1, "not retried");
    assert_eq!(head(&dir), last);
    assert_eq!(read(&dir, "f"), "feature work\n");
}

#[test]
fn over_git_daemon_with_depth() {
    let origin = Origin::new();
    for i in 0..5 {
        origin.commit("n", &format!("{i}\n"));
    }
    let daemon = GitDaemon::start(origin.root.path());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(
        &daemon.url("origin.git"),
        &dir,
        "    branch: main\n    depth: 1\n",
    );
    let s = sync(&r).result.unwrap();
    assert_eq!(s.new, origin.head("main"));
    assert!(dir.join(".git/shallow").exists(), "a shallow clone");
    assert_eq!(git(&dir, &["rev-list", "--count", "HEAD"]), "1");
    let next = origin.commit("n", "next\n");
    let s = sync(&r).result.unwrap();
    assert_eq!(s.new, next);
    assert_eq!(read(&dir, "n"), "next\n");
}

#[test]
fn over_ssh_with_each_key_type_and_a_passphrase() {
    let sshd = Sshd::start();
    let origin = Origin::new();
    let url = sshd.url(&origin.bare);
    for key in [&sshd.ed25519_key, &sshd.rsa_key, &sshd.ecdsa_key] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let extra = format!(
            "    auth:\n      ssh_key: '{}'\n      ssh_key_passphrase: '{}'\n      known_hosts: '{}'\n",
            key.display(),
            sshd.passphrase,
            sshd.known_hosts.display()
        );
        let o = sync(&repo(&url, &dir, &extra));
        let s = o
            .result
            .unwrap_or_else(|e| panic!("{}: {e:?}\n{}", key.display(), sshd.log()));
        assert_eq!(s.new, origin.head("main"));
    }
}

#[test]
fn ssh_host_keys_are_checked_strictly() {
    let sshd = Sshd::start();
    let origin = Origin::new();
    let url = sshd.url(&origin.bare);
    let case = |known_hosts: &Path| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let extra = format!(
            "    auth:\n      ssh_key: '{}'\n      ssh_key_passphrase: '{}'\n      known_hosts: '{}'\n",
            sshd.ed25519_key.display(),
            sshd.passphrase,
            known_hosts.display()
        );
        let o = sync(&repo(&url, &dir, &extra));
        assert!(
            !dir.join("README").exists(),
            "nothing fetched from an unverified host"
        );
        (o.result.unwrap_err(), o.attempts)
    };
    let (e, attempts) = case(&sshd.empty_known_hosts);
    assert_eq!(e.kind, ErrorKind::HostKey);
    assert_eq!(attempts, 1, "host-key failures are not retried");
    assert!(
        e.message.contains("is not in") && e.message.contains("SHA256:"),
        "{}",
        e.message
    );
    let (e, _) = case(&sshd.other_known_hosts);
    assert_eq!(e.kind, ErrorKind::HostKey);
    assert!(e.message.contains("HOST KEY CHANGED"), "{}", e.message);
    let (e, _) = case(&sshd.dir.path().join("does-not-exist"));
    assert_eq!(
        e.kind,
        ErrorKind::HostKey,
        "no known_hosts file means unknown, never trust on first use"
    );
}

#[test]
fn ssh_with_a_wrong_passphrase_fails_at_once_as_auth() {
    let sshd = Sshd::start();
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let extra = format!(
        "    auth:\n      ssh_key: '{}'\n      ssh_key_passphrase: not-it-XYZ\n      known_hosts: '{}'\n",
        sshd.ed25519_key.display(),
        sshd.known_hosts.display()
    );
    let o = sync(&repo(&sshd.url(&origin.bare), &dir, &extra));
    let e = o.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e:?}");
    assert_eq!(o.attempts, 1);
    assert!(!e.message.contains("XYZ"));
    assert!(e.message.contains("passphrase"), "{}", e.message);
}

#[test]
fn over_http_with_a_token_which_never_leaks() {
    let origin = Origin::new();
    let http = GitHttp::start(origin.root.path(), "nouser", "glpat-SECRET123");
    let tmp = tempfile::tempdir().unwrap();

    // username + token
    let dir = tmp.path().join("a");
    let r = repo(
        &http.url("origin.git"),
        &dir,
        "    auth:\n      username: nouser\n      token: glpat-SECRET123\n",
    );
    assert_eq!(sync(&r).result.unwrap().new, origin.head("main"));

    // Direktiv's style: `nouser:{token}` in the token field
    let dir = tmp.path().join("b");
    let r = repo(
        &http.url("origin.git"),
        &dir,
        "    auth:\n      token: 'nouser:glpat-SECRET123'\n",
    );
    assert_eq!(sync(&r).result.unwrap().new, origin.head("main"));

    // credentials in the URL work, and are not written to .git/config
    let dir = tmp.path().join("c");
    let r = repo(
        &http.url_with_credentials("origin.git", "nouser", "glpat-SECRET123"),
        &dir,
        "",
    );
    sync(&r).result.unwrap();
    let git_config = std::fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(!git_config.contains("SECRET123"), "{git_config}");

    // a wrong token: auth error at once, and no secret in the message
    let dir = tmp.path().join("d");
    let r = repo(
        &http.url_with_credentials("origin.git", "nouser", "glpat-WRONG999"),
        &dir,
        "",
    );
    let o = sync(&r);
    let e = o.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e:?}");
    assert_eq!(o.attempts, 1);
    assert!(
        !e.message.contains("WRONG999") && !format!("{e:?}").contains("WRONG999"),
        "{e:?}"
    );
    let r = repo(
        &http.url("origin.git"),
        &tmp.path().join("e"),
        "    auth:\n      token: glpat-WRONG999\n",
    );
    let e = sync(&r).result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e:?}");
    assert!(!e.message.contains("WRONG999"));
}

#[test]
fn a_missing_repository_fails_at_once_and_a_dead_remote_is_retried() {
    let origin = Origin::new();
    let daemon = GitDaemon::start(origin.root.path());
    let tmp = tempfile::tempdir().unwrap();
    let o = sync(&repo(&daemon.url("nope.git"), &tmp.path().join("a"), ""));
    let e = o.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert_eq!(o.attempts, 1);

    let port = support::free_port();
    let mut sleeps = Vec::new();
    let r = repo(
        &format!("git://127.0.0.1:{port}/x.git"),
        &tmp.path().join("b"),
        "",
    );
    let o = sync_with_retry(&r, &SyncOptions::default(), |d| {
        sleeps.push(d);
        true
    });
    assert_eq!(o.result.unwrap_err().kind, ErrorKind::Transient);
    assert_eq!(o.attempts, 3);
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps[0] >= Duration::from_millis(5) && sleeps[1] <= Duration::from_millis(20),
        "{sleeps:?}"
    );
}

#[test]
fn submodules_are_initialised_and_updated() {
    let lib = Origin::new();
    lib.commit("lib.txt", "library v1\n");
    let app = Origin::new();
    git(
        &app.work,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &lib.url(),
            "vendor/lib",
        ],
    );
    git(&app.work, &["commit", "-qm", "add submodule"]);
    git(&app.work, &["push", "-q", "origin", "main"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(&app.url(), &dir, "    submodules: true\n");
    sync(&r).result.unwrap();
    assert_eq!(read(&dir, "vendor/lib/lib.txt"), "library v1\n");
}

#[test]
fn stale_locks_are_removed() {
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(&origin.url(), &dir, "    branch: main\n");
    sync(&r).result.unwrap();
    for lock in [
        "index.lock",
        "HEAD.lock",
        "packed-refs.lock",
        "refs/heads/main.lock",
        "refs/remotes/origin/main.lock",
    ] {
        std::fs::write(dir.join(".git").join(lock), "").unwrap();
    }
    let next = origin.commit("x", "1\n");
    let o = sync(&r);
    assert_eq!(o.result.as_ref().unwrap().new, next);
    assert_eq!(head(&dir), next);
    let notes: Vec<String> = o.recovered.iter().map(|r| r.to_string()).collect();
    assert!(notes.iter().any(|n| n.contains("index.lock")), "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("refs/heads/main.lock")),
        "{notes:?}"
    );
    assert!(o.recovered.iter().all(|r| r.kind() == "lock_removed"));
    assert!(!dir.join(".git/index.lock").exists());
}

#[test]
fn a_corrupted_repository_is_moved_aside_and_recloned() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("garbage config", |d| {
            std::fs::write(d.join(".git/config"), "[[[ not a config").unwrap()
        }),
        ("missing HEAD", |d| {
            std::fs::remove_file(d.join(".git/HEAD")).unwrap()
        }),
        ("missing objects", |d| {
            std::fs::remove_dir_all(d.join(".git/objects")).unwrap();
            std::fs::create_dir_all(d.join(".git/objects/pack")).unwrap();
            std::fs::create_dir_all(d.join(".git/objects/info")).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let origin = Origin::new();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let r = repo(&origin.url(), &dir, "");
        sync(&r).result.unwrap();
        damage(&dir);
        let o = sync(&r);
        let s = o.result.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert!(s.cloned, "{what}");
        assert_eq!(head(&dir), origin.head("main"), "{what}");
        let aside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("d.corrupt-"))
            .collect();
        assert_eq!(
            aside.len(),
            1,
            "{what}: the damaged copy is kept aside, not deleted"
        );
        let kinds: Vec<&str> = o.recovered.iter().map(|r| r.kind()).collect();
        assert_eq!(
            kinds,
            ["moved_aside", "recloned"],
            "{what}: {:?}",
            o.recovered
        );
        assert!(
            o.recovered[0].to_string().contains("moved it to"),
            "{what}: {:?}",
            o.recovered
        );
    }
}

#[test]
fn foreign_directories_are_refused_and_left_alone() {
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("precious.txt"), "mine\n").unwrap();
    let o = sync(&repo(&origin.url(), &dir, ""));
    let e = o.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ForeignDirectory);
    assert_eq!(o.attempts, 1);
    assert_eq!(read(&dir, "precious.txt"), "mine\n");

    // a checkout of another repository
    let other = Origin::new();
    let dir = tmp.path().join("e");
    sync(&repo(&other.url(), &dir, "")).result.unwrap();
    let e = sync(&repo(&origin.url(), &dir, "")).result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ForeignDirectory);
    assert!(e.message.contains("is a checkout of"), "{}", e.message);
    assert_eq!(head(&dir), other.head("main"), "untouched");
}

#[test]
fn on_success_touches_and_runs_the_command_only_on_change() {
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let trigger = tmp.path().join("trigger");
    let out = tmp.path().join("env.txt");
    let extra = format!(
        "    branch: main\n    on_success:\n      touch: '{}'\n      command: [sh, -c, 'echo \"$HOOKMIRROR_REPO $HOOKMIRROR_REF $HOOKMIRROR_OLD $HOOKMIRROR_NEW $HOOKMIRROR_DIR $(pwd)\" >> {}']\n      timeout: 10s\n",
        trigger.display(),
        out.display()
    );
    let r = repo(&origin.url(), &dir, &extra);
    let first = sync(&r);
    assert!(first.ok(), "{first:?}");
    assert!(trigger.exists());
    let c2 = origin.commit("x", "2\n");
    let o = sync(&r);
    assert!(o.ok());
    let lines: Vec<String> = read(tmp.path(), "env.txt")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2);
    let old = first.result.unwrap().new;
    assert_eq!(
        lines[1],
        format!("t refs/heads/main {old} {c2} {d} {d}", d = dir.display())
    );

    // unchanged: neither the command nor the touch run
    std::fs::remove_file(&trigger).unwrap();
    let o = sync(&r);
    assert!(o.command.is_none());
    assert!(!trigger.exists());
    assert_eq!(read(tmp.path(), "env.txt").lines().count(), 2);

    // a failing command marks the outcome failed but the checkout is synced
    let r = repo(
        &origin.url(),
        &dir,
        "    on_success:\n      command: ['false']\n",
    );
    let c3 = origin.commit("x", "3\n");
    let o = sync(&r);
    assert!(!o.ok());
    assert_eq!(head(&dir), c3);
}

#[test]
fn a_hint_already_checked_out_skips_the_fetch() {
    let origin = Origin::new();
    let first = origin.head("main");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(&origin.url(), &dir, "");
    sync(&r).result.unwrap();
    let second = origin.commit("x", "1\n");
    let s = sync_once(
        &r,
        &SyncOptions {
            hints: Some(vec![first.clone()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!s.fetched && !s.changed(), "an old delivery needs no fetch");
    let s = sync_once(
        &r,
        &SyncOptions {
            hints: Some(vec![second.clone()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(s.fetched && s.new == second && s.missing_hints.is_empty());
    let unknown = "0123456789abcdef0123456789abcdef01234567".to_string();
    let s = sync_once(
        &r,
        &SyncOptions {
            hints: Some(vec![unknown.clone()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(s.fetched, "an unknown commit needs a fetch");
    assert_eq!(
        s.missing_hints,
        vec![unknown],
        "and is reported when the remote lacks it"
    );
}

#[test]
fn pack_files_are_consolidated_before_they_pile_up() {
    let origin = Origin::new();
    let daemon = GitDaemon::start(origin.root.path());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let r = repo(&daemon.url("origin.git"), &dir, "    branch: main\n");
    sync(&r).result.unwrap();
    let packs = || {
        std::fs::read_dir(dir.join(".git/objects/pack"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .count()
    };
    let limit = hookmirror::sync::git::PACK_LIMIT;
    let mut noted = false;
    for i in 0..limit + 5 {
        origin.commit("n", &format!("{i}\n"));
        let s = sync(&r).result.unwrap();
        noted |= s.notes.iter().any(|n| n.contains("git gc"));
    }
    assert!(noted, "a sync past the limit started git gc");
    assert!(
        support::wait_until(Duration::from_secs(30), || packs() <= limit),
        "{} packs remain",
        packs()
    );
    assert_eq!(head(&dir), origin.head("main"));
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    git(&dir, &["fsck", "--no-progress"]);
}

#[test]
fn git_urls_go_through_hookmirrors_own_transport() {
    hookmirror::sync::init_libgit2();
    let origin = Origin::new();
    let daemon = GitDaemon::start(origin.root.path());
    let url = daemon.url("origin.git");
    // The engine hands libgit2 `hm-git://…` for it (sync::transport::fetch_url).
    let own = format!("hm-{url}");
    // Fetching works over it (ref advertisement, then negotiation and pack on the same stream)…
    let mut remote = git2::Remote::create_detached(own.as_str()).unwrap();
    remote.connect(git2::Direction::Fetch).unwrap();
    let heads: Vec<String> = remote
        .list()
        .unwrap()
        .iter()
        .map(|h| h.name().to_string())
        .collect();
    assert!(heads.contains(&"refs/heads/main".to_string()), "{heads:?}");
    remote.disconnect().unwrap();
    // A clone, then an update after a longer history: more than one round of `have` lines.
    for i in 0..40 {
        origin.commit("n", &format!("{i}\n"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let r = repo(&url, &dir, "    branch: main\n");
    let o = sync(&r);
    assert_eq!(head(&dir), origin.head("main"), "{o:?}");
    let next = origin.commit("n", "next\n");
    let s = sync(&r).result.unwrap();
    assert_eq!(
        (s.new.as_str(), head(&dir).as_str()),
        (next.as_str(), next.as_str())
    );
    assert_eq!(read(&dir, "n"), "next\n");
    // …and it is ours: libgit2's built-in git:// transport would try to push.
    let mut remote = git2::Remote::create_detached(own.as_str()).unwrap();
    let e = remote.connect(git2::Direction::Push).unwrap_err();
    assert!(e.message().contains("hookmirror only fetches"), "{e}");
    // `git://` itself stays libgit2's, for `transport: libgit2`.
    let mut remote = git2::Remote::create_detached(url.as_str()).unwrap();
    let e = remote.connect(git2::Direction::Push).unwrap_err();
    assert!(!e.message().contains("hookmirror"), "{e}");
}
