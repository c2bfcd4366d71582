//! Webhook deliveries signed the way each forge signs them, over the exact bytes sent:
//! [`github`] (and [`github_typed`] for form-encoded hooks), [`gitlab_token`], [`gitlab_signed`],
//! [`gitea`], [`forgejo`], [`bitbucket_cloud`], [`bitbucket_dc`] and [`standard`] (Standard
//! Webhooks). Bodies come from the captured fixtures in `tests/fixtures/webhooks/`, with their
//! ref, commits and repository URLs rewritten to name the test remote ([`UrlForms`]).

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// 40 zeros: "no commit" in push payloads.
pub const ZEROS: &str = "0000000000000000000000000000000000000000";

/// The ways a forge names one repository on host 127.0.0.1 (see `hookmirror::url::match_key`:
/// scheme, user and port do not matter, host and path do).
#[derive(Debug, Clone)]
pub struct UrlForms {
    /// `https://127.0.0.1/PATH`
    pub https: String,
    /// `git@127.0.0.1:PATH`
    pub scp: String,
    /// `ssh://git@127.0.0.1:2222/PATH`
    pub ssh: String,
    /// `git://127.0.0.1/PATH`
    pub git: String,
    /// `https://127.0.0.1/PATH` without `.git`
    pub web: String,
}

impl UrlForms {
    /// `path`: the repository's path on the host without a leading `/`, e.g. `origin.git`.
    pub fn new(path: &str) -> UrlForms {
        let path = path.trim_start_matches('/');
        let bare = path.strip_suffix(".git").unwrap_or(path);
        UrlForms {
            https: format!("https://127.0.0.1/{path}"),
            scp: format!("git@127.0.0.1:{path}"),
            ssh: format!("ssh://git@127.0.0.1:2222/{path}"),
            git: format!("git://127.0.0.1/{path}"),
            web: format!("https://127.0.0.1/{bare}"),
        }
    }

    /// Every field set to `url` (a payload naming one URL in every place).
    pub fn all(url: &str) -> UrlForms {
        UrlForms {
            https: url.into(),
            scp: url.into(),
            ssh: url.into(),
            git: url.into(),
            web: url.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

pub fn hmac_sha256_hex(key: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(key.as_bytes(), &[body]))
}

pub fn hmac_sha1_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Standard Webhooks: `v1,` + base64 HMAC-SHA256(key, `{id}.{timestamp}.{body}`), the key being
/// the base64 after `whsec_` (else the secret's bytes).
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = match secret.strip_prefix("whsec_") {
        Some(k) => b64.decode(k).unwrap(),
        None => secret.as_bytes().to_vec(),
    };
    let ts = timestamp.to_string();
    let mac = hmac_sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", b64.encode(mac))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A unique delivery id (GUID-shaped).
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (t >> 32) as u32,
        (t >> 16) as u16,
        std::process::id() & 0xfff,
        n & 0xfff,
        (t as u64 ^ n.rotate_left(40)) & 0xffff_ffff_ffff
    )
}

// ---------------------------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------------------------

