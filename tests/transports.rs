//! hookmirror's own HTTPS and SSH transports against real servers on loopback: nginx +
//! fcgiwrap + `git http-backend` over TLS (a test CA; basic auth), tinyproxy, and a private
//! sshd. Connections are counted at the server (nginx's per-request connection serial, sshd's
//! accepted logins).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use hookmirror::config::Repo;
use hookmirror::sync::{ErrorKind, Outcome};
use support::daemon::{Daemon, repo_yaml};
use support::https::{HTTPS_TOKEN, HttpsOrigin, NginxGit, NginxOptions, TestCa, Tinyproxy};
use support::{GitHttp, Origin, Sshd, rev_parse, wait_until};

/// A repo config tracking `main`: `extra` holds more YAML keys, indented 4.
fn repo(url: &str, dir: &Path, extra: &str) -> Repo {
    support::repo_config(url, dir, &format!("    branch: main\n{extra}"))
}

fn sync(r: &Repo) -> Outcome {
    support::sync_repo(r)
}

fn head(dir: &Path) -> String {
    rev_parse(dir, "HEAD").expect("checkout has a HEAD")
}

const TOKEN: &str = HTTPS_TOKEN;

#[test]
fn https_syncs_reuse_one_connection_with_a_token_and_a_private_ca() {
    let s = HttpsOrigin::start(Origin::new());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let r = repo(&s.nginx.url("origin.git"), &dir, &s.auth(TOKEN));
    let o = sync(&r);
    assert_eq!(
        o.result.as_ref().unwrap().new,
        s.origin.head("main"),
        "{o:?}"
    );
    for i in 0..3 {
        let new = s.origin.commit("f", &format!("{i}\n"));
        let o = sync(&r);
        assert_eq!((o.result.unwrap().new, head(&dir)), (new.clone(), new));
    }
    let log = s.nginx.access_log();
    // A clone and 3 fetches: an advertisement and a POST each, all on one connection.
    assert!(s.nginx.requests() >= 8, "{log}");
    assert_eq!(
        s.nginx.connections(),
        1,
        "one keep-alive connection:\n{log}"
    );
    assert!(
        log.lines().all(|l| l.contains(" 200 ")),
        "credentials went with every request (no 401 round trip):\n{log}"
    );
    // The advertisement came gzipped (nginx logs the ratio; `-` when not compressed).
    assert!(
        log.lines()
            .filter(|l| l.contains("/info/refs"))
            .all(|l| l.split_whitespace().nth(6) != Some("-")),
        "{log}"
    );
    let agent = format!("hookmirror/{}", env!("CARGO_PKG_VERSION"));
    assert!(log.lines().all(|l| l.contains(&agent)), "{log}");
    // A shallow clone over the same transport.
    let shallow = tmp.path().join("shallow");
    let r = repo(
        &s.nginx.url("origin.git"),
        &shallow,
        &format!("    depth: 1\n{}", s.auth(TOKEN)),
    );
    assert_eq!(sync(&r).result.unwrap().new, s.origin.head("main"));
    assert_eq!(
        support::git(&shallow, &["rev-list", "--count", "HEAD"]),
        "1"
    );
    let config = std::fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(
        config.contains(&s.nginx.url("origin.git")) && !config.contains("hm-"),
        "{config}"
    );
}

