//! Shared helpers for the end-to-end tests of `hookmirror serve` (`tests/daemon*.rs`).
//!
//! - [`Server`]: the real binary on a free port with a temp config, its stdout/stderr captured to
//!   files, killed (its whole process group) on drop; HTTP through a blocking reqwest client.
//! - [`Remote`]: a [`crate::support::Origin`] served over `git://` by [`crate::support::GitDaemon`].
//! - Deliveries signed the way each forge signs them ([`github`], [`gitlab_token`],
//!   [`gitlab_signed`], [`gitea`], [`forgejo`], [`bitbucket_cloud`], [`bitbucket_dc`],
//!   [`standard`]), over the exact bytes sent, with bodies made from the captured fixtures in
//!   `tests/fixtures/webhooks/` whose ref, commits and repository URLs are rewritten to name the
//!   test remote.
//! - Raw-socket HTTP for what a well-behaved client cannot do (stalling, oversized bodies).
//!
//! Each test file does `mod support; mod common_daemon;` and uses a subset.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use crate::support::{GitDaemon, Origin, free_port, git, rev_parse, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_hookmirror");
/// 40 zeros: "no commit" in push payloads.
pub const ZEROS: &str = "0000000000000000000000000000000000000000";
/// How long a test waits for a sync or a state it expects (generous: the machine is shared).
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// One entry of `repos:`; `extra` holds more keys, each line indented 4 spaces.
pub fn repo_yaml(name: &str, url: &str, dir: &Path, extra: &str) -> String {
    format!(
        "  - name: {name}\n    url: '{url}'\n    directory: '{}'\n{extra}",
        dir.display()
    )
}

/// A whole config but `listen`: `top` holds more top-level keys (api, limits, initialise, log);
/// every repo retries fast so a failure cannot stall a test.
pub fn config_text(top: &str, repos: &[String]) -> String {
    let log = if top.contains("log:") {
        ""
    } else {
        "log: {level: debug, output: stdout}\n"
    };
    format!(
        "workers: 4\n{log}{top}defaults:\n  retry: {{attempts: 2, initial_delay: 10ms, max_delay: 20ms}}\nrepos:\n{}",
        repos.concat()
    )
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// Asserts the status; returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self.json()
    }
}

/// `hookmirror serve` on 127.0.0.1 with a temp config. Drop kills its process group (the daemon
/// and anything it started) and reaps it.
pub struct Server {
    pub port: u16,
    /// Holds the config, the logs and the daemon's HOME.
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// Bearer token for the API (set with [`Server::with_token`]).
    pub api_token: Option<String>,
    child: Child,
    client: reqwest::blocking::Client,
}

impl Server {
    /// Starts the daemon with [`config_text`]`(top, repos)` and waits until `/healthz` answers.
    pub fn start(top: &str, repos: &[String]) -> Server {
        Server::start_text(&config_text(top, repos))
    }