/// Headers and raw body of one webhook request.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    /// Sets `name` (case-insensitively replacing an existing value).
    pub fn set(mut self, name: &str, value: &str) -> Delivery {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Removes `name`.
    pub fn without(mut self, name: &str) -> Delivery {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    /// The same headers with another body (signatures NOT recomputed).
    pub fn with_body(mut self, body: Vec<u8>) -> Delivery {
        self.body = body;
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What GitHub sends: event, delivery GUID, both signatures (SHA-1 and SHA-256) over the body.
pub fn github(secret: &str, event: &str, id: &str, body: Vec<u8>) -> Delivery {
    github_typed(secret, event, id, body, "application/json")
}

/// [`github`] with a given `Content-Type` (`application/x-www-form-urlencoded` for form hooks).
pub fn github_typed(
    secret: &str,
    event: &str,
    id: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Delivery {
    let headers = vec![
        ("User-Agent".into(), "GitHub-Hookshot/a1b2c3d".into()),
        ("Content-Type".into(), content_type.into()),
        ("X-GitHub-Event".into(), event.into()),
        ("X-GitHub-Delivery".into(), id.into()),
        ("X-GitHub-Hook-ID".into(), "292430182".into()),
        (
            "X-GitHub-Hook-Installation-Target-Type".into(),
            "repository".into(),
        ),
        (
            "X-Hub-Signature".into(),
            format!("sha1={}", hmac_sha1_hex(secret, &body)),
        ),
        (
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hmac_sha256_hex(secret, &body)),
        ),
    ];
    Delivery { headers, body }
}

/// A GitHub push of `main` from `before` to `after` in the repository `urls` names, signed with
/// `secret`, under a fresh delivery id: the id and the delivery.
pub fn github_main_push(
    secret: &str,
    urls: &UrlForms,
    before: &str,
    after: &str,
) -> (String, Delivery) {
    let id = new_id();
    let body = bytes(&github_push(urls, "refs/heads/main", before, after));
    let d = github(secret, "push", &id, body);
    (id, d)
}

/// A GitHub push of `git_ref` to `after` (`before`: none) naming the repository `url` in every
/// URL field, signed with `secret`, delivery id `id`.
pub fn github_push_naming(
    secret: &str,
    id: &str,
    url: &str,
    git_ref: &str,
    after: &str,
) -> Delivery {
    let body = bytes(&github_push(&UrlForms::all(url), git_ref, ZEROS, after));
    github(secret, "push", id, body)
}

/// GitLab with a secret token (`X-Gitlab-Token` carries the secret itself).
pub fn gitlab_token(token: &str, event: &str, id: &str, body: Vec<u8>) -> Delivery {
    let headers = vec![
        ("User-Agent".into(), "GitLab/17.9.0".into()),
        ("Content-Type".into(), "application/json".into()),
        ("X-Gitlab-Event".into(), event.into()),
        ("X-Gitlab-Token".into(), token.into()),
        (
            "X-Gitlab-Instance".into(),
            "https://gitlab.example.com".into(),
        ),
        (
            "X-Gitlab-Webhook-UUID".into(),
            "7e1b9a5c-0d2f-4c3e-9a8b-1f2e3d4c5b6a".into(),
        ),
        ("X-Gitlab-Event-UUID".into(), id.into()),
        ("Idempotency-Key".into(), id.into()),
    ];
    Delivery { headers, body }
}

/// GitLab with a signing token (19.0+): Standard Webhooks headers, no `X-Gitlab-Token`.
pub fn gitlab_signed(
    whsec: &str,
    event: &str,
    id: &str,
    timestamp: i64,
    body: Vec<u8>,
) -> Delivery {
    let signature = standard_signature(whsec, id, timestamp, &body);
    let headers = vec![
        ("User-Agent".into(), "GitLab/19.0.0".into()),
        ("Content-Type".into(), "application/json".into()),
        ("X-Gitlab-Event".into(), event.into()),
        (
            "X-Gitlab-Instance".into(),
            "https://gitlab.example.com".into(),
        ),
        ("X-Gitlab-Event-UUID".into(), id.into()),
        ("Idempotency-Key".into(), id.into()),
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ];
    Delivery { headers, body }
}

/// Gitea: its own headers (bare-hex signature) plus the GitHub and Gogs copies it also sends.
pub fn gitea(secret: &str, id: &str, body: Vec<u8>) -> Delivery {
    let hex = hmac_sha256_hex(secret, &body);
    let headers = vec![
        ("User-Agent".into(), "Go-http-client/1.1".into()),
        ("Content-Type".into(), "application/json".into()),
        ("X-Gitea-Delivery".into(), id.into()),
        ("X-Gitea-Event".into(), "push".into()),
        ("X-Gitea-Event-Type".into(), "push".into()),
        ("X-Gitea-Signature".into(), hex.clone()),
        ("X-Gogs-Delivery".into(), id.into()),
        ("X-Gogs-Event".into(), "push".into()),
        ("X-Gogs-Signature".into(), hex.clone()),
        ("X-GitHub-Delivery".into(), id.into()),
        ("X-GitHub-Event".into(), "push".into()),
        ("X-Hub-Signature-256".into(), format!("sha256={hex}")),
    ];
    Delivery { headers, body }
}

/// Forgejo: `X-Forgejo-*` plus the Gitea (and GitHub) copies.
pub fn forgejo(secret: &str, id: &str, body: Vec<u8>) -> Delivery {
    let hex = hmac_sha256_hex(secret, &body);
    let mut d = gitea(secret, id, body);
    d.headers.extend([
        ("X-Forgejo-Delivery".into(), id.into()),
        ("X-Forgejo-Event".into(), "push".into()),
        ("X-Forgejo-Event-Type".into(), "push".into()),
        ("X-Forgejo-Signature".into(), hex),
    ]);
    d
}

/// Bitbucket Cloud: `X-Event-Key`, `X-Hub-Signature: sha256=…` (no `-256`), request/hook UUIDs.
pub fn bitbucket_cloud(secret: &str, event: &str, id: &str, body: Vec<u8>) -> Delivery {
    let headers = vec![
        ("User-Agent".into(), "Bitbucket-Webhooks/2.0".into()),
        ("Content-Type".into(), "application/json".into()),
        ("X-Event-Key".into(), event.into()),
        ("X-Request-UUID".into(), id.into()),
        (
            "X-Hook-UUID".into(),
            "{2f1e0d9c-8b7a-4c6d-9e5f-4a3b2c1d0e9f}".into(),
        ),
        ("X-Attempt-Number".into(), "1".into()),
        (
            "X-Hub-Signature".into(),
            format!("sha256={}", hmac_sha256_hex(secret, &body)),
        ),
    ];
    Delivery { headers, body }
}

/// Bitbucket Data Center: `X-Event-Key`, `X-Request-Id`, `X-Hub-Signature: sha256=…`.
pub fn bitbucket_dc(secret: &str, event: &str, id: &str, body: Vec<u8>) -> Delivery {
    let headers = vec![
        (
            "User-Agent".into(),
            "Atlassian HttpClient 4.2.0 / Bitbucket-9.4.0 (9004000) / Default".into(),
        ),
        (
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        ),
        ("X-Event-Key".into(), event.into()),
        ("X-Request-Id".into(), id.into()),
        (
            "X-Hub-Signature".into(),
            format!("sha256={}", hmac_sha256_hex(secret, &body)),
        ),
    ];
    Delivery { headers, body }
}

/// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
pub fn standard(secret: &str, id: &str, timestamp: i64, body: Vec<u8>) -> Delivery {
    let signature = standard_signature(secret, id, timestamp, &body);
    let headers = vec![
        ("Content-Type".into(), "application/json".into()),
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ];
    Delivery { headers, body }
}

// ---------------------------------------------------------------------------------------------
// Payloads: the fixtures, rewritten to name the test remote
// ---------------------------------------------------------------------------------------------

pub const GITHUB_PUSH: &str = include_str!("../fixtures/webhooks/github/push_branch_created.json");
pub const GITHUB_PUSH_TAG: &str = include_str!("../fixtures/webhooks/github/push_tag_created.json");
pub const GITHUB_PING: &str = include_str!("../fixtures/webhooks/github/ping.json");
pub const GITHUB_ISSUES: &str = include_str!("../fixtures/webhooks/github/issues_opened.json");
pub const GITLAB_PUSH: &str = include_str!("../fixtures/webhooks/gitlab/push_hook.json");
pub const GITLAB_TAG_PUSH: &str = include_str!("../fixtures/webhooks/gitlab/tag_push_hook.json");
pub const GITLAB_SYSTEM_PUSH: &str =
    include_str!("../fixtures/webhooks/gitlab/system_hook_push.json");
pub const GITLAB_SYSTEM_UPDATE: &str =
    include_str!("../fixtures/webhooks/gitlab/system_hook_repository_update.json");
pub const GITEA_PUSH: &str = include_str!("../fixtures/webhooks/gitea/push.json");
pub const BITBUCKET_CLOUD_PUSH: &str =
    include_str!("../fixtures/webhooks/bitbucket/cloud_repo_push.json");
pub const BITBUCKET_DC_CHANGED: &str =
    include_str!("../fixtures/webhooks/bitbucket/dc_repo_refs_changed.json");

pub fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The bytes sent: compact JSON, as the forges send it.
pub fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Sets `v[pointer] = value` when that place exists.
fn set(v: &mut Value, pointer: &str, value: Value) {
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = value;
    }
}

/// The GitHub `push` fixture moved to `git_ref` `before..after` of the repository `urls` names.
pub fn github_push(urls: &UrlForms, git_ref: &str, before: &str, after: &str) -> Value {
    let mut v = fixture(GITHUB_PUSH);
    github_rewrite(&mut v, urls, git_ref, before, after);
    v
}

/// The GitHub tag-push fixture (`push_tag_created`) for `tag_ref` at `after`.
pub fn github_push_tag(urls: &UrlForms, tag_ref: &str, after: &str) -> Value {
    let mut v = fixture(GITHUB_PUSH_TAG);
    github_rewrite(&mut v, urls, tag_ref, ZEROS, after);
    v
}

fn github_rewrite(v: &mut Value, urls: &UrlForms, git_ref: &str, before: &str, after: &str) {
    set(v, "/ref", json!(git_ref));
    set(v, "/before", json!(before));
    set(v, "/after", json!(after));
    set(v, "/created", json!(before == ZEROS));
    set(v, "/deleted", json!(after == ZEROS));
    set(v, "/forced", json!(false));
    if after == ZEROS {
        set(v, "/head_commit", Value::Null);
        set(v, "/commits", json!([]));
    } else {
        set(v, "/head_commit/id", json!(after));
        if let Some(Value::Array(commits)) = v.get_mut("commits") {
            for c in commits {
                c["id"] = json!(after);
            }
        }
    }
    set(
        v,
        "/compare",
        json!(format!("{}/compare/{before}...{after}", urls.web)),
    );
    set(v, "/repository/clone_url", json!(urls.https));
    set(v, "/repository/ssh_url", json!(urls.scp));
    set(v, "/repository/git_url", json!(urls.git));
    set(v, "/repository/html_url", json!(urls.web));
    set(v, "/repository/url", json!(urls.web));
    set(v, "/repository/svn_url", json!(urls.web));
}

/// The GitHub `ping` fixture for the repository `urls` names.
pub fn github_ping(urls: &UrlForms) -> Value {
    let mut v = fixture(GITHUB_PING);
    set(&mut v, "/repository/clone_url", json!(urls.https));
    set(&mut v, "/repository/ssh_url", json!(urls.scp));
    set(&mut v, "/repository/html_url", json!(urls.web));
    v
}

/// GitLab's `project` and `repository` URL fields set to `urls`.
fn gitlab_urls(v: &mut Value, urls: &UrlForms) {
    for (p, u) in [
        ("/project/git_http_url", &urls.https),
        ("/project/git_ssh_url", &urls.scp),
        ("/project/web_url", &urls.web),
        ("/project/homepage", &urls.web),
        ("/project/url", &urls.scp),
        ("/project/ssh_url", &urls.scp),
        ("/project/http_url", &urls.https),
        ("/repository/url", &urls.ssh),
        ("/repository/homepage", &urls.web),
        ("/repository/git_http_url", &urls.https),
        ("/repository/git_ssh_url", &urls.scp),
    ] {
        set(v, p, json!(u));
    }
}

/// GitLab `Push Hook` (or, with `fixture_text`, another single-ref GitLab body) for
/// `git_ref` `before..after`.
pub fn gitlab_push_from(
    fixture_text: &str,
    urls: &UrlForms,
    git_ref: &str,
    before: &str,
    after: &str,
) -> Value {
    let mut v = fixture(fixture_text);
    set(&mut v, "/ref", json!(git_ref));
    set(&mut v, "/before", json!(before));
    set(&mut v, "/after", json!(after));
    set(
        &mut v,
        "/checkout_sha",
        if after == ZEROS {
            Value::Null
        } else {
            json!(after)
        },
    );
    gitlab_urls(&mut v, urls);
    v
}

pub fn gitlab_push(urls: &UrlForms, git_ref: &str, before: &str, after: &str) -> Value {
    gitlab_push_from(GITLAB_PUSH, urls, git_ref, before, after)
}

/// GitLab system hook `repository_update` with `changes` of `(ref, before, after)`.
pub fn gitlab_repository_update(urls: &UrlForms, changes: &[(&str, &str, &str)]) -> Value {
    let mut v = fixture(GITLAB_SYSTEM_UPDATE);
    gitlab_urls(&mut v, urls);
    v["changes"] = changes
        .iter()
        .map(|(r, b, a)| json!({"before": b, "after": a, "ref": r}))
        .collect();
    v["refs"] = changes.iter().map(|(r, _, _)| json!(r)).collect();
    v
}

/// The Gitea push fixture for `git_ref` `before..after`.
pub fn gitea_push(urls: &UrlForms, git_ref: &str, before: &str, after: &str) -> Value {
    let mut v = fixture(GITEA_PUSH);
    set(&mut v, "/ref", json!(git_ref));
    set(&mut v, "/before", json!(before));
    set(&mut v, "/after", json!(after));
    set(&mut v, "/head_commit/id", json!(after));
    set(&mut v, "/repository/clone_url", json!(urls.https));
    set(&mut v, "/repository/ssh_url", json!(urls.ssh));
    set(&mut v, "/repository/html_url", json!(urls.web));
    set(
        &mut v,
        "/repository/url",
        json!("https://127.0.0.1/api/v1/repos/x/origin"),
    );
    v
}

/// The Bitbucket Cloud `repo:push` fixture with its first change moved to `branch`
/// `before..after` (the fixture's other changes, a tag and a deleted branch, stay).
pub fn bitbucket_cloud_push(urls: &UrlForms, branch: &str, before: &str, after: &str) -> Value {
    let mut v = fixture(BITBUCKET_CLOUD_PUSH);
    set(&mut v, "/push/changes/0/old/name", json!(branch));
    set(&mut v, "/push/changes/0/new/name", json!(branch));
    set(&mut v, "/push/changes/0/old/target/hash", json!(before));
    set(&mut v, "/push/changes/0/new/target/hash", json!(after));
    set(&mut v, "/push/changes/0/commits/0/hash", json!(after));
    set(&mut v, "/repository/links/html/href", json!(urls.web));
    v
}

/// The Bitbucket Data Center `repo:refs_changed` fixture with its first change moved to
/// `git_ref` `from..to` (its second, a deleted branch, stays).
pub fn bitbucket_dc_changed(urls: &UrlForms, git_ref: &str, from: &str, to: &str) -> Value {
    let mut v = fixture(BITBUCKET_DC_CHANGED);
    let display = git_ref.rsplit('/').next().unwrap_or(git_ref);
    set(&mut v, "/changes/0/ref/id", json!(git_ref));
    set(&mut v, "/changes/0/ref/displayId", json!(display));
    set(&mut v, "/changes/0/refId", json!(git_ref));
    set(&mut v, "/changes/0/fromHash", json!(from));
    set(&mut v, "/changes/0/toHash", json!(to));
    set(&mut v, "/repository/links/clone/0/href", json!(urls.ssh));
    set(
        &mut v,
        "/repository/links/clone/1/href",
        json!("https://127.0.0.1/scm/proj/elsewhere.git"),
    );
    v
}