#[test]
fn a_refused_token_is_an_auth_error_that_names_the_url_without_it() {
    let s = HttpsOrigin::start(Origin::new());
    let tmp = tempfile::tempdir().unwrap();
    let wrong = s.auth(TOKEN).replace(TOKEN, "glpat-WRONG-0815");
    let r = repo(&s.nginx.url("origin.git"), &tmp.path().join("c"), &wrong);
    let o = sync(&r);
    let e = o.result.unwrap_err();
    assert_eq!((e.kind, o.attempts), (ErrorKind::Auth, 1), "{e:?}");
    assert!(
        e.message.contains(&s.nginx.url("origin.git")),
        "{}",
        e.message
    );
    assert!(e.message.contains("401"), "{}", e.message);
    assert!(!e.message.contains("WRONG"), "{}", e.message);
    // The token in the URL instead: refused the same way, and not shown.
    let url = s
        .nginx
        .url("origin.git")
        .replace("https://", "https://bot:glpat-WRONG-0815@");
    let no_token = format!("    auth:\n      ca_file: '{}'\n", s.ca.cert.display());
    let e = sync(&repo(&url, &tmp.path().join("d"), &no_token))
        .result
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e:?}");
    assert!(!e.message.contains("WRONG"), "{}", e.message);
}

#[test]
fn an_untrusted_expired_or_misnamed_certificate_is_a_tls_error() {
    let origin = Origin::new();
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        // Signed by a CA the repository does not name: the system store does not know it.
        (
            "untrusted",
            ca.issue("ok", "IP:127.0.0.1", 2),
            &other_ca,
            "not signed by a trusted CA",
        ),
        (
            "expired",
            ca.issue("old", "IP:127.0.0.1", -1),
            &ca,
            "expired",
        ),
        (
            "misnamed",
            ca.issue("other", "DNS:git.example.org,IP:127.0.0.2", 2),
            &ca,
            "another host name",
        ),
    ];
    for (name, cert, trusted, says) in cases {
        let nginx = NginxGit::start(origin.root.path(), &cert, &NginxOptions::default());
        let extra = format!("    auth:\n      ca_file: '{}'\n", trusted.cert.display());
        let o = sync(&repo(
            &nginx.url("origin.git"),
            &tmp.path().join(name),
            &extra,
        ));
        let e = o.result.unwrap_err();
        assert_eq!((e.kind, o.attempts), (ErrorKind::Tls, 1), "{name}: {e:?}");
        assert!(e.message.contains(says), "{name}: {}", e.message);
        assert!(
            e.message.contains(&nginx.url("origin.git")),
            "{name}: {}",
            e.message
        );
        assert_eq!(nginx.requests(), 0, "{name}: nothing was sent");
    }
}

#[test]
fn a_changed_ca_file_is_read_again_and_pooled_connections_are_not_trusted_past_it() {
    let s = HttpsOrigin::start(Origin::new());
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::copy(&s.ca.cert, &ca_file).unwrap();
    let auth = format!(
        "    auth:\n      username: bot\n      token: {TOKEN}\n      ca_file: '{}'\n",
        ca_file.display()
    );
    let r = repo(&s.nginx.url("origin.git"), &tmp.path().join("c"), &auth);
    sync(&r).result.unwrap();
    // The file now names another CA only: the warm connection verified under the old one is
    // not used, and the new handshake fails.
    let other = TestCa::new();
    std::fs::copy(&other.cert, &ca_file).unwrap();
    s.origin.commit("f", "after the CA change\n");
    let e = sync(&r).result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Tls, "{e:?}");
    // And back: trusted again.
    std::fs::copy(&s.ca.cert, &ca_file).unwrap();
    assert_eq!(sync(&r).result.unwrap().new, s.origin.head("main"));
}

#[test]
fn redirects_are_followed_on_the_same_host_only() {
    let s = HttpsOrigin::start(Origin::new());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("moved");
    let r = repo(&s.nginx.url("moved/origin.git"), &dir, &s.auth(TOKEN));
    assert_eq!(sync(&r).result.unwrap().new, s.origin.head("main"));
    let log = s.nginx.access_log();
    assert!(
        log.contains(" 301 GET /moved/origin.git/info/refs")
            && log.contains(" 200 POST /origin.git/git-upload-pack"),
        "the POST went where the advertisement was redirected:\n{log}"
    );
    let r = repo(
        &s.nginx.url("offsite/origin.git"),
        &tmp.path().join("off"),
        &s.auth(TOKEN),
    );
    let e = sync(&r).result.unwrap_err();
    assert!(e.message.contains("not followed"), "{e:?}");
    assert!(e.message.contains("127.0.0.2"), "{}", e.message);
}