    /// Starts the daemon with `text` (a config without `listen`).
    pub fn start_text(text: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-serve-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let config_path = dir.path().join("hookmirror.yaml");
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            std::fs::write(&config_path, format!("listen: 127.0.0.1:{port}\n{text}")).unwrap();
            let mut cmd = Command::new(BIN);
            {
                use std::os::unix::process::CommandExt;
                cmd.process_group(0);
            }
            cmd.arg("serve")
                .arg("--config")
                .arg(&config_path)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("LC_ALL", "C")
                .current_dir(&home)
                .stdin(Stdio::null())
                // Files rather than pipes: nothing has to drain them, and they are read at the end.
                .stdout(append(&dir.path().join("stdout.log")))
                .stderr(append(&dir.path().join("stderr.log")));
            let mut child = cmd.spawn().unwrap();
            let url = format!("http://127.0.0.1:{port}/healthz");
            let up = wait_until(Duration::from_secs(20), || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || client
                        .get(&url)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .is_ok_and(|r| r.status().as_u16() == 200)
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Server {
                    port,
                    dir,
                    config_path,
                    api_token: None,
                    child,
                    client,
                };
            }
            // Lost the port to someone else (or did not come up): kill and try another one.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "hookmirror serve did not come up; logs:\n{}",
            read_lossy(&dir.path().join("stdout.log"))
                + &read_lossy(&dir.path().join("stderr.log"))
        );
    }

    /// Uses `token` as the API's bearer token from now on.
    pub fn with_token(mut self, token: &str) -> Server {
        self.api_token = Some(token.to_string());
        self
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// Sends a built request and reads the whole answer.
    pub fn send(&self, req: reqwest::blocking::RequestBuilder) -> Resp {
        let r = req
            .send()
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.logs()));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().unwrap();
        Resp {
            status,
            text,
            headers,
        }
    }

    /// POSTs a delivery to `path`.
    pub fn deliver(&self, path: &str, d: &Delivery) -> Resp {
        let mut req = self.client.post(self.url(path)).body(d.body.clone());
        for (k, v) in &d.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        self.send(req)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path)))
    }

    /// GET with `Authorization: Bearer token`.
    pub fn get_auth(&self, path: &str, token: &str) -> Resp {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
    }

    /// POST with `Authorization: Bearer token` when given.
    pub fn post_auth(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.client.post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req)
    }

    /// `GET /api/repos/{name}` (with the API token when one is set).
    pub fn status(&self, name: &str) -> Value {
        let path = format!("/api/repos/{name}");
        let r = match &self.api_token {
            Some(t) => self.get_auth(&path, t),
            None => self.get(&path),
        };
        assert_eq!(r.status, 200, "status of {name}: {}", r.text);
        r.json()
    }

    /// Polls the status of `name` until `pred` holds; panics (with status and logs) after [`WAIT`].
    #[track_caller]
    pub fn wait_for(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(WAIT, || {
            last = self.status(name);
            pred(&last)
        });
        assert!(
            ok,
            "{name}: timed out waiting for {what}; status: {last:#}\nlogs:\n{}",
            self.logs()
        );
        last
    }

    /// Waits until `name` has finished at least `syncs` syncs and nothing is queued or running.
    #[track_caller]
    pub fn wait_syncs(&self, name: &str, syncs: u64) -> Value {
        self.wait_for(name, &format!("{syncs} syncs and idle"), |s| {
            s["syncs"].as_u64() >= Some(syncs) && idle(s)
        })
    }

    /// Waits until nothing is queued or running for `name`.
    #[track_caller]
    pub fn wait_idle(&self, name: &str) -> Value {
        self.wait_for(name, "idle", idle)
    }

    /// Waits until the checkout in `dir` is at `commit` and `name` is idle.
    #[track_caller]
    pub fn wait_head(&self, name: &str, dir: &Path, commit: &str) -> Value {
        let ok = wait_until(WAIT, || head_of(dir).as_deref() == Some(commit));
        assert!(
            ok,
            "{name}: checkout {} never reached {commit} (at {:?}); status: {:#}\nlogs:\n{}",
            dir.display(),
            head_of(dir),
            self.status(name),
            self.logs()
        );
        let s = self.wait_idle(name);
        assert_eq!(s["commit"], commit, "{s:#}");
        s
    }

    /// What the daemon wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        read_lossy(&self.dir.path().join("stdout.log"))
            + &read_lossy(&self.dir.path().join("stderr.log"))
    }

    /// Asserts the logs hold no panic and none of `secrets`, and that something was logged.
    #[track_caller]
    pub fn assert_clean_logs(&self, secrets: &[&str]) {
        let logs = self.logs();
        assert!(
            logs.contains("hookmirror listening"),
            "the logs were captured: {logs}"
        );
        assert!(!logs.contains("panicked"), "a panic was logged:\n{logs}");
        for s in secrets {
            assert!(!s.is_empty());
            assert!(
                !logs.contains(s),
                "secret {s:?} appears in the logs:\n{logs}"
            );
        }
    }

    /// Sends SIGTERM to the daemon (not its group: children finish on their own).
    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits up to `limit` for the daemon to exit; its status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The commit checked out in `dir`; `None` when there is no checkout (yet).
