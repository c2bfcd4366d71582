//! hookmirror's own fetch negotiation (src/sync/negotiate.rs) against real servers: nginx +
//! `git http-backend` over TLS (requests counted in nginx's access log), a private sshd (logins
//! counted) and `git daemon`, on an origin with a long history.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hookmirror::config::Repo;
use hookmirror::sync::{ErrorKind, Outcome, SyncOptions, sync_once};
use support::faults::Throttle;
use support::https::{HTTPS_TOKEN, HttpsOrigin};
use support::{GitDaemon, Origin, Sshd, git, git_command, rev_parse};

const TOKEN: &str = HTTPS_TOKEN;

fn sync(r: &Repo) -> Outcome {
    support::sync_repo(r)
}

fn head(dir: &Path) -> String {
    rev_parse(dir, "HEAD").expect("checkout has a HEAD")
}

/// Runs `git fast-import` in `bare` on `stream`.
fn fast_import(bare: &Path, stream: &str) {
    use std::io::Write;
    let mut child = git_command(bare)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "fast-import failed");
}

/// An origin whose `main` has 300 more commits (50 small files in 10 folders, and a 40 KB
/// `big.txt` changed a line at a time, so a new commit's pack is a thin delta against it), the
/// work clone moved to the new tip.
fn long_origin() -> Origin {
    let origin = Origin::new();
    let mut stream = String::new();
    let base = origin.head("main");
    for i in 0..300 {
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter T <t@invalid> {} +0000\ndata 9\ncommit {:02}\n",
            1_700_000_000 + i,
            i % 100
        ));
        if i == 0 {
            stream.push_str(&format!("from {base}\n"));
        }
        let small = format!("{i}\n");
        stream.push_str(&format!(
            "M 100644 inline d{}/f{}\ndata {}\n{small}\n",
            i % 10,
            i % 50,
            small.len()
        ));
        let big = big_text(i);
        stream.push_str(&format!(
            "M 100644 inline big.txt\ndata {}\n{big}\n",
            big.len()
        ));
    }
    fast_import(&origin.bare, &stream);
    git(&origin.work, &["fetch", "-q", "origin"]);
    git(&origin.work, &["reset", "-q", "--hard", "origin/main"]);
    origin
}

/// 1,000 numbered lines, line `i % 1000` saying which round changed it.
fn big_text(round: usize) -> String {
    (0..1000)
        .map(|l| {
            if l == round % 1000 {
                format!("line {l:04}: changed in round {round}\n")
            } else {
                format!("line {l:04}: the same as ever, some text to make a delta worth it\n")
            }
        })
        .collect()
}

