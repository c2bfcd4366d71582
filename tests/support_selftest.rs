//! Proves the shared test helpers in `tests/support` work, using the git and ssh CLIs only
//! (plus one cross-check of the sshd's known_hosts against hookmirror's own parser).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{GitDaemon, GitHttp, Origin, Sshd, git, git_env, rev_parse, try_git, try_git_env};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn is_ancestor(repo: &Path, a: &str, b: &str) -> bool {
    try_git(repo, &["merge-base", "--is-ancestor", a, b])
        .status
        .success()
}

#[test]
fn origin_commits_tags_rewrites_and_deletes() {
    let o = Origin::new();
    assert!(o.bare.ends_with("origin.git"));
    assert_eq!(o.url(), o.bare.to_str().expect("utf-8 path"));
    assert_eq!(git(&o.bare, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    let first = o.head("main");
    assert_eq!(git(&o.bare, &["rev-list", "--count", "main"]), "1");

    // commit: on the current branch, pushed, returns the full id.
    let c1 = o.commit("dir/a.txt", "one\n");
    assert_eq!(c1.len(), 40);
    assert_eq!(o.head("main"), c1);
    assert_eq!(git(&o.bare, &["show", "main:dir/a.txt"]), "one");
    assert!(is_ancestor(&o.bare, &first, &c1));

    // commit_on: creates the branch from the current HEAD, pushes it; main untouched.
    let f1 = o.commit_on("feature", "f.txt", "feature\n");
    assert_eq!(o.head("feature"), f1);
    assert_eq!(o.head("main"), c1);
    assert_eq!(git(&o.bare, &["rev-parse", "feature~1"]), c1);
    // ... and switches to an existing one.
    let f2 = o.commit_on("feature", "f.txt", "feature 2\n");
    assert_eq!(git(&o.bare, &["rev-parse", "feature~1"]), f1);
    let c2 = o.commit_on("main", "b.txt", "two\n");
    assert_eq!(o.head("main"), c2);
    assert_eq!(o.head("feature"), f2);

    // tag: lightweight and annotated, returning the commit they point to.
    assert_eq!(o.tag("light", false), c2);
    assert_eq!(
        git(&o.bare, &["cat-file", "-t", "refs/tags/light"]),
        "commit"
    );
    assert_eq!(o.rev("refs/tags/light").as_deref(), Some(c2.as_str()));
    assert_eq!(o.tag("v1", true), c2);
    assert_eq!(git(&o.bare, &["cat-file", "-t", "refs/tags/v1"]), "tag");
    assert_eq!(o.rev("v1").as_deref(), Some(c2.as_str()));

    // move_tag: a new commit on the current branch, the tag force-moved to it.
    let moved = o.move_tag("v1", true);
    assert_ne!(moved, c2);
    assert_eq!(o.head("main"), moved);
    assert_eq!(o.rev("refs/tags/v1").as_deref(), Some(moved.as_str()));
    assert_eq!(git(&o.bare, &["cat-file", "-t", "refs/tags/v1"]), "tag");
    let moved_light = o.move_tag("light", false);
    assert_eq!(
        o.rev("refs/tags/light").as_deref(),
        Some(moved_light.as_str())
    );
    assert_eq!(
        git(&o.bare, &["cat-file", "-t", "refs/tags/light"]),
        "commit"
    );

    // force_push_rewrite: the old tip is no longer in main's history.
    let old_tip = o.head("main");
    let rewritten = o.force_push_rewrite();
    assert_eq!(o.head("main"), rewritten);
    assert!(!is_ancestor(&o.bare, &old_tip, &rewritten));
    assert_eq!(
        git(&o.bare, &["rev-parse", "main~1"]),
        git(&o.bare, &["rev-parse", &format!("{old_tip}~1")])
    );

    // delete_branch.
    o.delete_branch("feature");
    assert_eq!(o.rev("refs/heads/feature"), None);
    assert!(
        !try_git(&o.bare, &["rev-parse", "--verify", "refs/heads/feature"])
            .status
            .success()
    );
}

#[test]
fn force_push_rewrite_of_a_single_commit_history() {
    let o = Origin::new();
    let first = o.head("main");
    let new = o.force_push_rewrite();
    assert_eq!(o.head("main"), new);
    assert_ne!(new, first);
    assert_eq!(git(&o.bare, &["rev-list", "--count", "main"]), "1");
    // The work clone keeps working on main.
    let next = o.commit("after.txt", "after\n");
    assert_eq!(rev_parse(&o.bare, "main~1").as_deref(), Some(new.as_str()));
    assert_eq!(o.head("main"), next);
}

#[test]
fn git_daemon_serves_clones_and_fetches() {
    let start = Instant::now();
    let o = Origin::new();
    let daemon = GitDaemon::start(o.root.path());
    let url = daemon.url("origin.git");
    assert_eq!(url, format!("git://127.0.0.1:{}/origin.git", daemon.port));

    let dest = tempfile::tempdir().expect("tempdir");
    git(dest.path(), &["clone", "-q", &url, "clone"]);
    let clone = dest.path().join("clone");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), o.head("main"));

    let c = o.commit("x.txt", "x\n");
    git(&clone, &["fetch", "-q", "origin"]);
    assert_eq!(git(&clone, &["rev-parse", "origin/main"]), c);

    let missing = try_git(dest.path(), &["ls-remote", &daemon.url("nope.git")]);
    assert!(!missing.status.success());

    let port = daemon.port;
    drop(daemon);
    assert!(
        support::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_err()),
        "git daemon still listening after drop"
    );
    eprintln!("git daemon self-test: {:?}", start.elapsed());
}