#[test]
fn https_goes_through_the_configured_proxy() {
    let s = HttpsOrigin::start(Origin::new());
    let proxy = Tinyproxy::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let extra = format!("{}      proxy: '{}'\n", s.auth(TOKEN), proxy.url());
    let r = repo(&s.nginx.url("origin.git"), &dir, &extra);
    assert_eq!(sync(&r).result.unwrap().new, s.origin.head("main"));
    let new = s.origin.commit("f", "through the proxy\n");
    assert_eq!(sync(&r).result.unwrap().new, new);
    assert!(
        wait_until(Duration::from_secs(10), || proxy.connects() >= 1),
        "tinyproxy carried the connection:\n{}",
        proxy.log()
    );
    assert_eq!(proxy.connects(), 1, "one tunnel, kept:\n{}", proxy.log());
    assert_eq!(s.nginx.connections(), 1, "{}", s.nginx.access_log());
}

#[test]
fn the_daemon_takes_its_proxy_from_the_environment_unless_no_proxy_says_otherwise() {
    let s = HttpsOrigin::start(Origin::new());
    let proxy = Tinyproxy::start();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = repo_yaml(
        "site",
        &s.nginx.url("origin.git"),
        &tmp.path().join("site"),
        &format!(
            "    insecure_no_secret: true\n    branch: main\n{}",
            s.auth(TOKEN)
        ),
    );
    let d = Daemon::builder()
        .repo(yaml.clone())
        .env("HTTPS_PROXY", &proxy.url())
        .start();
    d.wait_head("site", &tmp.path().join("site"), &s.origin.head("main"));
    assert!(proxy.connects() >= 1, "{}", proxy.log());
    d.assert_clean_logs(&[TOKEN]);
    drop(d);

    let before = proxy.connects();
    let d = Daemon::builder()
        .repo(yaml.replace("/site'", "/direct'"))
        .env("HTTPS_PROXY", &proxy.url())
        .env("NO_PROXY", "localhost,127.0.0.1")
        .start();
    d.wait_head("site", &tmp.path().join("direct"), &s.origin.head("main"));
    assert_eq!(
        proxy.connects(),
        before,
        "NO_PROXY: direct\n{}",
        proxy.log()
    );
}

fn ssh_extra(sshd: &Sshd, known_hosts: &Path) -> String {
    format!(
        "    auth:\n      ssh_key: '{}'\n      ssh_key_passphrase: '{}'\n      known_hosts: '{}'\n",
        sshd.ed25519_key.display(),
        sshd.passphrase,
        known_hosts.display()
    )
}

#[test]
fn ssh_sessions_are_kept_replaced_when_dead_and_dropped_when_known_hosts_change() {
    let sshd = Sshd::start();
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::copy(&sshd.known_hosts, &known_hosts).unwrap();
    let dir = tmp.path().join("c");
    let r = repo(
        &sshd.url(&origin.bare),
        &dir,
        &ssh_extra(&sshd, &known_hosts),
    );
    sync(&r).result.unwrap();
    for i in 0..3 {
        let new = origin.commit("f", &format!("{i}\n"));
        assert_eq!(sync(&r).result.unwrap().new, new);
    }
    assert_eq!(sshd.logins(), 1, "one session for 4 syncs:\n{}", sshd.log());

    // The server drops the idle session: the next sync reconnects, in its first attempt.
    assert!(sshd.kill_sessions() >= 1);
    let new = origin.commit("f", "after a drop\n");
    let o = sync(&r);
    assert_eq!((o.result.unwrap().new, o.attempts), (new, 1));
    assert_eq!(sshd.logins(), 2, "{}", sshd.log());

    // known_hosts changes (as on a reload): the session made under the old file is closed and
    // a new one checks the host key again.
    let mut text = std::fs::read_to_string(&known_hosts).unwrap();
    text.push_str("# reviewed\n");
    std::fs::write(&known_hosts, text).unwrap();
    let new = origin.commit("f", "after a known_hosts change\n");
    assert_eq!(sync(&r).result.unwrap().new, new);
    assert_eq!(sshd.logins(), 3, "{}", sshd.log());
    assert!(
        wait_until(Duration::from_secs(10), || sshd.client_disconnects() >= 1),
        "the old session was closed by hookmirror:\n{}",
        sshd.log()
    );
    // An unknown host key is still refused on a new session, with its fingerprint.
    let r = repo(
        &sshd.url(&origin.bare),
        &tmp.path().join("u"),
        &ssh_extra(&sshd, &sshd.empty_known_hosts),
    );
    let e = sync(&r).result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::HostKey, "{e:?}");
    assert!(e.message.contains("SHA256:"), "{}", e.message);
}

