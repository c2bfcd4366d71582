//! What `hookmirror serve` logs, through the real binary: JSON lines and text lines with the
//! sync fields (repo, ref, old, new, duration_ms, trigger, result), `log.output` to a file,
//! timestamps (on by default, off under journald's `JOURNAL_STREAM`, `log.timestamp`, gwg's
//! `logging:` block), the level (`--log-level` over `RUST_LOG` over `log.level`), and secrets
//! (URL credentials, auth tokens, webhook secrets, the API token) kept out of every line, at
//! trace level too.
//!
//! Tests whose doc comment starts with BUG or GAP show a defect in src/ (named there, with a
//! suggested fix); they fail until it is fixed.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use support::{GitHttp, Origin, free_port, rev_parse, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_hookmirror");
const WAIT: Duration = Duration::from_secs(20);
const API_TOKEN: &str = "api-t0ken-Kw7rQ";
const SECRET: &str = "hook-s3cret-Zp3vN";

// ---------------------------------------------------------------------------------------------
// Running the daemon
// ---------------------------------------------------------------------------------------------

/// `hookmirror serve` with stdout and stderr captured to files; killed on drop.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    client: reqwest::blocking::Client,
}

/// What a daemon printed, once it stopped.
struct Output {
    stdout: String,
    stderr: String,
}

