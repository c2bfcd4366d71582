//! End to end through the real `hookmirror serve`: every forge's verification and payloads, as
//! each forge sends them (headers, raw body, signature over the bytes sent), against real remotes
//! (`git daemon` over git://, a private sshd). Each delivery must answer 202 `{"queued": [name],
//! "delivery": id}` and bring the checkout to the pushed commit. Also: the published signature
//! test vectors of GitHub and of Standard Webhooks, checked through the server.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::*;
use support::forge::*;
use support::{Sshd, rev_parse};

#[test]
fn github_json_and_form_encoded_pushes_sync_and_ping_answers_200() {
    let secret = "gh-secret-5f1c2a7e";
    // No provider pinned: detected from the headers.
    let m = Mirror::start(&format!("    branch: main\n    secret: {secret}\n"));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let s = &m.first;
    let c1 = remote.head();
    assert_eq!(s["commit"], c1.as_str());
    assert_eq!(s["last_trigger"], "startup");

    // A JSON push.
    let c2 = remote.origin.commit("index.html", "<h1>v2</h1>\n");
    let id = new_id();
    let body = bytes(&github_push(&remote.forms(), "refs/heads/main", &c1, &c2));
    let r = server.deliver("/hooks/site", &github(secret, "push", &id, body));
    r.expect_queued(&["site"], &id);
    let s = server.wait_head("site", dir, &c2);
    assert_eq!(s["last_trigger"], format!("webhook {id}"));
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).unwrap(),
        "<h1>v2</h1>\n"
    );

    // A form-encoded push (`payload=<url-encoded JSON>`); the signature covers the form body.
    let c3 = remote.origin.commit("index.html", "<h1>v3</h1>\n");
    let json = bytes(&github_push(&remote.forms(), "refs/heads/main", &c2, &c3));
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    assert!(form.starts_with("payload=%7B"), "{form}");
    let id = new_id();
    let d = github_typed(
        secret,
        "push",
        &id,
        form.into_bytes(),
        "application/x-www-form-urlencoded",
    );
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    let s = server.wait_head("site", dir, &c3);
    let syncs = s["syncs"].as_u64().unwrap();
    assert_eq!(syncs, 3, "start-up + two pushes: {s:#}");

    // ping: 200, nothing queued.
    let id = new_id();
    let ping = github(secret, "ping", &id, bytes(&github_ping(&remote.forms())));
    let v = server.deliver("/hooks/site", &ping).expect(200);
    assert_eq!(v, json!({"ok": true, "event": "ping"}));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.status("site")["syncs"], syncs);
    assert_eq!(rev_parse(dir, "HEAD").unwrap(), c3);
    server.assert_clean_logs(&[secret]);
}

#[test]
fn github_sha1_signature_is_refused_unless_the_repo_allows_sha1() {
    let secret = "gh-sha1-secret-0b9d";
    let remote = Remote::new();
    let url = remote.url();
    let extra = format!("    branch: main\n    provider: github\n    secret: {secret}\n");
    let mirror = Mirror::on(remote).name("strict").keys(&extra);
    let legacy = mirror.work().join("legacy");
    let legacy_yaml = repo_yaml(
        "legacy",
        &url,
        &legacy,
        &format!("{extra}    allow_sha1: true\n"),
    );
    let m = mirror.daemon(Daemon::builder().repo(legacy_yaml)).start();
    let (server, remote, strict) = (&m.daemon, &m.remote, &m.dir);
    server.wait_syncs("legacy", 1);
    let c1 = remote.head();
    let c2 = remote.advance("sha1 push");
    let body = bytes(&github_push(&remote.forms(), "refs/heads/main", &c1, &c2));
    // What an old GitHub Enterprise hook sends: only the SHA-1 signature.
    let sha1_only =
        |id: &str| github(secret, "push", id, body.clone()).without("X-Hub-Signature-256");

    let v = server
        .deliver("/hooks/strict", &sha1_only(&new_id()))
        .expect(401);
    assert_eq!(v, json!({"error": "signature missing or invalid"}));

    // A SHA-256 signature that fails never falls back to a valid SHA-1 one.
    let bad256 =
        sha1_only(&new_id()).set("X-Hub-Signature-256", &format!("sha256={}", "0".repeat(64)));
    server.deliver("/hooks/legacy", &bad256).expect(401);
    // A wrong SHA-1 signature is refused too.
    let bad1 = sha1_only(&new_id()).set(
        "X-Hub-Signature",
        &format!("sha1={}", hmac_sha1_hex("other", &body)),
    );
    server.deliver("/hooks/legacy", &bad1).expect(401);

    let id = new_id();
    server
        .deliver("/hooks/legacy", &sha1_only(&id))
        .expect_queued(&["legacy"], &id);
    server.wait_head("legacy", &legacy, &c2);
    let s = server.wait_idle("strict");
    assert_eq!(s["syncs"], 1, "the refused deliveries did nothing: {s:#}");
    assert_eq!(rev_parse(strict, "HEAD").unwrap(), c1);
    server.assert_clean_logs(&[secret]);
}

