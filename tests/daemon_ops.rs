//! The real `hookmirror serve` in operation: delivery dedupe (and redelivery after a failed sync),
//! secret rotation, the shared `/hooks` endpoint, the HTTP API with and without a token,
//! credentials kept out of the API and the logs, graceful shutdown during a sync, and start-up
//! with and without `initialise`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::*;
use support::forge::*;
use support::{GitHttp, git, rev_parse, wait_until};

fn syncs(server: &Daemon, name: &str) -> u64 {
    server.status(name)["syncs"].as_u64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Dedupe, rotation, shared endpoint
// ---------------------------------------------------------------------------------------------

#[test]
fn a_delivery_id_is_processed_once_but_again_after_its_sync_failed() {
    let secret = "dedupe-secret-90ab1c";
    let m = Mirror::start(&format!("    branch: main\n    secret: {secret}\n"));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let forms = remote.forms();
    let c1 = remote.head();

    // The same X-GitHub-Delivery twice: the second is a 200 duplicate; one sync.
    let c2 = remote.advance("once");
    let (id, d) = github_main_push(secret, &forms, &c1, &c2);
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    let v = server.deliver("/hooks/site", &d).expect(200);
    assert_eq!(v["duplicate"], true, "{v}");
    assert_eq!(v["delivery"], id.as_str());
    assert!(v["state"] == "accepted" || v["state"] == "succeeded", "{v}");
    let s = server.wait_head("site", dir, &c2);
    assert_eq!(s["syncs"], 2, "start-up + one: {s:#}");
    let v = server.deliver("/hooks/site", &d).expect(200);
    assert_eq!(
        v,
        json!({"duplicate": true, "delivery": id, "state": "succeeded"})
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(syncs(server, "site"), 2);

    // A delivery whose sync fails (the repository is gone from the git daemon)...
    let c3 = remote.advance("after the outage");
    let bare = remote.origin.bare.clone();
    let away = remote.origin.root.path().join("renamed-away.git");
    std::fs::rename(&bare, &away).unwrap();
    let (id, d) = github_main_push(secret, &forms, &c2, &c3);
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    let s = server.wait_for("site", "a failed sync", |s| s["failures"] == 1 && idle(s));
    assert_eq!(s["syncs"], 3);
    assert!(s["last_error"]["message"].is_string(), "{s:#}");
    assert_eq!(
        rev_parse(dir, "HEAD").unwrap(),
        c2,
        "the last good tree is kept"
    );
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
    // ...is processed again when redelivered (still failing here)...
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    server.wait_for("site", "a second failed sync", |s| {
        s["failures"] == 2 && s["syncs"] == 4 && idle(s)
    });
    // ...and once the remote is back, the same id syncs.
    std::fs::rename(&away, &bare).unwrap();
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    let s = server.wait_head("site", dir, &c3);
    assert_eq!(s["syncs"], 5, "{s:#}");
    assert_eq!(s["last_error"], Value::Null);
    // Now it succeeded: a further redelivery is a duplicate.
    let v = server.deliver("/hooks/site", &d).expect(200);
    assert_eq!(
        v,
        json!({"duplicate": true, "delivery": id, "state": "succeeded"})
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(syncs(server, "site"), 5);
    server.assert_clean_logs(&[secret]);
}

#[test]
fn rotated_secrets_both_verify_and_a_third_does_not() {
    let (old, new, third) = ("rot-old-4c1f", "rot-new-77e2", "rot-third-0a9d");
    let m = Mirror::start(&format!("    branch: main\n    secrets: [{old}, {new}]\n"));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let forms = remote.forms();
    let mut before = remote.head();
    for (secret, label) in [(old, "old"), (new, "new")] {
        let after = remote.advance(label);
        let (id, d) = github_main_push(secret, &forms, &before, &after);
        server
            .deliver("/hooks/site", &d)
            .expect_queued(&["site"], &id);
        server.wait_head("site", dir, &after);
        // GitLab tokens rotate the same way.
        let id = new_id();
        let body = bytes(&gitlab_push(&forms, "refs/heads/main", &before, &after));
        let v = server
            .deliver("/hooks/site", &gitlab_token(secret, "Push Hook", &id, body))
            .expect(202);
        assert_eq!(v["queued"], json!(["site"]));
        server.wait_idle("site");
        before = after;
    }
    let n = syncs(server, "site");
    let after = remote.advance("third");
    let body = bytes(&github_push(&forms, "refs/heads/main", &before, &after));
    server
        .deliver(
            "/hooks/site",
            &github(third, "push", &new_id(), body.clone()),
        )
        .expect(401);
    server
        .deliver(
            "/hooks/site",
            &gitlab_token(third, "Push Hook", &new_id(), body),
        )
        .expect(401);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(syncs(server, "site"), n);
    assert_eq!(rev_parse(dir, "HEAD").unwrap(), before);
    server.assert_clean_logs(&[old, new, third]);
}

#[test]
fn the_shared_hooks_endpoint_routes_by_the_payloads_repository_url() {
    let (org, other_secret) = ("org-secret-5b3e", "solo-secret-e41c");
    let remote = Remote::new();
    // A second repository next to origin.git, served by the same git daemon.
    let root = remote.origin.root.path();
    git(root, &["clone", "-q", "--bare", "origin.git", "other.git"]);
    let other_bare = root.join("other.git");
    let (url, other_url) = (remote.url(), remote.git_url("other.git"));
    let mirror = Mirror::on(remote)
        .name("a")
        .keys(&format!("    branch: main\n    secret: {org}\n"));
    let (b, c) = (mirror.work().join("b"), mirror.work().join("c"));
    let others = Daemon::builder()
        .repo(repo_yaml(
            "b",
            &other_url,
            &b,
            &format!("    branch: main\n    secret: {org}\n"),
        ))
        // Follows the same repository as `a` with its own secret.
        .repo(repo_yaml(
            "c",
            &url,
            &c,
            &format!("    branch: main\n    secret: {other_secret}\n"),
        ));
    let m = mirror.daemon(others).start();
    let (server, remote, a) = (&m.daemon, &m.remote, &m.dir);
    for n in ["b", "c"] {
        server.wait_syncs(n, 1);
    }
    let a_forms = remote.forms();
    let b_forms = UrlForms::new("other.git");
    let counts = |server: &Daemon| -> Vec<u64> {
        ["a", "b", "c"].iter().map(|n| syncs(server, n)).collect()
    };

    // An organisation hook naming `a` by its https clone URL only.
    let a1 = remote.head();
    let a2 = remote.advance("a2");
    let (id, d) = github_main_push(org, &UrlForms::all(&a_forms.https), &a1, &a2);
    server.deliver("/hooks", &d).expect_queued(&["a"], &id);
    server.wait_head("a", a, &a2);
    assert_eq!(counts(server), [2, 1, 1], "only a synced");

    // `b` by its scp-like ssh URL only.
    let b1 = git(&other_bare, &["rev-parse", "refs/heads/main"]);
    let b2 = advance(&other_bare, "main", "b2");
    let (id, d) = github_main_push(org, &UrlForms::all(&b_forms.scp), &b1, &b2);
    server.deliver("/hooks/", &d).expect_queued(&["b"], &id);
    server.wait_head("b", &b, &b2);
    assert_eq!(counts(server), [2, 2, 1]);

    // `a` by its git:// URL only; a GitLab group hook for `b` (token) by its project URLs.
    let a3 = remote.advance("a3");
    let (id, d) = github_main_push(org, &UrlForms::all(&a_forms.git), &a2, &a3);
    server.deliver("/hooks", &d).expect_queued(&["a"], &id);
    server.wait_head("a", a, &a3);
    let b3 = advance(&other_bare, "main", "b3");
    let id = new_id();
    let body = bytes(&gitlab_push(&b_forms, "refs/heads/main", &b2, &b3));
    server
        .deliver("/hooks", &gitlab_token(org, "Push Hook", &id, body))
        .expect_queued(&["b"], &id);
    server.wait_head("b", &b, &b3);
    assert_eq!(counts(server), [3, 3, 1]);

    // Signed with a repository's secret but naming none that is configured: without
    // `hooks.secret` no secret is tried for it, so it cannot be told from a forgery: 401.
    let body = bytes(&github_push(
        &UrlForms::new("nothing-here.git"),
        "refs/heads/main",
        &a2,
        &a3,
    ));
    server
        .deliver("/hooks", &github(org, "push", &new_id(), body))
        .expect(401);
    // A repository's secret verifies only for the repositories that have it: `a`'s for `b`'s
    // URL does not reach `a`, and the secret of `c` (which shares `a`'s URL) does not verify
    // `b`'s URL.
    let (_, d) = github_main_push(other_secret, &b_forms, &b2, &b3);
    server.deliver("/hooks", &d).expect(401);
    // Verifies with no repository's secret: 401, nothing synced.
    let body = bytes(&github_push(&a_forms, "refs/heads/main", &a2, &a3));
    let v = server
        .deliver(
            "/hooks",
            &github("nobodys-secret", "push", &new_id(), body.clone()),
        )
        .expect(401);
    assert_eq!(v, json!({"error": "signature missing or invalid"}));
    server
        .deliver(
            "/hooks",
            &Delivery {
                headers: vec![],
                body: body.clone(),
            },
        )
        .expect(401);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counts(server), [3, 3, 1]);

    // Signed with `c`'s secret and naming the repository `a` and `c` share: only `c` syncs.
    let (id, d) = github_main_push(other_secret, &a_forms, &a1, &a3);
    server.deliver("/hooks", &d).expect_queued(&["c"], &id);
    server.wait_head("c", &c, &a3);
    assert_eq!(counts(server), [3, 3, 2]);
    server.assert_clean_logs(&[org, other_secret]);
}

#[test]
fn hooks_secret_verifies_the_shared_endpoint_once_for_every_repository() {
    let (org, own) = ("org-hooks-secret-7f20", "own-secret-33c1");
    let remote = Remote::new();
    let root = remote.origin.root.path();
    git(root, &["clone", "-q", "--bare", "origin.git", "other.git"]);
    let other_bare = root.join("other.git");
    let other_url = remote.git_url("other.git");
    let mirror = Mirror::on(remote)
        .name("a")
        .keys(&format!("    branch: main\n    secret: {own}\n"));
    let b = mirror.work().join("b");
    let others = Daemon::builder()
        .top(&format!("hooks: {{secret: {org}, provider: github}}\n"))
        .repo(repo_yaml(
            "b",
            &other_url,
            &b,
            "    branch: main\n    insecure_no_secret: true\n",
        ));
    let m = mirror.daemon(others).start();
    let (server, remote, a) = (&m.daemon, &m.remote, &m.dir);
    server.wait_syncs("b", 1);
    let counts =
        |server: &Daemon| -> Vec<u64> { ["a", "b"].iter().map(|n| syncs(server, n)).collect() };
    let b_forms = UrlForms::new("other.git");

    // Signed with the organisation's secret: reaches the repository it names, whatever that
    // repository's own secret (or none).
    let a1 = remote.head();
    let a2 = remote.advance("a2");
    let (id, d) = github_main_push(org, &remote.forms(), &a1, &a2);
    server.deliver("/hooks", &d).expect_queued(&["a"], &id);
    server.wait_head("a", a, &a2);
    let b1 = git(&other_bare, &["rev-parse", "refs/heads/main"]);
    let b2 = advance(&other_bare, "main", "b2");
    let (id, d) = github_main_push(org, &b_forms, &b1, &b2);
    server.deliver("/hooks", &d).expect_queued(&["b"], &id);
    server.wait_head("b", &b, &b2);
    assert_eq!(counts(server), [2, 2]);

    // The organisation's ping is answered; a push naming no configured repository is ignored.
    let ping = github(
        org,
        "ping",
        &new_id(),
        br#"{"zen":"Keep it logically awesome."}"#.to_vec(),
    );
    assert_eq!(
        server.deliver("/hooks", &ping).expect(200),
        json!({"ok": true, "event": "ping"})
    );
    let body = bytes(&github_push(
        &UrlForms::new("nothing-here.git"),
        "refs/heads/main",
        &a1,
        &a2,
    ));
    let v = server
        .deliver("/hooks", &github(org, "push", &new_id(), body))
        .expect(200);
    assert_eq!(
        v,
        json!({"ignored": "the payload names no configured repository"})
    );

    // With `hooks.secret` only it verifies /hooks: a repository's own secret does not, and a
    // pinned provider refuses another forge's delivery.
    let a3 = remote.advance("a3");
    let (_, d) = github_main_push(own, &remote.forms(), &a2, &a3);
    server.deliver("/hooks", &d).expect(401);
    let body = bytes(&gitlab_push(&remote.forms(), "refs/heads/main", &a2, &a3));
    server
        .deliver("/hooks", &gitlab_token(org, "Push Hook", &new_id(), body))
        .expect(401);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counts(server), [2, 2]);
    // The repository's own path still takes its own secret.
    let (id, d) = github_main_push(own, &remote.forms(), &a2, &a3);
    server.deliver("/hooks/a", &d).expect_queued(&["a"], &id);
    server.wait_head("a", a, &a3);
    server.assert_clean_logs(&[org, own]);
}

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

#[test]
fn without_an_api_token_status_is_open_and_sync_is_disabled() {
    let m = Mirror::start("    secret: s-1f2e3d\n");
    let (server, remote) = (&m.daemon, &m.remote);
    let v = server.get("/api/repos").expect(200);
    assert_eq!(v["repos"][0]["name"], "site");
    assert_eq!(v["repos"][0]["ref"], "default branch");
    assert_eq!(v["repos"][0]["remote_ref"], "refs/heads/main");
    let v = server.get("/api/repos/site").expect(200);
    assert_eq!(v["commit"], remote.head().as_str());
    server.get("/api/repos/nope").expect(404);
    for token in [None, Some("anything")] {
        let v = server.post_auth("/api/repos/site/sync", token).expect(403);
        assert!(v["error"].as_str().unwrap().contains("disabled"), "{v}");
        server
            .post_auth("/api/repos/site/sync?wait=true", token)
            .expect(403);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(syncs(server, "site"), 1);
    server.assert_clean_logs(&["s-1f2e3d"]);
}

#[test]
fn the_api_with_a_token_shows_status_and_queues_or_waits_for_syncs() {
    let token = "api-token-c0ffee-77";
    let remote = Remote::new();
    let missing = remote.git_url("missing.git");
    let mirror = Mirror::on(remote).keys("    branch: main\n    secret: api-hook-1\n");
    let broken = repo_yaml(
        "broken",
        &missing,
        &mirror.work().join("broken"),
        "    secret: api-hook-2\n",
    );
    let m = mirror
        .daemon(
            Daemon::builder()
                .top(&format!("api: {{token: {token}}}\n"))
                .token(token)
                .repo(broken),
        )
        .start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    server.wait_for("broken", "its failed start-up sync", |s| {
        s["failures"] == 1 && idle(s)
    });

    // Reads need the token.
    for path in ["/api/repos", "/api/repos/site", "/api/repos/nope"] {
        let r = server.get(path);
        assert_eq!(r.status, 401, "{path}: {}", r.text);
        assert_eq!(
            r.headers.get("www-authenticate").unwrap(),
            "Basic realm=\"hookmirror\"",
            "a browser can log in to a protected read"
        );
        server.get_auth(path, "api-token-c0ffee-78").expect(401);
        server.get_auth(path, "").expect(401);
    }
    let r = server.send(
        server
            .client()
            .get(server.url("/api/repos"))
            .basic_auth("x", Some(token)),
    );
    assert_eq!(
        r.status, 200,
        "basic auth: the token as password: {}",
        r.text
    );
    let list = server.get_auth("/api/repos", token).expect(200);
    let repos = list["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 2);
    for field in [
        "name",
        "url",
        "ref",
        "directory",
        "path",
        "state",
        "pending",
        "commit",
        "last_success",
        "last_attempt",
        "last_error",
        "last_duration_ms",
        "syncs",
        "failures",
        "fetches",
    ] {
        for r in repos {
            assert!(r.get(field).is_some(), "{field} missing in {r:#}");
        }
    }
    let site = &repos[0];
    assert_eq!(
        (&site["name"], &site["ref"], &site["state"], &site["path"]),
        (
            &json!("site"),
            &json!("branch main"),
            &json!("idle"),
            &json!("/hooks/site")
        )
    );
    assert_eq!(site["commit"], remote.head().as_str());
    assert!(site["last_success"].is_string() && site["last_attempt"].is_string());
    assert_eq!(site["last_error"], Value::Null);
    assert_eq!(
        (site["syncs"].as_u64(), site["failures"].as_u64()),
        (Some(1), Some(0))
    );
    let broken = &repos[1];
    assert_eq!(broken["commit"], Value::Null);
    assert_eq!(broken["last_success"], Value::Null);
    assert!(
        broken["last_error"]["kind"].is_string() && broken["last_error"]["message"].is_string(),
        "{broken:#}"
    );
    assert_eq!(
        server.get_auth("/api/repos/site", token).expect(200)["name"],
        "site"
    );
    server.get_auth("/api/repos/nope", token).expect(404);

    // POST sync: token required; 202 queues; unknown repo 404.
    server.post_auth("/api/repos/site/sync", None).expect(401);
    server
        .post_auth("/api/repos/site/sync", Some("nope"))
        .expect(401);
    server.post_auth("/api/repos/nope/sync", None).expect(401);
    server
        .post_auth("/api/repos/nope/sync", Some(token))
        .expect(404);
    server
        .post_auth("/api/repos/nope/sync?wait=true", Some(token))
        .expect(404);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(syncs(server, "site"), 1, "refused calls did nothing");
    let c2 = remote.origin.commit("api.txt", "via the API\n");
    let v = server
        .post_auth("/api/repos/site/sync", Some(token))
        .expect(202);
    assert_eq!(v, json!({"queued": ["site"]}));
    let s = server.wait_head("site", dir, &c2);
    assert_eq!(s["last_trigger"], "api");
    assert_eq!(s["syncs"], 2);

    // ?wait=true answers after the sync, with its outcome; the checkout is there already.
    let c3 = remote.origin.commit("api.txt", "waited for\n");
    let r = server.post_auth("/api/repos/site/sync?wait=true", Some(token));
    assert_eq!(
        rev_parse(dir, "HEAD").unwrap(),
        c3,
        "synced before the answer"
    );
    let v = r.expect(200);
    assert_eq!(
        (&v["name"], &v["ok"], &v["changed"], &v["fetched"]),
        (&json!("site"), &json!(true), &json!(true), &json!(true)),
        "{v:#}"
    );
    assert_eq!(
        (v["old"].as_str(), v["commit"].as_str()),
        (Some(c2.as_str()), Some(c3.as_str()))
    );
    assert_eq!(v["error"], Value::Null);
    assert!(v["duration_ms"].is_u64() && v["attempts"] == 1, "{v:#}");
    assert_eq!(
        std::fs::read_to_string(dir.join("api.txt")).unwrap(),
        "waited for\n"
    );
    // Nothing new: ok, unchanged.
    let v = server
        .post_auth("/api/repos/site/sync?wait=1", Some(token))
        .expect(200);
    assert_eq!((&v["changed"], &v["commit"]), (&json!(false), &json!(c3)));
    // A failing sync: 502 with the error.
    let v = server
        .post_auth("/api/repos/broken/sync?wait=true", Some(token))
        .expect(502);
    assert_eq!(v["ok"], false);
    assert!(v["error"]["message"].is_string(), "{v:#}");
    let s = server.status("broken");
    assert_eq!(s["failures"], 2);
    server.assert_clean_logs(&[token, "api-hook-1", "api-hook-2"]);
}

/// HTTP authentication schemes are case-insensitive: `bearer` and `BEARER` work as `Bearer`.
#[test]
fn the_api_accepts_the_bearer_scheme_in_any_case() {
    let token = "case-api-token-19";
    let remote = Remote::new();
    let tmp = tempfile::tempdir().unwrap();
    let server = Daemon::start(
        &format!("initialise: false\napi: {{token: {token}}}\n"),
        &[repo_yaml(
            "site",
            &remote.url(),
            &tmp.path().join("site"),
            "    secret: s-case\n",
        )],
    );
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = server.send(
            server
                .client()
                .get(server.url("/api/repos"))
                .header("Authorization", format!("{scheme} {token}")),
        );
        assert_eq!(r.status, 200, "{scheme}: {}", r.text);
    }
}

#[test]
fn credentials_never_appear_in_api_answers_or_logs() {
    use base64::Engine as _;
    let (right, wrong) = ("hm-RIGHT-tok-8e21c9", "hm-WRONG-tok-2f7a0d");
    let (hook, api) = ("hm-HOOK-sec-55b1", "hm-API-tok-90c3");
    let remote = Remote::local();
    let http = GitHttp::start(remote.origin.root.path(), "nouser", right);
    let mirror = Mirror::on(remote)
        .name("good")
        .url(&http.url_with_credentials("origin.git", "nouser", right))
        .keys(&format!("    branch: main\n    secret: {hook}\n"));
    let others = Daemon::builder()
        .top(&format!(
            "api: {{token: {api}}}\nlog: {{level: trace, output: stderr}}\n"
        ))
        .token(api)
        .repo(repo_yaml(
            "bad",
            &http.url_with_credentials("origin.git", "nouser", wrong),
            &mirror.work().join("bad"),
            &format!("    branch: main\n    secret: {hook}\n"),
        ))
        .repo(repo_yaml(
            "bytoken",
            &http.url("origin.git"),
            &mirror.work().join("bytoken"),
            &format!("    branch: main\n    secret: {hook}\n    auth: {{username: nouser, token: {right}}}\n"),
        ));
    let m = mirror.daemon(others).start();
    let (server, remote, good_dir) = (&m.daemon, &m.remote, &m.dir);
    server.wait_syncs("bytoken", 1);
    server.wait_for("bad", "a failed sync", |s| s["failures"] == 1 && idle(s));
    // A webhook-driven sync over the authenticated transport, and a failing one.
    let c1 = remote.head();
    let c2 = remote.advance("private");
    let id = new_id();
    let body = bytes(&github_push(
        &UrlForms::new("origin.git"),
        "refs/heads/main",
        &c1,
        &c2,
    ));
    let v = server
        .deliver("/hooks/good", &github(hook, "push", &id, body.clone()))
        .expect(202);
    assert_eq!(v["queued"], json!(["good"]));
    server.wait_head("good", good_dir, &c2);
    server
        .deliver("/hooks/bad", &github(hook, "push", &new_id(), body))
        .expect(202);
    server.wait_for("bad", "a second failure", |s| s["failures"] == 2 && idle(s));
    let failed = server.post_auth("/api/repos/bad/sync?wait=true", Some(api));
    assert_eq!(failed.status, 502, "{}", failed.text);

    let list = server.get_auth("/api/repos", api);
    let answers = [
        list.text.clone(),
        server.get_auth("/api/repos/good", api).text,
        server.get_auth("/api/repos/bad", api).text,
        failed.text.clone(),
    ];
    let v = list.expect(200);
    let redacted = format!("http://nouser:***@127.0.0.1:{}/origin.git", http.port);
    assert_eq!(v["repos"][0]["url"], redacted.as_str());
    assert_eq!(v["repos"][1]["url"], redacted.as_str());
    assert_eq!(v["repos"][2]["url"], http.url("origin.git").as_str());
    assert!(v["repos"][1]["last_error"]["message"].is_string());
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(format!("nouser:{t}"));
    let forbidden = [right, wrong, hook, api, &b64(right), &b64(wrong)];
    for a in &answers {
        for f in forbidden {
            assert!(!a.contains(f), "{f} in an API answer: {a}");
        }
    }
    server.assert_clean_logs(&forbidden);
    assert!(
        server.logs().contains("TRACE") || server.logs().contains("DEBUG"),
        "verbose logs were checked"
    );
    // Nor is the token stored in the checkout.
    let cfg = std::fs::read_to_string(good_dir.join(".git/config")).unwrap();
    assert!(!cfg.contains(right), "{cfg}");
    assert!(
        http.unauthorized_requests() > 0,
        "the wrong token reached the server"
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown and start-up
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_during_a_sync_drains_refuses_new_work_and_exits_0() {
    let (secret, token) = ("term-secret-3c7d", "term-api-8a1e");
    let marks = scratch("marks");
    let done = marks.path().join("on-success-done");
    // The post-sync command is slow for every sync but the first clone.
    let cmd = format!(
        "[sh, -c, 'if [ -n \"$HOOKMIRROR_OLD\" ]; then sleep 3; touch {}; fi']",
        done.display()
    );
    let m = Mirror::on(Remote::new())
        .keys(&format!(
            "    branch: main\n    secret: {secret}\n    on_success: {{command: {cmd}, timeout: 20s}}\n"
        ))
        .daemon(
            Daemon::builder()
                .top(&format!("api: {{token: {token}}}\n"))
                .token(token),
        )
        .start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let c1 = remote.head();
    let c2 = remote.origin.commit("page.html", "new page\n");
    let forms = remote.forms();
    let id = new_id();
    let body = bytes(&github_push(&forms, "refs/heads/main", &c1, &c2));
    server
        .deliver("/hooks/site", &github(secret, "push", &id, body))
        .expect(202);
    // The checkout moved and the slow command runs: the sync is in progress.
    assert!(wait_until(WAIT, || head_of(dir).as_deref() == Some(c2.as_str())));
    assert_eq!(server.status("site")["state"], "syncing");

    let t0 = Instant::now();
    server.sigterm();
    // Draining: new webhooks and API syncs get 503.
    std::thread::sleep(Duration::from_millis(200));
    let c3 = remote.advance("too late");
    let body = bytes(&github_push(&forms, "refs/heads/main", &c2, &c3));
    let r = server.deliver("/hooks/site", &github(secret, "push", &new_id(), body));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json(), json!({"error": "shutting down"}));
    server
        .post_auth("/api/repos/site/sync", Some(token))
        .expect(503);
    assert!(!done.exists(), "still draining when refused");

    let status = server.wait_exit(Duration::from_secs(35));
    let took = t0.elapsed();
    let logs = server.logs();
    let status = status.unwrap_or_else(|| panic!("did not exit within the grace period\n{logs}"));
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "waited for the running sync ({took:?})"
    );
    assert!(
        done.exists(),
        "the running sync finished its post-sync command"
    );
    assert!(
        logs.contains("SIGTERM received") && logs.contains("stopped"),
        "{logs}"
    );
    // The checkout is valid: clean, at a commit of the origin (the one being synced).
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
    assert_eq!(rev_parse(dir, "HEAD").unwrap(), c2);
    assert!(remote.origin.rev(&c2).is_some());
    assert_eq!(
        std::fs::read_to_string(dir.join("page.html")).unwrap(),
        "new page\n"
    );
    server.assert_clean_logs(&[secret, token]);
}

#[test]
fn initialise_true_clones_every_repo_at_start() {
    let remote = Remote::new();
    remote.origin.tag("v1", false);
    let c = remote.head();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b/nested"));
    let server = Daemon::start(
        "",
        &[
            repo_yaml("a", &remote.url(), &a, "    secret: init-1\n"),
            repo_yaml("b", &remote.url(), &b, "    tag: v1\n    secret: init-2\n"),
        ],
    );
    for (name, dir) in [("a", &a), ("b", &b)] {
        let s = server.wait_syncs(name, 1);
        assert_eq!(s["last_trigger"], "startup");
        assert_eq!(s["commit"], c.as_str());
        assert_eq!(rev_parse(dir, "HEAD").unwrap(), c);
        assert_eq!(git(dir, &["status", "--porcelain"]), "");
    }
    // Idle: SIGTERM stops it at once, exit 0.
    let t = Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn initialise_false_clones_nothing_until_a_webhook_or_api_call() {
    let (secret, token) = ("lazy-secret-71d0", "lazy-api-2b8c");
    let remote = Remote::new();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, pre) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("pre"),
    );
    // `pre` exists already (cloned by hand): its commit shows before any sync.
    git(tmp.path(), &["clone", "-q", &remote.origin.url(), "pre"]);
    let c1 = remote.head();
    let keys = format!("    branch: main\n    secret: {secret}\n");
    let server = Daemon::builder()
        .top(&format!("initialise: false\napi: {{token: {token}}}\n"))
        .token(token)
        .repo(repo_yaml("a", &remote.url(), &a, &keys))
        .repo(repo_yaml("b", &remote.url(), &b, &keys))
        .repo(repo_yaml("pre", &remote.origin.url(), &pre, &keys))
        .start();
    std::thread::sleep(Duration::from_millis(700));
    for name in ["a", "b", "pre"] {
        let s = server.status(name);
        assert_eq!(
            (s["syncs"].as_u64(), &s["last_attempt"]),
            (Some(0), &Value::Null),
            "{s:#}"
        );
    }
    assert!(!a.exists() && !b.exists(), "nothing cloned");
    assert_eq!(server.status("a")["commit"], Value::Null);
    assert_eq!(
        server.status("pre")["commit"],
        c1.as_str(),
        "read from the existing checkout"
    );

    // A webhook clones `a` (and only `a`).
    let c2 = remote.advance("first push");
    let (id, d) = github_main_push(secret, &remote.forms(), &c1, &c2);
    server.deliver("/hooks/a", &d).expect_queued(&["a"], &id);
    let s = server.wait_head("a", &a, &c2);
    assert_eq!(s["syncs"], 1);
    assert!(!b.exists());
    // An API call clones `b`.
    let v = server
        .post_auth("/api/repos/b/sync?wait=true", Some(token))
        .expect(200);
    assert_eq!(
        (&v["ok"], &v["commit"], &v["old"]),
        (&json!(true), &json!(c2), &Value::Null)
    );
    assert_eq!(rev_parse(&b, "HEAD").unwrap(), c2);
    assert!(Path::new(&b).join(".git").is_dir());
    assert_eq!(server.status("pre")["syncs"], 0);
    server.assert_clean_logs(&[secret, token]);
}