impl Output {
    fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    fn all(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

impl Daemon {
    /// Starts serve with `listen` + `body` as its config, `args` after `serve --config F`, and a
    /// clean environment plus `env`; waits until /healthz answers.
    fn start(body: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-logging-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        // The config gets a folder of its own: the daemon watches the config's folder, and the
        // captured output must not be in it.
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let config = dir.path().join("conf").join("hookmirror.yaml");
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            std::fs::write(&config, format!("listen: 127.0.0.1:{port}\n{body}")).unwrap();
            let mut cmd = Command::new(BIN);
            {
                use std::os::unix::process::CommandExt;
                cmd.process_group(0);
            }
            cmd.arg("serve")
                .arg("--config")
                .arg(&config)
                .args(args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("LC_ALL", "C")
                .current_dir(&home)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
                .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().unwrap();
            let url = format!("http://127.0.0.1:{port}/healthz");
            let up = wait_until(WAIT, || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || client
                        .get(&url)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .is_ok_and(|r| r.status() == 200)
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Daemon {
                    child,
                    dir,
                    port,
                    client,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "hookmirror serve did not come up:\n{}{}",
            read_lossy(&dir.path().join("stdout")),
            read_lossy(&dir.path().join("stderr"))
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn output(&self) -> Output {
        Output {
            stdout: read_lossy(&self.dir.path().join("stdout")),
            stderr: read_lossy(&self.dir.path().join("stderr")),
        }
    }

    /// `GET /api/repos/{name}`.
    fn status(&self, name: &str) -> Value {
        let r = self
            .client
            .get(self.url(&format!("/api/repos/{name}")))
            .bearer_auth(API_TOKEN)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    }

    /// Waits until `name` finished `n` syncs and is idle.
    #[track_caller]
    fn wait_syncs(&self, name: &str, n: u64) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(WAIT, || {
            last = self.status(name);
            last["syncs"].as_u64() >= Some(n) && last["state"] == "idle" && last["pending"] == false
        });
        assert!(
            ok,
            "{name}: not {n} syncs: {last:#}\n{}",
            self.output().all()
        );
        last
    }

    /// `POST /api/repos/{name}/sync?wait=true`; the HTTP status.
    fn api_sync(&self, name: &str) -> u16 {
        self.client
            .post(self.url(&format!("/api/repos/{name}/sync?wait=true")))
            .bearer_auth(API_TOKEN)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// POSTs a GitHub push to `/hooks/{name}`; the HTTP status.
    fn push(&self, name: &str, d: &Delivery) -> u16 {
        let mut req = self
            .client
            .post(self.url(&format!("/hooks/{name}")))
            .body(d.body.clone());
        for (k, v) in &d.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req.send().unwrap().status().as_u16()
    }

    /// SIGTERM, wait for the exit (code 0), and what it printed.
    fn stop(mut self) -> Output {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut status = None;
        wait_until(WAIT, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        let out = self.output();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "serve did not stop cleanly\n{}",
            out.all()
        );
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn work_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hookmirror-logging-work-")
        .tempdir()
        .unwrap()
}

/// A config (without `listen`): `top` holds top-level keys such as `log:`; one repo `site`.
fn config(top: &str, url: &str, dir: &Path) -> String {
    format!(
        "workers: 2\n{top}api: {{token: {API_TOKEN}}}\nrepos:\n  - name: site\n    url: '{url}'\n    directory: '{}'\n    secret: {SECRET}\n    retry: {{attempts: 1}}\n",
        dir.display()
    )
}

struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A GitHub push of `refs/heads/main` to `after` for the repository at `url`, signed with
/// [`SECRET`], with delivery id `id`.
fn github_push(url: &str, after: &str, id: &str) -> Delivery {
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "repository": {"clone_url": url},
    }))
    .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    Delivery {
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-GitHub-Event".into(), "push".into()),
            ("X-GitHub-Delivery".into(), id.into()),
            (
                "X-Hub-Signature-256".into(),
                format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            ),
        ],
        body,
    }
}

/// `key=value` pairs of a text log line (values may be quoted; a quoted value may hold spaces).
fn fields(line: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(' ').map_or(0, |i| i + 1);
        let key = rest[key_start..eq].to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), &q[(end + 1).min(q.len())..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = next;
    }
    out
}

/// Whether the line starts with an RFC 3339 timestamp.
fn stamped(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|w| chrono::DateTime::parse_from_rfc3339(w).is_ok())
}

const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// The level word of a text line (with or without a timestamp before it).
fn level(line: &str) -> Option<&str> {
    line.split_whitespace().find(|w| LEVELS.contains(w))
}

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

/// Starts a daemon in `format` (`top`), then brings about a startup, a webhook and an API sync,
/// each moving the checkout; returns the output and the commits (initial, pushed, api).
fn three_syncs(top: &str) -> (Output, [String; 3], String) {
    let origin = Origin::new();
    let work = work_dir();
    let dir = work.path().join("site");
    let d = Daemon::start(&config(top, &origin.url(), &dir), &[], &[]);
    let c0 = origin.head("main");
    d.wait_syncs("site", 1);
    let c1 = origin.commit("webhook.txt", "1\n");
    let id = "4f1c2a9e-0000-4000-8000-logging00001".to_string();
    assert_eq!(d.push("site", &github_push(&origin.url(), &c1, &id)), 202);
    d.wait_syncs("site", 2);
    assert_eq!(rev_parse(&dir, "HEAD").as_deref(), Some(c1.as_str()));
    let c2 = origin.commit("api.txt", "2\n");
    assert_eq!(d.api_sync("site"), 200);
    (d.stop(), [c0, c1, c2], id)
}

#[test]
fn json_lines_carry_the_sync_fields() {
    let (out, [c0, c1, c2], id) = three_syncs("log: {format: json}\n");
    let mut syncs = Vec::new();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", out.all()));
        assert!(v.is_object(), "{line}");
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert!(
            v["timestamp"]
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{line}"
        );
        if v["message"] == "sync" {
            syncs.push(v);
        }
    }
    assert!(out.stderr.trim().is_empty(), "{}", out.all());
    let by_trigger = |t: &str| {
        syncs
            .iter()
            .find(|v| v["trigger"] == t)
            .unwrap_or_else(|| panic!("no sync line with trigger {t:?}:\n{}", out.all()))
            .clone()
    };
    let expect = [
        ("startup".to_string(), "none".to_string(), c0.clone()),
        (format!("webhook {id}"), c0, c1.clone()),
        ("api".to_string(), c1, c2),
    ];
    for (trigger, old, new) in expect {
        let v = by_trigger(&trigger);
        assert_eq!(v["repo"], "site", "{v}");
        assert_eq!(v["ref"], "refs/heads/main", "{v}");
        assert_eq!(v["old"], old.as_str(), "{v}");
        assert_eq!(v["new"], new.as_str(), "{v}");
        assert!(v["duration_ms"].is_u64(), "duration_ms is a number: {v}");
        assert_eq!(v["result"], "ok", "{v}");
        assert_eq!(v["level"], "INFO", "{v}");
    }
}