#[test]
fn gitlab_token_push_hook_tag_push_hook_and_system_hooks() {
    let token = "glsecret-token-3e8a91";
    let remote = Remote::new();
    remote.origin.tag("v1.4.0", true);
    let url = remote.url();
    let mirror = Mirror::on(remote).name("main").keys(&format!(
        "    branch: main\n    provider: gitlab\n    secret: {token}\n"
    ));
    let tag_dir = mirror.work().join("release");
    let release = repo_yaml(
        "release",
        &url,
        &tag_dir,
        &format!("    tag: v1.4.0\n    provider: gitlab\n    secret: {token}\n"),
    );
    let m = mirror.daemon(Daemon::builder().repo(release)).start();
    let (server, remote, main_dir) = (&m.daemon, &m.remote, &m.dir);
    server.wait_syncs("release", 1);
    let forms = remote.forms();

    // Push Hook.
    let c1 = remote.head();
    let c2 = remote.origin.commit("a.txt", "push hook\n");
    let id = new_id();
    let d = gitlab_token(
        token,
        "Push Hook",
        &id,
        bytes(&gitlab_push(&forms, "refs/heads/main", &c1, &c2)),
    );
    server
        .deliver("/hooks/main", &d)
        .expect_queued(&["main"], &id);
    server.wait_head("main", main_dir, &c2);

    // A wrong token: 401.
    let d = gitlab_token(
        "glsecret-token-3e8a9",
        "Push Hook",
        &new_id(),
        d.body.clone(),
    );
    server.deliver("/hooks/main", &d).expect(401);

    // Tag Push Hook: the tag moved to c2 (GitLab's `after` is the tag object for annotated tags).
    let tagged = remote.origin.tag("v1.4.0", true);
    assert_eq!(tagged, c2);
    let tag_object = support::git(&remote.origin.bare, &["rev-parse", "refs/tags/v1.4.0"]);
    let id = new_id();
    let body = gitlab_push_from(
        GITLAB_TAG_PUSH,
        &forms,
        "refs/tags/v1.4.0",
        ZEROS,
        &tag_object,
    );
    let d = gitlab_token(token, "Tag Push Hook", &id, bytes(&body));
    server
        .deliver("/hooks/release", &d)
        .expect_queued(&["release"], &id);
    server.wait_head("release", &tag_dir, &c2);

    // System Hook, event_name push.
    let c3 = remote.origin.commit("a.txt", "system hook push\n");
    let id = new_id();
    let body = gitlab_push_from(GITLAB_SYSTEM_PUSH, &forms, "refs/heads/main", &c2, &c3);
    assert_eq!(body["event_name"], "push");
    let d = gitlab_token(token, "System Hook", &id, bytes(&body));
    server
        .deliver("/hooks/main", &d)
        .expect_queued(&["main"], &id);
    server.wait_head("main", main_dir, &c3);

    // System Hook, event_name repository_update, several changes (a branch and a tag).
    let c4 = remote.origin.commit("a.txt", "repository_update\n");
    let id = new_id();
    let body = gitlab_repository_update(
        &forms,
        &[("refs/heads/main", &c3, &c4), ("refs/tags/v9", ZEROS, &c4)],
    );
    let d = gitlab_token(token, "System Hook", &id, bytes(&body));
    server
        .deliver("/hooks/main", &d)
        .expect_queued(&["main"], &id);
    server.wait_head("main", main_dir, &c4);

    // A system hook of another kind is ignored with a reason.
    let mut other = fixture(GITLAB_SYSTEM_PUSH);
    other["event_name"] = json!("project_create");
    other["object_kind"] = Value::Null;
    let d = gitlab_token(token, "System Hook", &new_id(), bytes(&other));
    let v = server.deliver("/hooks/main", &d).expect(200);
    assert!(
        v["ignored"].as_str().unwrap().contains("project_create"),
        "{v}"
    );
    server.assert_clean_logs(&[token]);
}

