//! Hostile input against the real `hookmirror serve`: every case gets a clear 4xx (or a 2xx
//! "ignored" where a forge must not be told off), the daemon does not panic, and no git work
//! happens — proven with the status API (`syncs` and `last_attempt` unchanged) and the checkout's
//! HEAD — while a correctly signed control delivery afterwards still syncs.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::*;
use support::forge::*;
use support::{git, rev_parse, try_git};

/// What must not change when no git work is done.
#[derive(Debug, PartialEq)]
struct Untouched {
    syncs: Value,
    fetches: Value,
    last_attempt: Value,
    commit: Value,
    head: Option<String>,
}

fn untouched(server: &Daemon, name: &str, dir: &Path) -> Untouched {
    let s = server.wait_idle(name);
    Untouched {
        syncs: s["syncs"].clone(),
        fetches: s["fetches"].clone(),
        last_attempt: s["last_attempt"].clone(),
        commit: s["commit"].clone(),
        head: rev_parse(dir, "HEAD"),
    }
}

#[track_caller]
fn assert_untouched(server: &Daemon, name: &str, dir: &Path, before: &Untouched) {
    // Anything queued would have started by now.
    std::thread::sleep(Duration::from_millis(150));
    let now = untouched(server, name, dir);
    assert_eq!(&now, before, "{name}: git work happened\n{}", server.logs());
}

/// The keys of a repo following `main` with `secret`, `extra` more.
fn keys(secret: &str, extra: &str) -> String {
    format!("    branch: main\n    secret: '{secret}'\n{extra}")
}

/// A remote over `git://` and repo `site` following its `main` with `secret`, `top` more
/// top-level keys; first sync done.
fn site(top: &str, secret: &str) -> Mirror {
    Mirror::on(Remote::new())
        .keys(&keys(secret, ""))
        .daemon(Daemon::builder().top(top))
        .start()
}

/// Sends `d` to `path` and asserts the status; returns the JSON body.
#[track_caller]
fn expect(server: &Daemon, path: &str, what: &str, d: &Delivery, status: u16) -> Value {
    let r = server.deliver(path, d);
    assert_eq!(r.status, status, "{what}: {}", r.text);
    r.json()
}

/// A correctly signed GitHub push of `c1..c2` must still sync: the refusals were not a fluke.
#[track_caller]
fn control(
    server: &Daemon,
    remote: &Remote,
    name: &str,
    dir: &Path,
    secret: &str,
    c1: &str,
    c2: &str,
) {
    let (id, d) = github_main_push(secret, &remote.forms(), c1, c2);
    let v = expect(server, &format!("/hooks/{name}"), "control", &d, 202);
    assert_eq!(v, json!({"queued": [name], "delivery": id}));
    server.wait_head(name, dir, c2);
}