#[test]
fn text_lines_carry_the_sync_fields_as_key_value() {
    // No `log:` block: text is the default.
    let (out, [c0, c1, c2], id) = three_syncs("");
    let syncs: Vec<HashMap<String, String>> = out
        .lines()
        .into_iter()
        .filter(|l| l.contains(" sync ") && l.contains("trigger="))
        .map(fields)
        .collect();
    let expect = [
        ("startup".to_string(), "none".to_string(), c0.clone()),
        (format!("webhook {id}"), c0, c1.clone()),
        ("api".to_string(), c1, c2),
    ];
    for (trigger, old, new) in expect {
        let f = syncs
            .iter()
            .find(|f| f.get("trigger") == Some(&trigger))
            .unwrap_or_else(|| panic!("no sync line with trigger={trigger:?}:\n{}", out.all()));
        assert_eq!(f["repo"], "site", "{f:?}");
        assert_eq!(f["ref"], "refs/heads/main", "{f:?}");
        assert_eq!(f["old"], old, "{f:?}");
        assert_eq!(f["new"], new, "{f:?}");
        assert!(f["duration_ms"].parse::<u64>().is_ok(), "{f:?}");
        assert_eq!(f["result"], "ok", "{f:?}");
    }
    for line in out.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "text, not JSON: {line}"
        );
        assert!(level(line).is_some(), "every line has a level: {line:?}");
    }
}

#[test]
fn log_output_goes_to_the_named_file_only() {
    let origin = Origin::new();
    let work = work_dir();
    let dir = work.path().join("site");
    let file = work.path().join("logs").join("hookmirror.log");
    std::fs::create_dir(file.parent().unwrap()).unwrap();
    let d = Daemon::start(
        &config(
            &format!("log: {{output: '{}', format: json}}\n", file.display()),
            &origin.url(),
            &dir,
        ),
        &[],
        &[],
    );
    d.wait_syncs("site", 1);
    let out = d.stop();
    assert_eq!(out.stdout, "", "nothing on stdout");
    assert_eq!(out.stderr, "", "nothing on stderr");
    let text = read_lossy(&file);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["message"] == "hookmirror listening"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "sync" && v["trigger"] == "startup" && v["repo"] == "site"),
        "{text}"
    );
    assert!(
        lines.iter().any(|v| v["message"] == "stopped"),
        "the last line reaches the file: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// The lines a daemon with `top` and `env` printed, after one startup sync.
fn lines_of(top: &str, env: &[(&str, &str)]) -> Output {
    let origin = Origin::new();
    let work = work_dir();
    let d = Daemon::start(
        &config(top, &origin.url(), &work.path().join("site")),
        &[],
        env,
    );
    d.wait_syncs("site", 1);
    d.stop()
}

#[track_caller]
fn assert_all(out: &Output, want_stamp: bool, what: &str) {
    let lines = out.lines();
    assert!(lines.len() >= 3, "{what}: too few lines\n{}", out.all());
    for line in lines {
        assert_eq!(stamped(line), want_stamp, "{what}: {line:?}");
        if !want_stamp {
            assert!(
                LEVELS.contains(&line.split_whitespace().next().unwrap_or("")),
                "{what}: the level starts the line: {line:?}"
            );
        }
    }
}

#[test]
fn timestamps_default_on_but_off_under_journald() {
    let out = lines_of("", &[]);
    assert_all(&out, true, "default");
    let out = lines_of("", &[("JOURNAL_STREAM", "8:123456")]);
    assert_all(&out, false, "JOURNAL_STREAM set");
    // An explicit choice wins over the journald guess.
    let out = lines_of(
        "log: {timestamp: true}\n",
        &[("JOURNAL_STREAM", "8:123456")],
    );
    assert_all(&out, true, "log.timestamp: true under journald");
}

#[test]
fn timestamps_off_by_config_in_both_spellings() {
    let out = lines_of("log: {timestamp: false}\n", &[]);
    assert_all(&out, false, "log.timestamp: false");
    // gwg's block, as gwg's README writes it.
    let out = lines_of(
        "logging:\n  format: text\n  output: stdout\n  level: info\n  timestamp: false\n",
        &[],
    );
    assert_all(&out, false, "gwg logging.timestamp: false");
    // gwg's block in JSON: no timestamp field.
    let out = lines_of("logging: {format: json, timestamp: false}\n", &[]);
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v.get("timestamp").is_none(), "{line}");
        assert!(v["level"].is_string(), "{line}");
    }
}

// ---------------------------------------------------------------------------------------------
// Levels
// ---------------------------------------------------------------------------------------------

/// The set of levels a daemon logged, with config level `warn`, `args` and `env`, after a
/// startup sync and an API sync.
fn levels_with(args: &[&str], env: &[(&str, &str)]) -> (Vec<String>, Output) {
    let origin = Origin::new();
    let work = work_dir();
    let d = Daemon::start(
        &config(
            "log: {level: warn}\n",
            &origin.url(),
            &work.path().join("site"),
        ),
        args,
        env,
    );
    d.wait_syncs("site", 1);
    assert_eq!(d.api_sync("site"), 200);
    let out = d.stop();
    let mut levels: Vec<String> = out
        .lines()
        .iter()
        .filter_map(|l| level(l).map(str::to_string))
        .collect();
    levels.sort();
    levels.dedup();
    (levels, out)
}