/// The checkout is at `commit`, with a clean status and a repository `git fsck` accepts.
fn assert_sound(dir: &Path, commit: &str) {
    assert_eq!(head(dir), commit);
    assert_eq!(git(dir, &["status", "--porcelain"]), "", "clean status");
    let fsck = support::try_git(dir, &["fsck", "--no-progress", "--no-dangling"]);
    assert!(
        fsck.status.success() && fsck.stdout.is_empty(),
        "git fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}

/// A repo config for `s`'s origin with the right login.
fn https_repo(s: &HttpsOrigin, dir: &Path, target: &str) -> Repo {
    support::repo_config(
        &s.nginx.url("origin.git"),
        dir,
        &format!("{target}{}", s.auth(TOKEN)),
    )
}

/// The requests of `sync` as `s`'s nginx logged them: (GETs of the advertisement, POSTs).
fn requests_of(s: &HttpsOrigin, sync: impl FnOnce()) -> (usize, usize) {
    let before = s.nginx.requests();
    sync();
    let log = s.nginx.access_log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    let gets = new.iter().filter(|l| l.contains(" GET ")).count();
    let posts = new.iter().filter(|l| l.contains(" POST ")).count();
    assert_eq!(gets + posts, new.len(), "{log}");
    (gets, posts)
}

#[test]
fn https_one_push_costs_the_advertisement_and_one_post() {
    let s = HttpsOrigin::start(long_origin());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let r = https_repo(&s, &dir, "    branch: main\n");
    // The first sync (a clone: nothing to say we have) is one POST too.
    let (gets, posts) = requests_of(&s, || {
        sync(&r).result.unwrap();
    });
    assert_eq!((gets, posts), (1, 1), "{}", s.nginx.access_log());
    assert_sound(&dir, &s.origin.head("main"));
    assert_eq!(git(&dir, &["rev-list", "--count", "HEAD"]), "301");

    // One push: one GET and exactly one POST, and the new commit's pack was a thin delta the
    // indexer completed from the checkout's objects.
    for round in 300..303 {
        let new = s.origin.commit("big.txt", &big_text(round));
        let (gets, posts) = requests_of(&s, || {
            let o = sync(&r);
            assert_eq!(o.result.unwrap().new, new);
        });
        assert_eq!((gets, posts), (1, 1), "{}", s.nginx.access_log());
        assert_sound(&dir, &new);
        assert_eq!(
            std::fs::read_to_string(dir.join("big.txt")).unwrap(),
            big_text(round)
        );
    }

    // Nothing new: the advertisement only.
    let (gets, posts) = requests_of(&s, || {
        let o = sync(&r);
        assert!(!o.result.unwrap().changed());
    });
    assert_eq!((gets, posts), (1, 0), "{}", s.nginx.access_log());

    // A force-push that rewrote the checkout's tip: still one POST (whether the server found a
    // common base among the haves is not observed here).
    let rewritten = s.origin.force_push_rewrite();
    let (gets, posts) = requests_of(&s, || {
        assert_eq!(sync(&r).result.unwrap().new, rewritten);
    });
    assert_eq!((gets, posts), (1, 1), "{}", s.nginx.access_log());
    assert_sound(&dir, &rewritten);
    let reflog = git(&dir, &["reflog", "show", "refs/remotes/origin/main"]);
    assert!(reflog.contains("hookmirror: fetch"), "{reflog}");
    assert_eq!(s.nginx.connections(), 1, "{}", s.nginx.access_log());
}

#[test]
fn https_tags_and_the_default_branch_sync_and_a_wrong_token_is_auth() {
    let s = HttpsOrigin::start(long_origin());
    let tmp = tempfile::tempdir().unwrap();
    let tagged = s.origin.tag("v1", true);
    let tag_dir = tmp.path().join("tag");
    let tag_repo = https_repo(&s, &tag_dir, "    tag: v1\n");
    let o = sync(&tag_repo).result.unwrap();
    assert_eq!(
        (o.new.as_str(), o.remote_ref.as_str()),
        (tagged.as_str(), "refs/tags/v1")
    );
    assert_sound(&tag_dir, &tagged);
    // The tag moves (annotated, to a new commit): followed, in one POST.
    let moved = s.origin.move_tag("v1", true);
    let (_, posts) = requests_of(&s, || {
        assert_eq!(sync(&tag_repo).result.unwrap().new, moved);
    });
    assert_eq!(posts, 1);
    assert_sound(&tag_dir, &moved);

    let default_dir = tmp.path().join("default");
    let default_repo = https_repo(&s, &default_dir, "");
    let o = sync(&default_repo).result.unwrap();
    assert_eq!(o.remote_ref, "refs/heads/main");
    assert_sound(&default_dir, &s.origin.head("main"));
    let new = s.origin.commit("d0/f0", "default branch\n");
    let (_, posts) = requests_of(&s, || {
        assert_eq!(sync(&default_repo).result.unwrap().new, new);
    });
    assert_eq!(posts, 1);

    let wrong = support::repo_config(
        &s.nginx.url("origin.git"),
        &tmp.path().join("wrong"),
        &format!("    branch: main\n{}", s.auth("glpat-WRONG")),
    );
    let o = sync(&wrong);
    let e = o.result.unwrap_err();
    assert_eq!((e.kind, o.attempts), (ErrorKind::Auth, 1), "{e:?}");
    assert!(!e.message.contains("WRONG"), "{}", e.message);

    let missing = https_repo(&s, &tmp.path().join("missing"), "    branch: nope\n");
    let e = sync(&missing).result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RefMissing, "{e:?}");
}

#[test]
fn https_a_server_silent_mid_pack_is_a_stall_timeout() {
    let origin = Origin::new();
    // 3 MB of noise: the pack is far larger than what the throttle lets through.
    let mut rng = fastrand::Rng::with_seed(11);
    let noise: String = (0..3 << 20)
        .map(|_| char::from(b'!' + rng.u8(0..94)))
        .collect();
    origin.commit("noise.bin", &noise);
    let s = HttpsOrigin::start(origin);
    // Each connection's first 256 KB pass (the TLS handshake, the advertisement, the start of
    // the pack), then nothing.
    let throttle = Throttle::start(s.nginx.port, 256 * 1024, 0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let r = support::plain_repo_config(
        &format!("https://127.0.0.1:{}/origin.git", throttle.port),
        &dir,
        &format!(
            "    branch: main\n    stall_timeout: 1s\n    sync_timeout: 30s\n{}",
            s.auth(TOKEN)
        ),
    );
    hookmirror::sync::init_libgit2();
    let t = Instant::now();
    let e = sync_once(&r, &SyncOptions::default()).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert!(e.message.contains("stall"), "{e:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        rev_parse(&dir, "HEAD").is_none(),
        "nothing half-fetched is published"
    );
}

#[test]
fn ssh_and_git_daemon_fetch_in_one_request_on_the_advertisements_channel() {
    let origin = long_origin();
    let sshd = Sshd::start();
    let daemon = GitDaemon::start(origin.root.path());
    let tmp = tempfile::tempdir().unwrap();
    let ssh_dir = tmp.path().join("ssh");
    let ssh = support::repo_config(
        &sshd.url(&origin.bare),
        &ssh_dir,
        &format!(
            "    branch: main\n    auth:\n      ssh_key: '{}'\n      ssh_key_passphrase: '{}'\n      known_hosts: '{}'\n",
            sshd.ed25519_key.display(),
            sshd.passphrase,
            sshd.known_hosts.display()
        ),
    );
    let git_dir = tmp.path().join("git");
    let plain = support::repo_config(&daemon.url("origin.git"), &git_dir, "    branch: main\n");
    for r in [&ssh, &plain] {
        assert_eq!(sync(r).result.unwrap().new, origin.head("main"));
    }
    for round in 300..303 {
        let new = origin.commit("big.txt", &big_text(round));
        for (r, dir) in [(&ssh, &ssh_dir), (&plain, &git_dir)] {
            let o = sync(r);
            assert_eq!((o.result.unwrap().new, o.attempts), (new.clone(), 1));
            assert_sound(dir, &new);
        }
    }
    // Nothing new: a flush ends upload-pack cleanly, and the session goes back to the pool.
    for r in [&ssh, &plain] {
        assert!(!sync(r).result.unwrap().changed());
    }
    let rewritten = origin.force_push_rewrite();
    for (r, dir) in [(&ssh, &ssh_dir), (&plain, &git_dir)] {
        assert_eq!(sync(r).result.unwrap().new, rewritten);
        assert_sound(dir, &rewritten);
    }
    assert_eq!(
        sshd.logins(),
        1,
        "one session for every sync:\n{}",
        sshd.log()
    );
    assert_eq!(sshd.client_disconnects(), 0, "{}", sshd.log());
}