#[test]
fn sshd_authorises_every_key_and_checks_host_keys() {
    let start = Instant::now();
    let o = Origin::new();
    let sshd = Sshd::start();
    eprintln!("sshd up after {:?}", start.elapsed());
    let url = sshd.url(&o.bare);
    assert_eq!(
        url,
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            sshd.user,
            sshd.port,
            o.bare.display()
        )
    );
    let main = o.head("main");

    // The user keys really carry the passphrase.
    for key in [&sshd.ed25519_key, &sshd.rsa_key, &sshd.ecdsa_key] {
        let k = key.to_str().expect("utf-8 path");
        let without = std::process::Command::new("ssh-keygen")
            .args(["-y", "-P", "", "-f", k])
            .output()
            .expect("ssh-keygen");
        assert!(!without.status.success(), "{k} opens without passphrase");
        support::run(
            "ssh-keygen",
            &["-y", "-P", sshd.passphrase.as_str(), "-f", k],
        );
        let text = std::fs::read_to_string(key).expect("key file");
        assert!(
            text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
            "{k}"
        );
    }

    // Each key (a passphrase-less copy, for the CLI) logs in and lists the repo.
    for key in [&sshd.ed25519_key, &sshd.rsa_key, &sshd.ecdsa_key] {
        let plain = sshd.unencrypted_copy(key);
        let ssh = sshd.ssh_command(&plain, &sshd.known_hosts);
        let out = git_env(
            o.root.path(),
            &["ls-remote", &url, "refs/heads/main"],
            &[("GIT_SSH_COMMAND", ssh.as_str())],
        );
        assert_eq!(out, format!("{main}\trefs/heads/main"), "{}", key.display());
    }

    // Clone and fetch over ssh.
    let plain = sshd.unencrypted_copy(&sshd.ed25519_key);
    let ssh = sshd.ssh_command(&plain, &sshd.known_hosts);
    let env = [("GIT_SSH_COMMAND", ssh.as_str())];
    git_env(o.root.path(), &["clone", "-q", &url, "ssh-clone"], &env);
    let clone = o.root.path().join("ssh-clone");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), main);

    // A key that is not authorised is refused.
    let stranger = sshd.dir.path().join("stranger");
    support::run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            stranger.to_str().expect("utf-8"),
        ],
    );
    let ssh = sshd.ssh_command(&stranger, &sshd.known_hosts);
    let out = try_git_env(
        o.root.path(),
        &["ls-remote", &url],
        &[("GIT_SSH_COMMAND", ssh.as_str())],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    // Unknown host (empty known_hosts) with strict checking: refused.
    let ssh = sshd.ssh_command(&plain, &sshd.empty_known_hosts);
    assert_eq!(
        std::fs::read(&sshd.empty_known_hosts)
            .expect("exists")
            .len(),
        0
    );
    let out = try_git_env(
        o.root.path(),
        &["ls-remote", &url],
        &[("GIT_SSH_COMMAND", ssh.as_str())],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("Host key verification failed"), "{err}");
    assert!(err.contains("host key is known"), "{err}");
    // ... and ssh did not add it.
    assert_eq!(
        std::fs::read(&sshd.empty_known_hosts)
            .expect("exists")
            .len(),
        0
    );

    // Changed host key: refused.
    let ssh = sshd.ssh_command(&plain, &sshd.other_known_hosts);
    let out = try_git_env(
        o.root.path(),
        &["ls-remote", &url],
        &[("GIT_SSH_COMMAND", ssh.as_str())],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );

    // The same three files through hookmirror's own known_hosts checker.
    use hookmirror::sync::known_hosts::{Verdict, check};
    let (kind, blob) = sshd.host_key();
    assert_eq!(kind, "ssh-ed25519");
    let read = |p: &Path| std::fs::read_to_string(p).expect("known_hosts");
    assert_eq!(
        check(
            &read(&sshd.known_hosts),
            "127.0.0.1",
            sshd.port,
            &kind,
            &blob
        ),
        Verdict::Match
    );
    assert_eq!(
        check(
            &read(&sshd.other_known_hosts),
            "127.0.0.1",
            sshd.port,
            &kind,
            &blob
        ),
        Verdict::Mismatch {
            expected_types: vec!["ssh-ed25519".to_string()]
        }
    );
    assert_eq!(
        check(
            &read(&sshd.empty_known_hosts),
            "127.0.0.1",
            sshd.port,
            &kind,
            &blob
        ),
        Verdict::Unknown
    );

    let port = sshd.port;
    drop(sshd);
    assert!(
        support::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_err()),
        "sshd still listening after drop"
    );
    eprintln!("sshd self-test: {:?}", start.elapsed());
}