#[test]
fn eight_repos_of_one_host_sync_at_once_over_reused_connections() {
    let s = HttpsOrigin::start(Origin::new());
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut repos = Vec::new();
    for i in 0..8 {
        repos.push(repo(
            &s.nginx.url("origin.git"),
            &tmp.path().join(format!("h{i}")),
            &s.auth(TOKEN),
        ));
        repos.push(repo(
            &sshd.url(&s.origin.bare),
            &tmp.path().join(format!("s{i}")),
            &ssh_extra(&sshd, &sshd.known_hosts),
        ));
    }
    let round = |want: &str| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = repos.iter().map(|r| scope.spawn(move || sync(r))).collect();
            for h in handles {
                let o = h.join().unwrap();
                assert_eq!(o.result.as_ref().unwrap().new, want, "{o:?}");
            }
        });
    };
    round(&s.origin.head("main"));
    for i in 0..2 {
        let new = s.origin.commit("f", &format!("round {i}\n"));
        round(&new);
    }
    // 24 syncs per transport, at most 8 at a time: no more connections than syncs at once
    // (how many were needed depends on how the threads overlapped), every one reused.
    let (requests, conns, logins) = (s.nginx.requests(), s.nginx.connections(), sshd.logins());
    assert!(requests >= 48, "{}", s.nginx.access_log());
    assert!(conns <= 8, "{conns} connections:\n{}", s.nginx.access_log());
    assert!(logins <= 8, "{logins} logins:\n{}", sshd.log());
}

#[test]
fn transport_libgit2_keeps_libgit2s_own_ssh_transport() {
    let sshd = Sshd::start();
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let extra = format!(
        "    transport: libgit2\n{}",
        ssh_extra(&sshd, &sshd.known_hosts)
    );
    let r = repo(&sshd.url(&origin.bare), &tmp.path().join("c"), &extra);
    sync(&r).result.unwrap();
    let new = origin.commit("f", "x\n");
    assert_eq!(sync(&r).result.unwrap().new, new);
    // libgit2 logs in for every fetch.
    assert_eq!(sshd.logins(), 2, "{}", sshd.log());
    let r = repo(
        &sshd.url(&origin.bare),
        &tmp.path().join("u"),
        &format!(
            "    transport: libgit2\n{}",
            ssh_extra(&sshd, &sshd.other_known_hosts)
        ),
    );
    let e = sync(&r).result.unwrap_err();
    assert!(e.message.contains("HOST KEY CHANGED"), "{e:?}");
}