pub fn head_of(dir: &Path) -> Option<String> {
    if dir.is_dir() {
        rev_parse(dir, "HEAD")
    } else {
        None
    }
}

/// Nothing queued or running.
pub fn idle(s: &Value) -> bool {
    s["state"] == "idle" && s["pending"] == false
}

fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Remotes
// ---------------------------------------------------------------------------------------------

/// An origin (bare repo `origin.git` + work clone) served over `git://`.
pub struct Remote {
    pub origin: Origin,
    pub daemon: GitDaemon,
}

impl Remote {
    pub fn new() -> Remote {
        let origin = Origin::new();
        let daemon = GitDaemon::start(origin.root.path());
        Remote { origin, daemon }
    }

    /// `git://127.0.0.1:PORT/origin.git`.
    pub fn url(&self) -> String {
        self.daemon.url("origin.git")
    }

    /// The URL forms a forge names this repository by.
    pub fn forms(&self) -> UrlForms {
        UrlForms::new("origin.git")
    }

    pub fn head(&self) -> String {
        self.origin.head("main")
    }

    /// A new commit on `main` made with plumbing in the bare repo; returns its id.
    pub fn advance(&self, msg: &str) -> String {
        advance(&self.origin.bare, "main", msg)
    }
}

impl Default for Remote {
    fn default() -> Self {
        Remote::new()
    }
}

/// Moves `branch` of the bare repo `bare` to a new commit (same tree, parent = the old tip,
/// message `msg`) with `git commit-tree` + `git update-ref`; returns the new commit id.
pub fn advance(bare: &Path, branch: &str, msg: &str) -> String {
    let r = format!("refs/heads/{branch}");
    let old = git(bare, &["rev-parse", &r]);
    let tree = git(bare, &["rev-parse", &format!("{old}^{{tree}}")]);
    let new = git(bare, &["commit-tree", &tree, "-p", &old, "-m", msg]);
    git(bare, &["update-ref", &r, &new, &old]);
    new
}

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

// ---------------------------------------------------------------------------------------------
// Raw HTTP over a socket
// ---------------------------------------------------------------------------------------------

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `bytes`, ignoring errors (the server may have answered and closed already).
pub fn write_lossy(s: &mut TcpStream, bytes: &[u8]) -> bool {
    s.write_all(bytes).and_then(|()| s.flush()).is_ok()
}

/// What came back on a raw connection.
#[derive(Debug)]
pub enum RawReply {
    /// A complete HTTP answer: status and body.
    Answer(u16, String),
    /// The server closed (or reset) the connection without a complete answer.
    Closed(String),
    /// Nothing within the time limit; what had arrived so far.
    Silent(String),
}

/// Reads one HTTP/1.1 answer (headers, then a Content-Length body) within `limit`.
pub fn read_reply(s: &mut TcpStream, limit: Duration) -> RawReply {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(reply) = complete_answer(&buf) {
            return reply;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return RawReply::Silent(String::from_utf8_lossy(&buf).into_owned());
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return RawReply::Closed(String::from_utf8_lossy(&buf).into_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return RawReply::Closed(String::from_utf8_lossy(&buf).into_owned()),
        }
    }
}

fn complete_answer(buf: &[u8]) -> Option<RawReply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let body = &buf[end + 4..];
    (body.len() >= len)
        .then(|| RawReply::Answer(status, String::from_utf8_lossy(&body[..len]).into_owned()))
}

/// Request head for a raw POST (`extra` lines end in `\r\n`).
pub fn post_head(path: &str, d: &Delivery, extra: &str) -> String {
    let mut h = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in &d.headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(extra);
    h.push_str("\r\n");
    h
}