#[test]
fn bad_missing_empty_truncated_and_wrong_algorithm_signatures_get_401() {
    let (secret, gl_secret) = ("site-secret-8c1d44", "gitlab-secret-0e7b21");
    let remote = Remote::new();
    let url = remote.url();
    let mirror = Mirror::on(remote).keys(&keys(secret, ""));
    let gl = mirror.work().join("gl");
    let gl_yaml = repo_yaml("gl", &url, &gl, &keys(gl_secret, "    provider: gitlab\n"));
    let m = mirror.daemon(Daemon::builder().repo(gl_yaml)).start();
    let (server, remote, site) = (&m.daemon, &m.remote, &m.dir);
    server.wait_syncs("gl", 1);
    let before_site = untouched(server, "site", site);
    let before_gl = untouched(server, "gl", &gl);
    let c1 = remote.head();
    let c2 = remote.advance("would be synced");
    let body = bytes(&github_push(&remote.forms(), "refs/heads/main", &c1, &c2));
    let good = github(secret, "push", &new_id(), body.clone());
    let hex = hmac_sha256_hex(secret, &body);
    let sig = |v: String| {
        good.clone()
            .without("X-Hub-Signature")
            .set("X-Hub-Signature-256", &v)
    };
    let mut flipped_body = body.clone();
    let at = flipped_body.len() / 2;
    flipped_body[at] ^= 0x01;

    let cases: Vec<(&str, Delivery)> = vec![
        (
            "no signature",
            good.clone()
                .without("X-Hub-Signature")
                .without("X-Hub-Signature-256"),
        ),
        ("empty sha256=", sig("sha256=".into())),
        ("no prefix", sig(hex.clone())),
        ("prefix only, no =", sig("sha256".into())),
        (
            "truncated by one digit",
            sig(format!("sha256={}", &hex[..63])),
        ),
        (
            "truncated by one byte",
            sig(format!("sha256={}", &hex[..62])),
        ),
        ("one byte too long", sig(format!("sha256={hex}00"))),
        (
            "uppercase hex",
            sig(format!("sha256={}", hex.to_ascii_uppercase())),
        ),
        (
            "one digit flipped",
            sig(format!(
                "sha256={}{}",
                &hex[..10],
                if &hex[10..11] == "0" { "1" } else { "0" }
            ) + &hex[11..]),
        ),
        ("wrong algorithm name", sig(format!("sha1={hex}"))),
        ("sha512 label", sig(format!("sha512={hex}"))),
        (
            "SHA-1 MAC in the SHA-256 header",
            sig(format!("sha1={}", hmac_sha1_hex(secret, &body))),
        ),
        (
            "valid SHA-1 only, repo does not allow it",
            good.clone().without("X-Hub-Signature-256"),
        ),
        (
            "signed with another secret",
            github("another-secret", "push", &new_id(), body.clone()),
        ),
        (
            "signed with another repo's secret",
            github(gl_secret, "push", &new_id(), body.clone()),
        ),
        (
            "body changed by one byte",
            good.clone().with_body(flipped_body.clone()),
        ),
        (
            "body with a trailing newline",
            good.clone().with_body([body.as_slice(), b"\n"].concat()),
        ),
        ("empty body", good.clone().with_body(Vec::new())),
        (
            "a GitLab token that is not the secret",
            gitlab_token("nope", "Push Hook", &new_id(), body.clone()),
        ),
        (
            "no forge headers at all",
            Delivery {
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.clone(),
            },
        ),
    ];
    for (what, d) in &cases {
        let v = expect(server, "/hooks/site", what, d, 401);
        assert_eq!(
            v,
            json!({"error": "signature missing or invalid"}),
            "{what}"
        );
    }
    // A GitHub signature (made with the right secret!) sent to a repo pinned to GitLab.
    let v = expect(
        server,
        "/hooks/gl",
        "GitHub to GitLab",
        &github(gl_secret, "push", &new_id(), body.clone()),
        401,
    );
    assert_eq!(v["error"], "signature missing or invalid");
    // The same with a wrong X-Gitlab-Token added.
    let d = github(gl_secret, "push", &new_id(), body.clone()).set("X-Gitlab-Token", "wrong");
    expect(server, "/hooks/gl", "wrong token", &d, 401);

    // A signature header that is not visible ASCII, over a raw socket.
    let mut s = connect(server.port);
    let d = good
        .clone()
        .without("X-Hub-Signature")
        .without("X-Hub-Signature-256");
    let mut req = post_head(
        "/hooks/site",
        &d,
        &format!("Content-Length: {}\r\n", body.len()),
    )
    .into_bytes();
    let at = req.len() - 2;
    req.splice(
        at..at,
        b"X-Hub-Signature-256: sha256=\xff\xfe\r\n".iter().copied(),
    );
    req.extend_from_slice(&body);
    assert!(write_lossy(&mut s, &req));
    match read_reply(&mut s, Duration::from_secs(10)) {
        RawReply::Answer(401, _) => {}
        other => panic!("non-ASCII signature: {other:?}"),
    }

    assert_untouched(server, "site", site, &before_site);
    assert_untouched(server, "gl", &gl, &before_gl);
    assert_eq!(before_site.head.as_deref(), Some(c1.as_str()));
    let refused = server.logs().matches("webhook refused").count();
    assert!(refused >= cases.len(), "each refusal is logged ({refused})");
    control(server, remote, "site", site, secret, &c1, &c2);
    server.assert_clean_logs(&[secret, gl_secret, &hex]);
}