#[test]
fn gitlab_signing_token_verifies_webhook_signature() {
    let signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let m = Mirror::start(&format!(
        "    branch: main\n    provider: gitlab\n    secret: {signing}\n"
    ));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let c1 = remote.head();
    let c2 = remote.advance("signed");
    let body = bytes(&gitlab_push(&remote.forms(), "refs/heads/main", &c1, &c2));

    // Stale (6 minutes old) and a wrong key: 401.
    let stale = gitlab_signed(
        signing,
        "Push Hook",
        &new_id(),
        unix_now() - 360,
        body.clone(),
    );
    server.deliver("/hooks/site", &stale).expect(401);
    let other_key = "whsec_".to_string() + &base64_of(b"another signing key!!");
    let wrong = gitlab_signed(&other_key, "Push Hook", &new_id(), unix_now(), body.clone());
    server.deliver("/hooks/site", &wrong).expect(401);
    assert_eq!(server.status("site")["syncs"], 1);

    // Rotation on GitLab's side: two signatures, space-separated; one verifies.
    let id = new_id();
    let now = unix_now();
    let good = gitlab_signed(signing, "Push Hook", &id, now, body.clone());
    let both = format!(
        "{} {}",
        standard_signature(&other_key, &id, now, &body),
        good.get("webhook-signature").unwrap()
    );
    let d = good.set("webhook-signature", &both);
    assert!(d.get("X-Gitlab-Token").is_none());
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    server.wait_head("site", dir, &c2);
    let logs = server.logs();
    assert!(logs.contains("timestamp outside tolerance"), "{logs}");
    server.assert_clean_logs(&[signing.trim_start_matches("whsec_")]);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn gitea_and_forgejo_signatures_and_the_gitea_test_delivery() {
    let secret = "gitea webhook secret 91c2";
    let m = Mirror::start(&format!("    branch: main\n    secret: '{secret}'\n"));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let forms = remote.forms();

    // Gitea (also sends GitHub-style copies; its own headers decide).
    let c1 = remote.head();
    let c2 = remote.origin.commit("g.txt", "gitea\n");
    let id = new_id();
    let d = gitea(
        secret,
        &id,
        bytes(&gitea_push(&forms, "refs/heads/main", &c1, &c2)),
    );
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    server.wait_head("site", dir, &c2);

    // A Gitea delivery whose X-Gitea-Signature is wrong is refused even though its GitHub-style
    // copy (X-Hub-Signature-256) is valid.
    let c3 = remote.origin.commit("g.txt", "forgejo\n");
    let body = bytes(&gitea_push(&forms, "refs/heads/main", &c2, &c3));
    let d = gitea(secret, &new_id(), body.clone())
        .set("X-Gitea-Signature", &hmac_sha256_hex("nope", &body));
    server.deliver("/hooks/site", &d).expect(401);

    // Forgejo.
    let id = new_id();
    let d = forgejo(secret, &id, body);
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    let s = server.wait_head("site", dir, &c3);

    // Gitea's "Test Delivery" (before == after): answered like a ping, nothing synced.
    let test = gitea(
        secret,
        &new_id(),
        bytes(&gitea_push(&forms, "refs/heads/main", &c3, &c3)),
    );
    let v = server.deliver("/hooks/site", &test).expect(200);
    assert_eq!(v["event"], "ping", "{v}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.status("site")["syncs"], s["syncs"]);
    server.assert_clean_logs(&[secret]);
}

#[test]
fn bitbucket_cloud_push_and_data_center_refs_changed_and_ping() {
    let secret = "bb-secret-77aa01";
    let m = Mirror::start(&format!(
        "    branch: main\n    provider: bitbucket\n    secret: {secret}\n"
    ));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let forms = remote.forms();

    // Cloud repo:push (the fixture also carries a tag creation and a branch deletion).
    let c1 = remote.head();
    let c2 = remote.origin.commit("b.txt", "cloud\n");
    let id = new_id();
    let d = bitbucket_cloud(
        secret,
        "repo:push",
        &id,
        bytes(&bitbucket_cloud_push(&forms, "main", &c1, &c2)),
    );
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    server.wait_head("site", dir, &c2);

    // Data Center repo:refs_changed.
    let c3 = remote.origin.commit("b.txt", "data center\n");
    let id = new_id();
    let d = bitbucket_dc(
        secret,
        "repo:refs_changed",
        &id,
        bytes(&bitbucket_dc_changed(&forms, "refs/heads/main", &c2, &c3)),
    );
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    let s = server.wait_head("site", dir, &c3);

    // Data Center's "Test connection": diagnostics:ping → 200, nothing synced.
    let d = bitbucket_dc(
        secret,
        "diagnostics:ping",
        &new_id(),
        br#"{"test": true}"#.to_vec(),
    );
    let v = server.deliver("/hooks/site", &d).expect(200);
    assert_eq!(v["event"], "ping", "{v}");
    // Signed with another secret: 401.
    let d = bitbucket_dc(
        "other",
        "diagnostics:ping",
        &new_id(),
        br#"{"test": true}"#.to_vec(),
    );
    server.deliver("/hooks/site", &d).expect(401);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.status("site")["syncs"], s["syncs"]);
    server.assert_clean_logs(&[secret]);
}

#[test]
fn standard_webhooks_verify_and_refuse_timestamps_outside_five_minutes() {
    let secret = "whsec_c3RhbmRhcmQtd2ViaG9va3Mtc2VjcmV0LWtleQ==";
    let m = Mirror::start(&format!(
        "    branch: main\n    provider: standard\n    secret: '{secret}'\n"
    ));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let c1 = remote.head();
    let c2 = remote.advance("standard");
    // A Standard Webhooks envelope around a GitHub-style push.
    let body = bytes(&json!({
        "type": "git.push",
        "timestamp": "2025-03-07T14:20:05Z",
        "data": github_push(&remote.forms(), "refs/heads/main", &c1, &c2),
    }));
    for offset in [-301, -3600, 301, 3600] {
        let d = standard(secret, &new_id(), unix_now() + offset, body.clone());
        server.deliver("/hooks/site", &d).expect(401);
    }
    // A timestamp that is not a number.
    let d = standard(secret, &new_id(), unix_now(), body.clone()).set("webhook-timestamp", "now");
    server.deliver("/hooks/site", &d).expect(401);
    assert_eq!(server.status("site")["syncs"], 1);

    let id = new_id();
    let d = standard(secret, &id, unix_now() - 240, body);
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    server.wait_head("site", dir, &c2);
    // A captured delivery replayed within the tolerance: its webhook-id makes it a duplicate.
    let v = server.deliver("/hooks/site", &d).expect(200);
    assert_eq!(
        v,
        json!({"duplicate": true, "delivery": id, "state": "succeeded"})
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.status("site")["syncs"], 2);
    assert!(server.logs().contains("timestamp outside tolerance"));
    server.assert_clean_logs(&[secret.trim_start_matches("whsec_")]);
}

/// The published signature test vectors, checked by the running server: GitHub's (secret
/// "It's a Secret to Everybody", body "Hello, World!") and Standard Webhooks' (a `whsec_` key,
/// `msg_…` id, a 2021 timestamp). An authentic delivery gets past verification (GitHub: 400, the
/// body is not a push; Standard: refused only for its timestamp) while one flipped hex/base64
/// digit is a plain 401.
#[test]
fn documented_test_vectors_verify_through_the_server() {
    let remote = Remote::new();
    let tmp = scratch("work");
    let dir_of = |name: &str| tmp.path().join(name);
    let server = Daemon::start(
        "initialise: false\n",
        &[
            repo_yaml(
                "vector",
                &remote.url(),
                &dir_of("vector"),
                "    provider: github\n    secret: \"It's a Secret to Everybody\"\n",
            ),
            repo_yaml(
                "swh",
                &remote.url(),
                &dir_of("swh"),
                "    provider: standard\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
            ),
        ],
    );
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let d = Delivery {
        headers: vec![
            ("X-GitHub-Event".into(), "push".into()),
            ("X-GitHub-Delivery".into(), new_id()),
            ("X-Hub-Signature-256".into(), sig.into()),
        ],
        body: b"Hello, World!".to_vec(),
    };
    let v = server.deliver("/hooks/vector", &d).expect(400);
    assert_eq!(v, json!({"error": "body is not valid JSON"}));
    let flipped = sig.replace("757107", "757108");
    let v = server
        .deliver(
            "/hooks/vector",
            &d.clone().set("X-Hub-Signature-256", &flipped),
        )
        .expect(401);
    assert_eq!(v, json!({"error": "signature missing or invalid"}));

    let d = Delivery {
        headers: vec![
            ("webhook-id".into(), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
            ("webhook-timestamp".into(), "1614265330".into()),
            (
                "webhook-signature".into(),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
            ),
        ],
        body: br#"{"test": 2432232314}"#.to_vec(),
    };
    // Our own signer agrees with the vector.
    assert_eq!(
        standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            &d.body
        ),
        d.get("webhook-signature").unwrap()
    );
    server.deliver("/hooks/swh", &d).expect(401);
    let refusals = |server: &Daemon| -> Vec<String> {
        server
            .logs()
            .lines()
            .filter(|l| l.contains("webhook refused") && l.contains("repo=swh"))
            .map(str::to_string)
            .collect()
    };
    let r = refusals(&server);
    assert!(
        r.len() == 1 && r[0].contains("timestamp outside tolerance"),
        "the vector verified and only its age was refused: {r:#?}"
    );
    let d = d.set(
        "webhook-signature",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=",
    );
    server.deliver("/hooks/swh", &d).expect(401);
    let r = refusals(&server);
    assert!(
        r.len() == 2 && r[1].contains("invalid signature"),
        "one flipped digit no longer verifies: {r:#?}"
    );
    // Nothing was ever cloned.
    for name in ["vector", "swh"] {
        assert_eq!(server.status(name)["syncs"], 0);
        assert!(!dir_of(name).exists());
    }
    server.assert_clean_logs(&[
        "It's a Secret to Everybody",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ]);
}

/// A repository reached over ssh (a private sshd, an encrypted key, a pinned host key), driven by
/// Bitbucket Data Center deliveries naming it by its ssh URL.
#[test]
fn a_repo_over_ssh_follows_bitbucket_data_center_pushes() {
    let secret = "bb-dc-ssh-secret-4410";
    let remote = Remote::local();
    let sshd = Sshd::start();
    let auth = format!(
        "    auth:\n      ssh_key: '{}'\n      ssh_key_passphrase: '{}'\n      known_hosts: '{}'\n",
        sshd.ed25519_key.display(),
        sshd.passphrase,
        sshd.known_hosts.display()
    );
    let url = sshd.url(&remote.origin.bare);
    let m = Mirror::on(remote)
        .url(&url)
        .keys(&format!(
            "    branch: main\n    provider: bitbucket\n    secret: {secret}\n{auth}"
        ))
        .start();
    let (server, origin, dir, s) = (&m.daemon, &m.remote.origin, &m.dir, &m.first);
    let c1 = origin.head("main");
    assert_eq!(s["commit"], c1.as_str(), "cloned over ssh: {s:#}");
    assert_eq!(s["last_error"], Value::Null);
    let forms = UrlForms::new(origin.bare.to_str().unwrap());
    for i in 0..2 {
        let before = origin.head("main");
        let after = origin.commit("ssh.txt", &format!("over ssh {i}\n"));
        let id = new_id();
        let body = bytes(&bitbucket_dc_changed(
            &forms,
            "refs/heads/main",
            &before,
            &after,
        ));
        let d = bitbucket_dc(secret, "repo:refs_changed", &id, body);
        server
            .deliver("/hooks/site", &d)
            .expect_queued(&["site"], &id);
        server.wait_head("site", dir, &after);
    }
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    server.assert_clean_logs(&[secret, &sshd.passphrase]);
}

/// GitHub (and GitLab) send the *tag object* as `after` when an annotated tag is pushed. The
/// checkout then holds the commit it points to, so the hint is satisfied and must not be taken
/// for a lagging forge replica (which re-fetches up to 3 more times, 0.5 + 1 + 2 s apart).
#[test]
fn an_annotated_tag_push_is_not_mistaken_for_replica_lag() {
    let secret = "gh-tag-secret-61b0";
    let remote = Remote::new();
    remote.origin.tag("v1", true);
    let m = Mirror::on(remote)
        .name("rel")
        .keys(&format!("    tag: v1\n    secret: {secret}\n"))
        .start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let commit = remote.origin.move_tag("v1", true);
    let tag_object = support::git(&remote.origin.bare, &["rev-parse", "refs/tags/v1"]);
    assert_ne!(tag_object, commit, "an annotated tag");
    let id = new_id();
    let body = bytes(&github_push_tag(
        &remote.forms(),
        "refs/tags/v1",
        &tag_object,
    ));
    server
        .deliver("/hooks/rel", &github(secret, "push", &id, body))
        .expect_queued(&["rel"], &id);
    let s = server.wait_head("rel", dir, &commit);
    assert_eq!(s["syncs"], 2);
    // Give replica-lag retries (0.5 s, then 1 s) time to show up.
    std::thread::sleep(Duration::from_millis(1800));
    let s = server.wait_idle("rel");
    let logs = server.logs();
    assert!(
        !logs.contains("fetched tip lacks the pushed commit"),
        "an annotated tag's object id was taken for a missing commit:\n{logs}"
    );
    assert_eq!(s["syncs"], 2, "no extra fetches: {s:#}");
}

/// Forges treat owner and repository names case-insensitively and name them in their canonical
/// case (`Codertocat/Hello-World`), which need not be the case the operator wrote in `url`
/// (`codertocat/hello-world.git` clones just as well). A verified push must not be ignored for
/// that: the mirror would silently never update.
#[test]
fn a_payload_naming_the_repo_in_another_case_still_syncs() {
    let secret = "case-secret-2d4e";
    let m = Mirror::start(&format!("    branch: main\n    secret: {secret}\n"));
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let c1 = remote.head();
    let c2 = remote.advance("canonical case");
    let (id, d) = github_main_push(secret, &UrlForms::new("Origin.git"), &c1, &c2);
    let r = server.deliver("/hooks/site", &d);
    r.expect_queued(&["site"], &id);
    server.wait_head("site", dir, &c2);
}