#[test]
fn the_config_level_applies_and_log_level_and_rust_log_override_it() {
    // log.level: warn alone: nothing at info or below (a clean run logs no warnings).
    let (levels, out) = levels_with(&[], &[]);
    assert!(
        levels.iter().all(|l| l == "WARN" || l == "ERROR"),
        "log.level: warn logged {levels:?}\n{}",
        out.all()
    );

    // --log-level debug: debug lines (e.g. "sync requested") appear.
    let (levels, out) = levels_with(&["--log-level", "debug"], &[]);
    assert!(
        levels.contains(&"DEBUG".to_string()) && levels.contains(&"INFO".to_string()),
        "--log-level debug logged {levels:?}\n{}",
        out.all()
    );
    assert!(out.stdout.contains("sync requested"), "{}", out.all());
    assert!(!levels.contains(&"TRACE".to_string()), "{levels:?}");

    // RUST_LOG=debug without --log-level.
    let (levels, out) = levels_with(&[], &[("RUST_LOG", "debug")]);
    assert!(
        levels.contains(&"DEBUG".to_string()),
        "RUST_LOG=debug logged {levels:?}\n{}",
        out.all()
    );

    // --log-level wins over RUST_LOG.
    let (levels, out) = levels_with(&["--log-level", "error"], &[("RUST_LOG", "debug")]);
    assert!(
        levels.iter().all(|l| l == "ERROR"),
        "--log-level error with RUST_LOG=debug logged {levels:?}\n{}",
        out.all()
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn secrets_and_url_credentials_never_reach_the_logs_even_at_trace() {
    let origin = Origin::new();
    let right = "right-t0ken-Xq9mB";
    let http = GitHttp::start(origin.root.path(), "alice", right);
    let work = work_dir();
    let wrong = "wrong-t0ken-Vb2cL";
    let auth_token = "auth-t0ken-Hn4sD";
    // `nosuch`: authenticates, then fails with a message that quotes the (redacted) URL.
    let good_creds = http.url_with_credentials("origin.git", "alice", right);
    let bad_creds = http.url_with_credentials("origin.git", "alice", wrong);
    let repo = |name: &str, url: &str, extra: &str| {
        format!(
            "  - name: {name}\n    url: '{url}'\n    directory: '{}'\n    secret: {SECRET}-{name}\n{extra}",
            work.path().join(name).display()
        )
    };
    let body = format!(
        "workers: 2\napi: {{token: {API_TOKEN}}}\ndefaults:\n  retry: {{attempts: 2, initial_delay: 10ms, max_delay: 20ms}}\nrepos:\n{}{}{}",
        repo("nosuch", &good_creds, "    branch: nosuch\n"),
        repo("badurl", &bad_creds, ""),
        repo(
            "badauth",
            &http.url("origin.git"),
            &format!("    auth: {{username: alice, token: {auth_token}}}\n")
        ),
    );
    let secrets = [
        right.to_string(),
        wrong.to_string(),
        auth_token.to_string(),
        SECRET.to_string(),
        API_TOKEN.to_string(),
    ];
    for (args, env) in [
        (vec!["--log-level", "trace"], vec![]),
        (vec![], vec![("RUST_LOG", "trace")]),
    ] {
        let d = Daemon::start(&body, &args, &env);
        for name in ["nosuch", "badurl", "badauth"] {
            let s = d.wait_syncs(name, 1);
            assert!(s["last_error"].is_object(), "{name} fails: {s:#}");
            for secret in &secrets {
                assert!(
                    !s.to_string().contains(secret.as_str()),
                    "the API shows {secret}: {s}"
                );
            }
        }
        // A verified webhook, a refused one, an API sync, and an API call with a wrong token.
        let head = origin.head("main");
        let signed = |id: &str| {
            let mut d = github_push(&bad_creds, &head, id);
            let mut mac =
                Hmac::<sha2::Sha256>::new_from_slice(format!("{SECRET}-badurl").as_bytes())
                    .unwrap();
            mac.update(&d.body);
            d.headers.retain(|(k, _)| k != "X-Hub-Signature-256");
            d.headers.push((
                "X-Hub-Signature-256".into(),
                format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            ));
            d
        };
        assert_eq!(d.push("badurl", &signed("secrets-1")), 202);
        assert_eq!(
            d.push("badurl", &github_push(&bad_creds, &head, "secrets-2")),
            401
        );
        assert_eq!(d.api_sync("badauth"), 502);
        let refused = d
            .client
            .get(d.url("/api/repos"))
            .bearer_auth("not-the-token")
            .send()
            .unwrap();
        assert_eq!(refused.status(), 401);
        d.wait_syncs("badurl", 2);
        let out = d.stop();
        let all = out.all();
        // hookmirror itself logs nothing at trace (the watcher crates that do are capped at
        // info); debug lines prove the level took effect.
        assert!(
            all.contains("DEBUG"),
            "{args:?} {env:?}: trace level is on\n{all}"
        );
        assert!(
            all.contains("alice:***@127.0.0.1"),
            "the URL is logged, redacted:\n{all}"
        );
        assert!(
            all.matches("result=\"failed\"").count() >= 4,
            "the failures were logged:\n{all}"
        );
        for secret in &secrets {
            assert!(
                !all.contains(secret.as_str()),
                "{args:?} {env:?}: {secret:?} appears in the logs:\n{}",
                all.lines()
                    .filter(|l| l.contains(secret.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    assert!(
        http.unauthorized_requests() > 0,
        "the wrong tokens were really sent"
    );
}

// ---------------------------------------------------------------------------------------------
// Found while testing logging
// ---------------------------------------------------------------------------------------------

/// GAP (src/url.rs `redact` and `redact_in_text`, used by the API's `url` and by error
/// messages): a token given as the URL's user name, `https://TOKEN@host/owner/repo.git` (how
/// GitHub documents cloning with a personal access token), is left as it is, because only a
/// `user:password` pair counts as a credential. The token then shows in `GET /api/repos`, in
/// `hookmirror check`, in log lines that quote the URL, and in `.git/config` of the checkout
/// (src/sync/git.rs `stored_url`). Fix: treat a user name without password as a credential
/// on http(s) URLs (ssh's `git@` is a user, not a secret), e.g. `https://***@host/...`.
#[test]
fn a_token_given_as_the_url_user_name_is_redacted() {
    let origin = Origin::new();
    let token = "ghp_t0kenAsUserXq9mBVb2cLHn4sD";
    let http = GitHttp::start(origin.root.path(), token, "");
    let work = work_dir();
    let url = format!("http://{token}@127.0.0.1:{}/origin.git", http.port);
    let d = Daemon::start(
        &config("log: {level: trace}\n", &url, &work.path().join("site")),
        &[],
        &[],
    );
    let s = d.wait_syncs("site", 1);
    let out = d.stop();
    assert!(
        !s["url"].as_str().unwrap_or_default().contains(token),
        "GET /api/repos/site shows the token: url = {}",
        s["url"]
    );
    assert!(!out.all().contains(token), "the logs show the token");
}

/// BUG (src/logging.rs `filter` with src/reload.rs `Watcher`): at trace level, the `notify`
/// crate logs every inotify event in the config's folder ("inotify event: ..."). When the log
/// goes to a file in that folder (`log.output: /etc/hookmirror/hookmirror.log`, or stdout
/// redirected there), each line written is an event that is logged again: an idle daemon
/// writes tens of MB per second until the disk is full. Fix: cap the watcher's dependencies
/// (`notify=info`, `inotify=info`, `mio=info`) in the filter unless a directive names them, or
/// stop watching the log file's own events before they reach the logger.
#[test]
fn trace_logging_into_the_config_folder_does_not_feed_on_itself() {
    let origin = Origin::new();
    let work = work_dir();
    // The log file next to the config (the Daemon puts the config in `conf/`).
    let d = Daemon::start(
        &config(
            "log: {output: hookmirror.log}\n",
            &origin.url(),
            &work.path().join("site"),
        ),
        &["--log-level", "trace"],
        &[],
    );
    d.wait_syncs("site", 1);
    let log = d.dir.path().join("conf").join("hookmirror.log");
    std::thread::sleep(Duration::from_millis(300));
    let before = std::fs::metadata(&log).unwrap().len();
    std::thread::sleep(Duration::from_millis(1000));
    let after = std::fs::metadata(&log).unwrap().len();
    drop(d);
    assert!(
        after - before < 256 * 1024,
        "an idle daemon wrote {} KiB of log in one second",
        (after - before) / 1024
    );
}