#[test]
fn bodies_over_the_limit_get_413_whether_announced_or_chunked() {
    let secret = "limit-secret-2b9f0c";
    let m = site("limits: {max_body: 64KiB}\n", secret);
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let before = untouched(server, "site", dir);
    let c1 = remote.head();
    let c2 = remote.advance("big");

    // A push padded with whitespace to 70 000 bytes, correctly signed.
    let push = bytes(&github_push(&remote.forms(), "refs/heads/main", &c1, &c2));
    let pad = |len: usize| {
        let mut b = push.clone();
        b.resize(len, b' ');
        b
    };
    let big = pad(70_000);
    let d = github(secret, "push", &new_id(), big.clone());

    // Announced by Content-Length: refused before the body is read.
    let mut s = connect(server.port);
    let head = post_head(
        "/hooks/site",
        &d,
        &format!("Content-Length: {}\r\n", big.len()),
    );
    assert!(write_lossy(&mut s, head.as_bytes()));
    write_lossy(&mut s, &big[..1000]);
    let t = Instant::now();
    match read_reply(&mut s, Duration::from_secs(10)) {
        RawReply::Answer(413, body) => assert!(body.contains("too large"), "{body}"),
        other => panic!("announced oversize body: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answered without waiting for the body"
    );

    // Chunked, no Content-Length: refused once 64 KiB have arrived.
    let chunked = |body: &[u8]| {
        let mut out = Vec::new();
        for chunk in body.chunks(8192) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let mut s = connect(server.port);
    let head = post_head("/hooks/site", &d, "Transfer-Encoding: chunked\r\n");
    assert!(write_lossy(&mut s, head.as_bytes()));
    write_lossy(&mut s, &chunked(&big));
    match read_reply(&mut s, Duration::from_secs(10)) {
        RawReply::Answer(413, body) => assert!(body.contains("too large"), "{body}"),
        other => panic!("chunked oversize body: {other:?}"),
    }
    // A lying Content-Length (larger than the limit, body short) is refused the same way.
    let d_small = github(secret, "push", &new_id(), push.clone());
    let mut s = connect(server.port);
    let head = post_head(
        "/hooks/site",
        &d_small,
        &format!("Content-Length: {}\r\n", 10 * 1024 * 1024),
    );
    assert!(write_lossy(&mut s, head.as_bytes()));
    write_lossy(&mut s, &push);
    assert!(matches!(
        read_reply(&mut s, Duration::from_secs(10)),
        RawReply::Answer(413, _)
    ));

    assert_untouched(server, "site", dir, &before);

    // Just under the limit, chunked and correctly signed: accepted.
    let ok = pad(60 * 1024);
    let id = new_id();
    let d = github(secret, "push", &id, ok.clone());
    let mut s = connect(server.port);
    let head = post_head("/hooks/site", &d, "Transfer-Encoding: chunked\r\n");
    assert!(write_lossy(&mut s, head.as_bytes()));
    assert!(write_lossy(&mut s, &chunked(&ok)));
    match read_reply(&mut s, Duration::from_secs(10)) {
        RawReply::Answer(202, body) => assert!(body.contains(&id), "{body}"),
        other => panic!("chunked body under the limit: {other:?}"),
    }
    server.wait_head("site", dir, &c2);
    server.assert_clean_logs(&[secret]);
}

#[test]
fn slow_senders_are_cut_off_while_the_daemon_serves_others() {
    let secret = "slow-secret-5d0a7e";
    let m = site("limits: {header_timeout: 1s, body_timeout: 2s}\n", secret);
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let before = untouched(server, "site", dir);
    let c1 = remote.head();
    let c2 = remote.advance("served meanwhile");
    let push = bytes(&github_push(&remote.forms(), "refs/heads/main", &c1, &c2));
    let port = server.port;

    /// How a slow connection ended, and when (since it opened).
    fn outcome(mut s: TcpStream, t0: Instant) -> (RawReply, Duration) {
        let r = read_reply(&mut s, Duration::from_secs(12));
        (r, t0.elapsed())
    }

    let d = github(secret, "push", &new_id(), push.clone());
    let results = std::thread::scope(|scope| {
        // 1. Connects and sends nothing.
        let idle = scope.spawn(move || {
            let t0 = Instant::now();
            outcome(connect(port), t0)
        });
        // 2. Sends half of its headers, then stalls.
        let partial = scope.spawn(|| {
            let t0 = Instant::now();
            let mut s = connect(port);
            write_lossy(
                &mut s,
                b"POST /hooks/site HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: pu",
            );
            outcome(s, t0)
        });
        // 3. Trickles its headers one byte every 100 ms (the whole head would take ~9 s).
        let trickle = scope.spawn(|| {
            let t0 = Instant::now();
            let s = connect(port);
            let mut w = s.try_clone().unwrap();
            let head = post_head(
                "/hooks/site",
                &d,
                &format!("Content-Length: {}\r\n", push.len()),
            );
            let head = head.as_bytes()[..90].to_vec();
            let writer = std::thread::spawn(move || {
                for b in head {
                    if !write_lossy(&mut w, &[b]) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let r = outcome(s, t0);
            let _ = writer.join();
            r
        });
        // 4. Complete headers, a tenth of the announced body, then stalls.
        let body_stall = scope.spawn(|| {
            let t0 = Instant::now();
            let mut s = connect(port);
            let head = post_head(
                "/hooks/site",
                &d,
                &format!("Content-Length: {}\r\n", push.len()),
            );
            write_lossy(&mut s, head.as_bytes());
            write_lossy(&mut s, &push[..push.len() / 10]);
            outcome(s, t0)
        });
        // 5. Complete headers, then the body one byte every 100 ms: below the minimum rate.
        let body_trickle = scope.spawn(|| {
            let t0 = Instant::now();
            let s = connect(port);
            let mut w = s.try_clone().unwrap();
            let head = post_head(
                "/hooks/site",
                &d,
                &format!("Content-Length: {}\r\n", push.len()),
            );
            let body = push.clone();
            let writer = std::thread::spawn(move || {
                write_lossy(&mut w, head.as_bytes());
                for b in body.into_iter().take(60) {
                    if !write_lossy(&mut w, &[b]) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let r = outcome(s, t0);
            let _ = writer.join();
            r
        });
        // 6. Ten more stalled connections at once.
        let crowd: Vec<_> = (0..10)
            .map(|_| {
                scope.spawn(move || {
                    let t0 = Instant::now();
                    let mut s = connect(port);
                    write_lossy(&mut s, b"GET /healthz HTTP/1.1\r\n");
                    outcome(s, t0)
                })
            })
            .collect();

        // Meanwhile the daemon answers others at once, and syncs.
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        assert_eq!(server.get("/healthz").status, 200);
        let id = new_id();
        let r = server.deliver("/hooks/site", &github(secret, "push", &id, push.clone()));
        assert_eq!(r.status, 202, "{}", r.text);
        assert!(
            t.elapsed() < Duration::from_millis(900),
            "served promptly: {:?}",
            t.elapsed()
        );
        server.wait_head("site", dir, &c2);

        let mut all = vec![
            ("idle", idle.join().unwrap()),
            ("partial headers", partial.join().unwrap()),
            ("trickled headers", trickle.join().unwrap()),
            ("stalled body", body_stall.join().unwrap()),
            ("trickled body", body_trickle.join().unwrap()),
        ];
        for c in crowd {
            all.push(("crowd", c.join().unwrap()));
        }
        all
    });
    for (what, (reply, after)) in &results {
        eprintln!("{what}: {reply:?} after {after:?}");
        if what.ends_with("body") {
            assert!(
                matches!(reply, RawReply::Answer(408, _)),
                "{what}: {reply:?}"
            );
            // The stalled body owes its next byte at 1 s (the grace) + 760 B at 1 KiB/s; the
            // trickle (10 B/s) falls behind the minimum rate once the grace is over.
            let earliest = if *what == "stalled body" { 1500 } else { 900 };
            assert!(
                *after >= Duration::from_millis(earliest) && *after < Duration::from_secs(5),
                "{what}: answered after {after:?} (min_body_rate 1KiB/s after 1 s, body_timeout 2 s)"
            );
        } else {
            assert!(matches!(reply, RawReply::Closed(_)), "{what}: {reply:?}");
            assert!(
                *after >= Duration::from_millis(700) && *after < Duration::from_millis(3500),
                "{what}: cut off after {after:?} (header_timeout 1 s)"
            );
        }
    }
    let now = untouched(server, "site", dir);
    assert_eq!(
        now.syncs.as_u64(),
        before.syncs.as_u64().map(|n| n + 1),
        "only the well-behaved delivery synced"
    );
    server.assert_clean_logs(&[secret]);
}

#[test]
fn authentic_but_broken_payloads_and_bad_refnames_get_400() {
    let secret = "broken-secret-11f3a9";
    let m = site("", secret);
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let before = untouched(server, "site", dir);
    let c1 = remote.head();
    let c2 = remote.advance("never synced by a broken payload");
    let forms = remote.forms();
    let push = github_push(&forms, "refs/heads/main", &c1, &c2);
    let with = |key: &str, value: Value| {
        let mut v = push.clone();
        v[key] = value;
        bytes(&v)
    };
    let deep_array = format!(
        r#"{{"ref": "refs/heads/main", "x": {}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000));

    let gh = |body: Vec<u8>| github(secret, "push", &new_id(), body);
    let cases: Vec<(&str, Delivery, &str)> = vec![
        (
            "not JSON",
            gh(b"this is not json".to_vec()),
            "body is not valid JSON",
        ),
        (
            "truncated JSON",
            gh(bytes(&push)[..200].to_vec()),
            "body is not valid JSON",
        ),
        (
            "not an object",
            gh(b"[1, 2, 3]".to_vec()),
            "payload is not a JSON object",
        ),
        (
            "repository: null",
            gh(with("repository", Value::Null)),
            "missing or invalid field `repository`",
        ),
        (
            "no repository",
            gh({
                let mut v = push.clone();
                v.as_object_mut().unwrap().remove("repository");
                bytes(&v)
            }),
            "missing or invalid field `repository`",
        ),
        (
            "numeric ref",
            gh(with("ref", json!(42))),
            "missing or invalid field `ref`",
        ),
        (
            "null ref",
            gh(with("ref", Value::Null)),
            "missing or invalid field `ref`",
        ),
        (
            "numeric after",
            gh(with("after", json!(12345))),
            "`after` is not a commit id",
        ),
        (
            "after not hex",
            gh(with("after", json!("--upload-pack=touch /tmp/x"))),
            "`after` is not a commit id",
        ),
        (
            "deleted not a bool",
            gh(with("deleted", json!("yes"))),
            "missing or invalid field `deleted`",
        ),
        // Nesting under keys no parser reads is skipped without recursion (and without being
        // built), so these are refused for what they lack; nesting inside a field that is read
        // hits serde_json's recursion limit (next case).
        (
            "deeply nested arrays",
            gh(deep_array.into_bytes()),
            "missing or invalid field `repository`",
        ),
        (
            "deeply nested objects",
            gh(deep_object.clone().into_bytes()),
            "missing or invalid field `ref`",
        ),
        (
            "deeply nested repository",
            gh(format!(
                r#"{{"ref": "refs/heads/main", "repository": {}{}}}"#,
                "[".repeat(50_000),
                "]".repeat(50_000)
            )
            .into_bytes()),
            // Valid JSON, only deep: skipped without recursion, then refused as not an object.
            "missing or invalid field `repository`",
        ),
        (
            "deeply nested inside repository",
            gh(format!(
                r#"{{"ref": "refs/heads/main", "repository": {{"links": {}1{}}}}}"#,
                r#"{"a":"#.repeat(50_000),
                "}".repeat(50_000)
            )
            .into_bytes()),
            // A kept field is built as a value, under serde_json's recursion limit.
            "body is not valid JSON",
        ),
        (
            "form body without payload",
            github_typed(
                secret,
                "push",
                &new_id(),
                b"other=1".to_vec(),
                "application/x-www-form-urlencoded",
            ),
            "missing or invalid field `payload`",
        ),
        (
            "GitLab, deeply nested",
            gitlab_token(
                secret,
                "Push Hook",
                &new_id(),
                deep_object.clone().into_bytes(),
            ),
            "missing or invalid field `ref`",
        ),
        (
            "GitLab, project: null",
            gitlab_token(secret, "Push Hook", &new_id(), {
                let mut v = gitlab_push(&forms, "refs/heads/main", &c1, &c2);
                v["project"] = Value::Null;
                bytes(&v)
            }),
            "missing or invalid field `project`",
        ),
    ];
    let bad_refs = [
        "--upload-pack=touch /tmp/hookmirror-pwned",
        "refs/heads/../x",
        "refs/heads/ma\u{0}in",
        "refs/heads/ma\nin",
        "refs/heads/main.lock",
        "refs/heads/main lock",
        "refs/heads/",
        "main",
        "",
    ];
    for (what, d, error) in &cases {
        let v = expect(server, "/hooks/site", what, d, 400);
        assert_eq!(v, json!({"error": error}), "{what}");
    }
    for bad in bad_refs {
        let what = format!("ref {bad:?}");
        let v = expect(
            server,
            "/hooks/site",
            &what,
            &gh(with("ref", json!(bad))),
            400,
        );
        assert_eq!(
            v,
            json!({"error": "`ref` is not a valid git ref"}),
            "{what}"
        );
        // The same through other forges' field layouts.
        let gl = gitlab_push(&forms, bad, &c1, &c2);
        expect(
            server,
            "/hooks/site",
            &what,
            &gitlab_token(secret, "Push Hook", &new_id(), bytes(&gl)),
            400,
        );
        let dc = bitbucket_dc_changed(&forms, bad, &c1, &c2);
        expect(
            server,
            "/hooks/site",
            &what,
            &bitbucket_dc(secret, "repo:refs_changed", &new_id(), bytes(&dc)),
            400,
        );
        let std_body =
            bytes(&json!({"type": "git.push", "data": github_push(&forms, bad, &c1, &c2)}));
        expect(
            server,
            "/hooks/site",
            &what,
            &standard(secret, &new_id(), unix_now(), std_body),
            400,
        );
    }
    // A Bitbucket Cloud branch *name* that makes a bad ref.
    for name in ["../x", "a..b", "x.lock", "-x\n"] {
        let v = bitbucket_cloud_push(&forms, name, &c1, &c2);
        expect(
            server,
            "/hooks/site",
            name,
            &bitbucket_cloud(secret, "repo:push", &new_id(), bytes(&v)),
            400,
        );
    }
    assert_eq!(server.get("/healthz").status, 200, "still alive");
    assert!(!Path::new("/tmp/hookmirror-pwned").exists());
    assert_untouched(server, "site", dir, &before);
    control(server, remote, "site", dir, secret, &c1, &c2);
    server.assert_clean_logs(&[secret]);
}

#[test]
fn payloads_naming_other_repositories_are_ignored_and_never_fetched_from() {
    let secret = "urls-secret-6e2d90";
    let remote = Remote::new();
    // Another repository next to origin.git, served by the same git daemon, with its own history.
    let evil = remote.origin.root.path().join("evil.git");
    git(
        remote.origin.root.path(),
        &["init", "-q", "--bare", "-b", "main", "evil.git"],
    );
    let tree = git(&evil, &["mktree"]);
    let evil_commit = git(&evil, &["commit-tree", &tree, "-m", "evil"]);
    git(&evil, &["update-ref", "refs/heads/main", &evil_commit]);
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("ext-ran");
    let m = Mirror::on(remote).keys(&keys(secret, "")).start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let before = untouched(server, "site", dir);
    let c1 = remote.head();

    let ext = format!("ext::sh -c touch% {}", marker.display());
    let others = [
        "https://github.com/attacker/site.git".to_string(),
        "git@evil.example:origin.git".to_string(),
        format!("file://{}", evil.display()),
        evil.display().to_string(),
        remote.git_url("evil.git"),
        ext.clone(),
        "fd::17".to_string(),
    ];
    for other in &others {
        for after in [evil_commit.as_str(), c1.as_str()] {
            let body = bytes(&github_push(
                &UrlForms::all(other),
                "refs/heads/main",
                &c1,
                after,
            ));
            let d = github(secret, "push", &new_id(), body);
            let v = expect(server, "/hooks/site", other, &d, 200);
            assert_eq!(
                v,
                json!({"ignored": "the payload names another repository"}),
                "{other}"
            );
        }
        let body = bytes(&gitlab_push_from(
            GITLAB_PUSH,
            &UrlForms::all(other),
            "refs/heads/main",
            &c1,
            &evil_commit,
        ));
        let v = expect(
            server,
            "/hooks/site",
            other,
            &gitlab_token(secret, "Push Hook", &new_id(), body),
            200,
        );
        assert!(v["ignored"].is_string(), "{v}");
    }
    assert_untouched(server, "site", dir, &before);
    assert!(
        !try_git(dir, &["cat-file", "-e", &evil_commit])
            .status
            .success(),
        "the evil commit never reached the checkout"
    );

    // A payload naming this repository *and* hostile URLs is accepted, but git still talks only
    // to the configured remote.
    let c2 = remote.advance("the real push");
    let mut forms = remote.forms();
    forms.scp = ext.clone();
    forms.git = format!("file://{}", evil.display());
    let (id, d) = github_main_push(secret, &forms, &c1, &c2);
    let v = expect(server, "/hooks/site", "mixed", &d, 202);
    assert_eq!(v, json!({"queued": ["site"], "delivery": id}));
    server.wait_head("site", dir, &c2);
    assert!(!marker.exists(), "ext:: was never run");
    assert!(
        !try_git(dir, &["cat-file", "-e", &evil_commit])
            .status
            .success()
    );
    assert_eq!(git(dir, &["remote", "get-url", "origin"]), remote.url());
    server.assert_clean_logs(&[secret]);
}

#[test]
fn replays_unknown_paths_methods_other_events_branches_and_deletions() {
    let secret = "misc-secret-3a7c55";
    let remote = Remote::new();
    let preview_c = remote.origin.commit_on("preview", "p.txt", "preview\n");
    remote.origin.checkout("main");
    let url = remote.url();
    let mirror = Mirror::on(remote).keys(&keys(secret, ""));
    let preview_dir = mirror.work().join("preview");
    let preview_yaml = repo_yaml(
        "preview",
        &url,
        &preview_dir,
        &format!(
            "    branch: preview\n    provider: gitlab\n    secret: {secret}\n    path: /deploy/preview\n"
        ),
    );
    let m = mirror.daemon(Daemon::builder().repo(preview_yaml)).start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let p = server.wait_syncs("preview", 1);
    assert_eq!(p["commit"], preview_c.as_str());
    let forms = remote.forms();
    let c1 = remote.head();

    // Paths and methods.
    for path in [
        "/",
        "/hooks/nope",
        "/hooks/site/extra",
        "/hooks/preview",
        "/api",
        "/HOOKS/site",
    ] {
        let r = server.deliver(path, &github(secret, "push", &new_id(), b"{}".to_vec()));
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.json(), json!({"error": "not found"}));
    }
    for path in ["/hooks/site", "/deploy/preview", "/hooks"] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let r = server.send(server.client().request(method.clone(), server.url(path)));
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
            assert_eq!(r.headers.get("allow").unwrap(), "POST");
        }
    }

    let before = untouched(server, "site", dir);
    let before_preview = untouched(server, "preview", &preview_dir);
    // Other events.
    let issues = github(
        secret,
        "issues",
        &new_id(),
        GITHUB_ISSUES.as_bytes().to_vec(),
    );
    let v = expect(server, "/hooks/site", "issues", &issues, 200);
    assert_eq!(v, json!({"ignored": "event issues is not handled"}));
    let mr = gitlab_token(
        secret,
        "Merge Request Hook",
        &new_id(),
        br#"{"object_kind":"merge_request"}"#.to_vec(),
    );
    let v = expect(server, "/hooks/site", "merge request", &mr, 200);
    assert_eq!(
        v,
        json!({"ignored": "event Merge Request Hook is not handled"})
    );
    // Other branches and tags.
    let feature = remote.origin.commit_on("feature", "f.txt", "feature\n");
    remote.origin.checkout("main");
    let body = bytes(&github_push(&forms, "refs/heads/feature", ZEROS, &feature));
    let v = expect(
        server,
        "/hooks/site",
        "other branch",
        &github(secret, "push", &new_id(), body),
        200,
    );
    assert_eq!(
        v,
        json!({"ignored": "refs/heads/feature is not the tracked branch main"})
    );
    let body = bytes(&github_push_tag(&forms, "refs/tags/v1", &c1));
    let v = expect(
        server,
        "/hooks/site",
        "tag",
        &github(secret, "push", &new_id(), body),
        200,
    );
    assert_eq!(
        v,
        json!({"ignored": "refs/tags/v1 is not the tracked branch main"})
    );
    // Tracked branch deleted upstream (GitLab's system hook fixture is exactly that): kept.
    remote.origin.delete_branch("preview");
    let body = bytes(&gitlab_push_from(
        GITLAB_SYSTEM_PUSH,
        &forms,
        "refs/heads/preview",
        &preview_c,
        ZEROS,
    ));
    let v = expect(
        server,
        "/deploy/preview",
        "deletion",
        &gitlab_token(secret, "System Hook", &new_id(), body),
        200,
    );
    assert_eq!(
        v,
        json!({"ignored": "refs/heads/preview was deleted upstream; the checkout is kept"})
    );
    // GitHub's deletion form (`deleted: true`, after = zeros) for the tracked branch of `site`.
    let body = bytes(&github_push(&forms, "refs/heads/main", &c1, ZEROS));
    let v = expect(
        server,
        "/hooks/site",
        "github deletion",
        &github(secret, "push", &new_id(), body),
        200,
    );
    assert!(
        v["ignored"].as_str().unwrap().contains("deleted upstream"),
        "{v}"
    );
    assert_untouched(server, "site", dir, &before);
    assert_untouched(server, "preview", &preview_dir, &before_preview);
    assert_eq!(
        git(&preview_dir, &["status", "--porcelain"]),
        "",
        "the kept checkout is clean"
    );
    assert_eq!(
        std::fs::read_to_string(preview_dir.join("p.txt")).unwrap(),
        "preview\n"
    );

    // Replays: the second delivery of an id is a 200 duplicate and does nothing.
    let c2 = remote.advance("replayed");
    let (id, d) = github_main_push(secret, &forms, &c1, &c2);
    assert_eq!(
        expect(server, "/hooks/site", "first", &d, 202),
        json!({"queued": ["site"], "delivery": id})
    );
    server.wait_head("site", dir, &c2);
    let after_first = untouched(server, "site", dir);
    for _ in 0..3 {
        let v = expect(server, "/hooks/site", "replay", &d, 200);
        assert_eq!(
            v,
            json!({"duplicate": true, "delivery": id, "state": "succeeded"})
        );
    }
    assert_untouched(server, "site", dir, &after_first);
    // GitLab's Idempotency-Key is the dedupe key there.
    let c3 = remote.advance("gitlab replayed");
    let key = new_id();
    let gl = gitlab_token(
        secret,
        "Push Hook",
        &key,
        bytes(&gitlab_push(&forms, "refs/heads/main", &c2, &c3)),
    );
    expect(server, "/hooks/site", "gitlab first", &gl, 202);
    server.wait_head("site", dir, &c3);
    let v = expect(
        server,
        "/hooks/site",
        "gitlab replay",
        &gl.clone().set("X-Gitlab-Event-UUID", "another-uuid"),
        200,
    );
    assert_eq!(v["duplicate"], true);
    assert_eq!(
        server.wait_idle("site")["syncs"].as_u64(),
        after_first.syncs.as_u64().map(|n| n + 1),
        "one sync for the GitLab delivery, none for its replay"
    );
    server.assert_clean_logs(&[secret]);
}