#[test]
fn transport_libgit2_keeps_libgit2s_own_http_transport() {
    let origin = Origin::new();
    let http = GitHttp::start(origin.root.path(), "bot", TOKEN);
    let tmp = tempfile::tempdir().unwrap();
    let auth = format!("    auth:\n      username: bot\n      token: {TOKEN}\n");
    // hookmirror's sends the login with every request: never a 401.
    let r = repo(&http.url("origin.git"), &tmp.path().join("own"), &auth);
    assert_eq!(sync(&r).result.unwrap().new, origin.head("main"));
    assert_eq!(http.unauthorized_requests(), 0);
    // libgit2's asks first and is told to log in.
    let extra = format!("    transport: libgit2\n{auth}");
    let r = repo(&http.url("origin.git"), &tmp.path().join("libgit2"), &extra);
    assert_eq!(sync(&r).result.unwrap().new, origin.head("main"));
    assert!(http.unauthorized_requests() >= 1);
}

#[test]
fn ssh_idle_sessions_are_closed_after_the_idle_timeout_which_hot_reloads() {
    let sshd = Sshd::start();
    let origin = Origin::new();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = repo_yaml(
        "site",
        &sshd.url(&origin.bare),
        &tmp.path().join("site"),
        &format!(
            "    insecure_no_secret: true\n    branch: main\n{}",
            ssh_extra(&sshd, &sshd.known_hosts)
        ),
    );
    let body = |idle: &str| {
        support::daemon::config_text(
            &format!("ssh:\n  idle_timeout: {idle}\n"),
            std::slice::from_ref(&yaml),
        )
    };
    let d = Daemon::builder().config(&body("1h")).start();
    d.wait_head("site", &tmp.path().join("site"), &origin.head("main"));
    // Kept while the timeout is an hour…
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sshd.client_disconnects(), 0, "{}", sshd.log());
    // …and closed within a second or so of a reload that shortens it.
    d.replace_config(&body("1s"));
    d.wait_reloads(1);
    assert!(
        wait_until(Duration::from_secs(20), || sshd.client_disconnects() >= 1),
        "the idle session was closed:\n{}",
        sshd.log()
    );
    assert!(sshd.log().contains("idle"), "{}", sshd.log());
    assert_eq!(sshd.logins(), 1, "{}", sshd.log());
    d.assert_clean_logs(&[&sshd.passphrase]);
}

/// A server on 127.0.0.1 that reads a request and then either stays silent or trickles an
/// answer a byte at a time: hookmirror's HTTP transport gives up after one stall window, with
/// a timeout (not a generic network error).
#[test]
fn a_silent_or_trickling_http_server_is_a_stall_timeout() {
    use hookmirror::sync::transport::{FetchContext, Limits, scope, take_failure};
    use std::io::{Read, Write};
    hookmirror::sync::init_libgit2();
    for trickle in [false, true] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Detached: it outlives the assertions (10 s of silence or trickle) and ends by itself.
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            if trickle {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nContent-Length: 1000\r\n\r\n",
                );
                // A pkt-line a byte at a time: libgit2 keeps reading until it is whole.
                for b in b"001e# service=git-upload-pack\n0000"
                    .iter()
                    .cycle()
                    .take(200)
                {
                    if conn.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            } else {
                std::thread::sleep(Duration::from_secs(10));
            }
        });
        let url = format!("http://127.0.0.1:{port}/r.git");
        let tmp = tempfile::tempdir().unwrap();
        let ctx = FetchContext {
            repo: repo(&url, &tmp.path().join("c"), ""),
            limits: Limits::starting_now(Duration::from_secs(60), Duration::from_millis(400)),
        };
        let started = std::time::Instant::now();
        let e = scope(ctx, || {
            let mut remote = git2::Remote::create_detached(format!("hm-{url}").as_str())?;
            remote.connect(git2::Direction::Fetch)
        })
        .unwrap_err();
        let e = take_failure(&e).unwrap_or(e);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{trickle}: {:?} {e}",
            started.elapsed()
        );
        assert_eq!(e.code(), git2::ErrorCode::Timeout, "{trickle}: {e}");
        assert!(
            e.message().contains("stalled") || e.message().contains("timed out"),
            "{trickle}: {e}"
        );
    }
}