/// Incompressible bytes, so a push of them is larger than http.postBuffer.
fn noise(len: usize, mut seed: u64) -> String {
    let mut s = String::with_capacity(len * 2);
    for _ in 0..len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        s.push_str(&format!("{:02x}", seed as u8));
    }
    s
}

#[test]
fn git_http_requires_basic_auth() {
    let start = Instant::now();
    let o = Origin::new();
    let http = GitHttp::start(o.root.path(), "hookbot", "s3cret-token");
    assert_eq!(
        http.url("origin.git"),
        format!("http://127.0.0.1:{}/origin.git", http.port)
    );
    let main = o.head("main");
    let authed = http.url_with_credentials("origin.git", "hookbot", "s3cret-token");

    // With the credentials in the URL: works (smart HTTP, protocol v2 POST).
    let out = git(o.root.path(), &["ls-remote", &authed, "refs/heads/main"]);
    assert_eq!(out, format!("{main}\trefs/heads/main"));
    assert!(http.requests() >= 2, "requests: {}", http.requests());

    // Without credentials, or with a wrong token: refused, and counted.
    let before = http.unauthorized_requests();
    let out = try_git(o.root.path(), &["ls-remote", &http.url("origin.git")]);
    assert!(!out.status.success());
    let wrong = http.url_with_credentials("origin.git", "hookbot", "wrong");
    let out2 = try_git(o.root.path(), &["ls-remote", &wrong]);
    assert!(!out2.status.success());
    assert!(
        stderr(&out2).contains("Authentication failed"),
        "{}",
        stderr(&out2)
    );
    assert!(http.unauthorized_requests() >= before + 2);

    // A raw request sees the 401 and the challenge.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http.port)).expect("connect");
        s.write_all(b"GET /origin.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("www-authenticate: basic realm="),
            "{resp}"
        );
    }

    // Clone, then push a commit too large for one POST buffer (chunked request body).
    git(o.root.path(), &["clone", "-q", &authed, "http-clone"]);
    let clone = o.root.path().join("http-clone");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), main);
    std::fs::write(clone.join("big.txt"), noise(400_000, 0x9e37_79b9_7f4a_7c15)).expect("write");
    git(&clone, &["add", "big.txt"]);
    git(&clone, &["commit", "-q", "-m", "big"]);
    let pushed = git(&clone, &["rev-parse", "HEAD"]);
    let chunked_before = http.chunked_requests();
    git(
        &clone,
        &[
            "-c",
            "http.postBuffer=65536",
            "push",
            "-q",
            "origin",
            "main",
        ],
    );
    assert_eq!(o.head("main"), pushed);
    assert!(
        http.chunked_requests() > chunked_before,
        "the push was not chunked"
    );

    // Fetch with protocol v0 as well (the work clone first catches up with the push).
    git(&o.work, &["pull", "-q", "--ff-only", "origin", "main"]);
    let c = o.commit("after.txt", "after\n");
    git(
        &clone,
        &[
            "-c",
            "protocol.version=0",
            "pull",
            "-q",
            "--rebase=false",
            "origin",
            "main",
        ],
    );
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), c);

    let port = http.port;
    drop(http);
    assert!(
        support::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_err()),
        "http server still listening after drop"
    );
    eprintln!("git http self-test: {:?}", start.elapsed());
}

#[test]
fn wait_until_and_free_port() {
    let t = Instant::now();
    assert!(support::wait_until(Duration::from_secs(1), || t.elapsed()
        > Duration::from_millis(50)));
    assert!(!support::wait_until(Duration::from_millis(100), || false));
    let port = support::free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port is free");
}
