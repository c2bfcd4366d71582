//! Hot reload of `hookmirror serve`, through the real binary against real git remotes: the file
//! watcher (a file renamed over the config as editors do, and a plain in-place rewrite), SIGHUP,
//! refused invalid configs (the old config keeps serving), a changed `listen`, a rotated
//! `secret_file`, a changed branch, a changed `workers`, and schedules (`interval`, cron with a
//! time zone) running in the daemon with `next_run` in the API.
//!
//! Tests whose doc comment starts with BUG or GAP show a defect in src/ (named there, with a
//! suggested fix); they fail until it is fixed.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use support::{GitDaemon, Origin, free_port, rev_parse, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_hookmirror");
/// How long a test waits for something it expects (generous: the machine is shared).
const WAIT: Duration = Duration::from_secs(20);
const API_TOKEN: &str = "reload-test-api-token";

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

/// `hookmirror serve` with a config in a temp dir; killed (with its process group) on drop.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// What `--config` names.
    config: PathBuf,
    /// The file holding the config text (`config` itself, or where the symlink `config` points).
    target: PathBuf,
    client: reqwest::blocking::Client,
}

impl Daemon {
    /// Starts the daemon with `listen: 127.0.0.1:PORT` followed by `body`; waits for /healthz.
    fn start(body: &str) -> Daemon {
        Daemon::start_with(body, false, &[])
    }

    /// With `symlink`, `--config` names a symlink to a file in another folder. `files` are
    /// written into the config's folder first (`name`, content).
    fn start_with(body: &str, symlink: bool, files: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-reload-")
            .tempdir()
            .unwrap();
        // The config's folder holds only the config and its files (the daemon watches it).
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        for (name, content) in files {
            std::fs::write(conf.join(name), content).unwrap();
        }
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let config = conf.join("hookmirror.yaml");
        let target = if symlink {
            let elsewhere = dir.path().join("elsewhere");
            std::fs::create_dir(&elsewhere).unwrap();
            let target = elsewhere.join("real.yaml");
            std::os::unix::fs::symlink(&target, &config).unwrap();
            target
        } else {
            config.clone()
        };
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            std::fs::write(&target, with_listen(port, body)).unwrap();
            let mut cmd = Command::new(BIN);
            {
                use std::os::unix::process::CommandExt;
                cmd.process_group(0);
            }
            cmd.arg("serve")
                .arg("--config")
                .arg(&config)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("LC_ALL", "C")
                .current_dir(&home)
                .stdin(Stdio::null())
                .stdout(append(&dir.path().join("daemon.log")))
                .stderr(append(&dir.path().join("daemon.log")));
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
                    config,
                    target,
                    client,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "hookmirror serve did not come up:\n{}",
            read_lossy(&dir.path().join("daemon.log"))
        );
    }

    /// The config's folder.
    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    fn logs(&self) -> String {
        read_lossy(&self.dir.path().join("daemon.log"))
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Writes a new file next to the config and renames it over the config (what editors,
    /// `install` and config management do).
    fn replace_config(&self, body: &str) {
        let tmp = self.target.with_extension("yaml.new");
        std::fs::write(&tmp, with_listen(self.port, body)).unwrap();
        std::fs::rename(&tmp, &self.target).unwrap();
    }

    /// Truncates the config and writes the new text into the same file.
    fn rewrite_config(&self, body: &str) {
        std::fs::write(&self.target, with_listen(self.port, body)).unwrap();
    }

    /// Like [`Daemon::replace_config`] with the exact text (for a changed `listen`).
    fn replace_config_text(&self, text: &str) {
        let tmp = self.target.with_extension("yaml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.target).unwrap();
    }

    fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(API_TOKEN)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.logs()));
        (r.status().as_u16(), r.text().unwrap())
    }

    /// `GET /api/repos`.
    fn repos(&self) -> Value {
        let (status, text) = self.get("/api/repos");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn names(&self) -> Vec<String> {
        self.repos()["repos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn reload_status(&self) -> Value {
        self.repos()["reload"].clone()
    }

    /// `GET /api/repos/{name}`.
    fn status(&self, name: &str) -> Value {
        let (status, text) = self.get(&format!("/api/repos/{name}"));
        assert_eq!(status, 200, "{name}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Polls `GET /api/repos` until `pred` holds; panics with the last answer and the logs.
    #[track_caller]
    fn wait_repos(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(WAIT, || {
            last = self.repos();
            pred(&last)
        });
        assert!(
            ok,
            "timed out waiting for {what}; /api/repos: {last:#}\nlogs:\n{}",
            self.logs()
        );
        last
    }

    /// Waits until `reload.reloads` (successful reloads) reaches `n`.
    #[track_caller]
    fn wait_reloads(&self, n: u64) -> Value {
        self.wait_repos(&format!("{n} reloads"), |v| {
            v["reload"]["reloads"].as_u64() >= Some(n)
        })["reload"]
            .clone()
    }

    /// Waits until the checkout in `dir` is at `commit` and the API shows it.
    #[track_caller]
    fn wait_head(&self, name: &str, dir: &Path, commit: &str) {
        let ok = wait_until(WAIT, || {
            head_of(dir).as_deref() == Some(commit) && self.status(name)["commit"] == commit
        });
        assert!(
            ok,
            "{name}: {} never reached {commit} (at {:?})\nlogs:\n{}",
            dir.display(),
            head_of(dir),
            self.logs()
        );
    }

    /// POSTs a GitHub push delivery to `path`; the status code.
    fn deliver(&self, path: &str, d: &Delivery) -> u16 {
        let mut req = self.client.post(self.url(path)).body(d.body.clone());
        for (k, v) in &d.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let r = req
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.logs()));
        r.status().as_u16()
    }

    /// `POST /api/repos/{name}/sync?wait=true`; the report.
    fn sync_wait(&self, name: &str) -> Value {
        let r = self
            .client
            .post(self.url(&format!("/api/repos/{name}/sync?wait=true")))
            .bearer_auth(API_TOKEN)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, 200, "sync {name}: {text}\nlogs:\n{}", self.logs());
        serde_json::from_str(&text).unwrap()
    }

    /// Sends SIGHUP once the daemon handles it (its SigCgt mask has bit 0): before that, the
    /// default action would kill it.
    fn sighup(&self) {
        let status_file = format!("/proc/{}/status", self.child.id());
        let handled = wait_until(WAIT, || {
            std::fs::read_to_string(&status_file)
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("SigCgt:"))
                        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap_or(0) & 1 == 1)
                })
                .unwrap_or(false)
        });
        assert!(handled, "the daemon never installed a SIGHUP handler");
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_listen(port: u16, body: &str) -> String {
    format!("listen: 127.0.0.1:{port}\n{body}")
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
// Config text and deliveries
// ---------------------------------------------------------------------------------------------

/// Top-level keys every test uses, `workers` as given.
fn preamble(workers: usize) -> String {
    format!(
        "workers: {workers}\nlog: {{level: debug}}\napi: {{token: {API_TOKEN}}}\n\
         defaults:\n  retry: {{attempts: 2, initial_delay: 10ms, max_delay: 20ms}}\nrepos:\n"
    )
}

/// One entry of `repos:` with the secret `secret-NAME`; `extra` lines are indented 4.
fn repo(name: &str, url: &str, dir: &Path, extra: &str) -> String {
    format!(
        "  - name: {name}\n    url: '{url}'\n    directory: '{}'\n    secret: secret-{name}\n{extra}",
        dir.display()
    )
}

fn config(repos: &[String]) -> String {
    preamble(2) + &repos.concat()
}

struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A GitHub push of `refs/heads/BRANCH` to `after`, naming the repository `url`, signed with
/// `secret` (X-Hub-Signature-256), with a fresh delivery id.
fn github_push(secret: &str, url: &str, branch: &str, after: &str) -> Delivery {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let body = serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": {"clone_url": url, "full_name": "test/origin"},
    }))
    .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let id = format!(
        "reload-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    Delivery {
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "GitHub-Hookshot/test".into()),
            ("X-GitHub-Event".into(), "push".into()),
            ("X-GitHub-Delivery".into(), id),
            ("X-Hub-Signature-256".into(), signature),
        ],
        body,
    }
}

/// Whether connecting to 127.0.0.1:`port` is refused (nothing listens).
fn refused(port: u16) -> bool {
    match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) {
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
    }
}

/// The commit checked out in `dir`, `None` while it is not a checkout (yet).
fn head_of(dir: &Path) -> Option<String> {
    dir.join(".git")
        .exists()
        .then(|| rev_parse(dir, "HEAD"))
        .flatten()
}

fn work_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hookmirror-reload-work-")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Adding and removing repositories
// ---------------------------------------------------------------------------------------------

#[test]
fn added_repos_are_cloned_and_removed_repos_stop_receiving_webhooks() {
    let (a, b, c) = (Origin::new(), Origin::new(), Origin::new());
    let work = work_dir();
    let (da, db, dc) = (
        work.path().join("a"),
        work.path().join("b"),
        work.path().join("c"),
    );
    let ra = repo("a", &a.url(), &da, "");
    let rb = repo("b", &b.url(), &db, "");
    let rc = repo("c", &c.url(), &dc, "");
    let d = Daemon::start(&config(std::slice::from_ref(&ra)));
    d.wait_head("a", &da, &a.head("main"));
    assert_eq!(d.names(), ["a"]);

    // An editor's save: a new file renamed over the config.
    d.replace_config(&config(&[ra.clone(), rb.clone()]));
    d.wait_head("b", &db, &b.head("main"));
    assert_eq!(d.names(), ["a", "b"]);
    assert_eq!(d.status("b")["last_trigger"], "reload", "{}", d.logs());

    // A plain in-place rewrite of the same file.
    d.rewrite_config(&config(&[ra.clone(), rb.clone(), rc.clone()]));
    d.wait_head("c", &dc, &c.head("main"));
    assert_eq!(d.names(), ["a", "b", "c"]);

    // Remove b.
    let b_head = b.head("main");
    d.replace_config(&config(&[ra.clone(), rc.clone()]));
    d.wait_repos("b to leave the API", |v| {
        v["repos"].as_array().unwrap().len() == 2
    });
    assert_eq!(d.names(), ["a", "c"]);
    let (status, _) = d.get("/api/repos/b");
    assert_eq!(status, 404, "a removed repo has no status");
    let newer = b.commit("after-removal.txt", "x\n");
    assert_eq!(
        d.deliver(
            "/hooks/b",
            &github_push("secret-b", &b.url(), "main", &newer)
        ),
        404,
        "a removed repo's webhook path is gone"
    );
    assert_eq!(
        rev_parse(&db, "HEAD").as_deref(),
        Some(b_head.as_str()),
        "a removed repo's checkout stays on disk, untouched"
    );
    assert!(db.join("README").is_file());

    // The repos that stayed still take webhooks.
    let c_new = c.commit("more.txt", "more\n");
    assert_eq!(
        d.deliver(
            "/hooks/c",
            &github_push("secret-c", &c.url(), "main", &c_new)
        ),
        202
    );
    d.wait_head("c", &dc, &c_new);

    let reload = d.reload_status();
    assert_eq!(reload["reloads"], 3, "{reload:#}\n{}", d.logs());
    assert_eq!(reload["failures"], 0, "{reload:#}");
    assert!(reload["last_reload"].is_string(), "{reload:#}");
    assert!(reload["last_error"].is_null(), "{reload:#}");
}

// ---------------------------------------------------------------------------------------------
// Invalid configs
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_configs_are_refused_and_the_running_config_keeps_serving() {
    let a = Origin::new();
    let b = Origin::new();
    let work = work_dir();
    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let ra = repo("a", &a.url(), &da, "");
    let good = config(std::slice::from_ref(&ra));
    let d = Daemon::start(&good);
    d.wait_head("a", &da, &a.head("main"));
    let path = d.config.display().to_string();

    // 1. A YAML syntax error ("mapping values are not allowed"), saved in place.
    let broken = format!("{good}  - name: b\n    url: x: y\n");
    let line = with_listen(d.port, &broken).lines().count(); // the last line
    d.rewrite_config(&broken);
    let reload = d.wait_repos("the broken config to be refused", |v| {
        v["reload"]["failures"] == 1
    })["reload"]
        .clone();
    let error = reload["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("{path}:{line}:")),
        "last_error names the file and line {line}: {reload:#}"
    );
    assert_eq!(reload["reloads"], 0, "{reload:#}");
    assert_eq!(d.names(), ["a"]);

    // Webhooks keep working with the old config.
    let next = a.commit("one.txt", "1\n");
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push("secret-a", &a.url(), "main", &next)
        ),
        202,
        "{}",
        d.logs()
    );
    d.wait_head("a", &da, &next);

    // 2. An unknown key (a typo), saved by rename.
    let typo = config(&[repo("a", &a.url(), &da, "    brnach: dev\n")]);
    let line = with_listen(d.port, &typo)
        .lines()
        .position(|l| l.contains("brnach"))
        .unwrap()
        + 1;
    d.replace_config(&typo);
    let reload =
        d.wait_repos("the typo to be refused", |v| v["reload"]["failures"] == 2)["reload"].clone();
    let error = reload["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("{path}:{line}:")) && error.contains("brnach"),
        "last_error names the file, line {line} and the key: {reload:#}"
    );
    assert_eq!(reload["reloads"], 0, "{reload:#}");
    let next = a.commit("two.txt", "2\n");
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push("secret-a", &a.url(), "main", &next)
        ),
        202
    );
    d.wait_head("a", &da, &next);
    assert!(
        d.logs().contains("config reload refused"),
        "the refusal is logged:\n{}",
        d.logs()
    );

    // 3. The fix is applied (and adds a repo, to show it took effect).
    d.replace_config(&config(&[ra, repo("b", &b.url(), &db, "")]));
    let reload = d.wait_reloads(1);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    assert_eq!(reload["failures"], 2, "{reload:#}");
    d.wait_head("b", &db, &b.head("main"));
    assert_eq!(d.names(), ["a", "b"]);
}

// ---------------------------------------------------------------------------------------------
// listen
// ---------------------------------------------------------------------------------------------

#[test]
fn a_changed_listen_moves_the_daemon_to_the_new_port() {
    let a = Origin::new();
    let work = work_dir();
    let da = work.path().join("a");
    let body = config(&[repo("a", &a.url(), &da, "")]);
    let d = Daemon::start(&body);
    d.wait_head("a", &da, &a.head("main"));
    let old = d.port;
    let mut new = free_port();
    while new == old {
        new = free_port();
    }
    d.replace_config_text(&with_listen(new, &body));

    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answers = |port: u16| {
        client
            .get(format!("http://127.0.0.1:{port}/api/repos"))
            .bearer_auth(API_TOKEN)
            .send()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| r.json::<Value>().ok())
    };
    let mut on_new = None;
    assert!(
        wait_until(WAIT, || {
            on_new = answers(new);
            on_new.is_some()
        }),
        "the daemon never answered on the new port {new}\n{}",
        d.logs()
    );
    let on_new = on_new.unwrap();
    assert_eq!(on_new["reload"]["reloads"], 1, "{on_new:#}");
    assert_eq!(on_new["repos"][0]["name"], "a");
    // The old port is released once the switch is done.
    assert!(
        wait_until(Duration::from_secs(10), || refused(old)),
        "the old port {old} still accepts connections\n{}",
        d.logs()
    );
    assert!(answers(old).is_none());
    // Webhooks arrive on the new port.
    let next = a.commit("moved.txt", "x\n");
    let delivery = github_push("secret-a", &a.url(), "main", &next);
    let mut req = client
        .post(format!("http://127.0.0.1:{new}/hooks/a"))
        .body(delivery.body.clone());
    for (k, v) in &delivery.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    assert_eq!(req.send().unwrap().status(), 202);
    assert!(
        wait_until(WAIT, || rev_parse(&da, "HEAD").as_deref()
            == Some(next.as_str())),
        "{}",
        d.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// Secret files
// ---------------------------------------------------------------------------------------------

#[test]
fn a_rotated_secret_file_takes_effect_without_touching_the_config() {
    let a = Origin::new();
    let work = work_dir();
    let da = work.path().join("a");
    let body = format!(
        "{}  - name: a\n    url: '{}'\n    directory: '{}'\n    branch: main\n    secret_file: hook.secret\n",
        preamble(2),
        a.url(),
        da.display()
    );
    let d = Daemon::start_with(&body, false, &[("hook.secret", "old-secret\n")]);
    d.wait_head("a", &da, &a.head("main"));
    let push = |secret: &str| {
        let head = a.head("main");
        d.deliver("/hooks/a", &github_push(secret, &a.url(), "main", &head))
    };
    assert_eq!(push("old-secret"), 202, "{}", d.logs());
    assert_eq!(push("new-secret"), 401);
    let config_before = std::fs::read(&d.config).unwrap();
    let mtime_before = std::fs::metadata(&d.config).unwrap().modified().unwrap();

    // Rotate: only the secret file changes.
    std::fs::write(d.conf().join("hook.secret"), "new-secret\n").unwrap();
    let rotated = Instant::now();
    assert!(
        wait_until(WAIT, || push("new-secret") == 202),
        "the new secret was never accepted\n{}",
        d.logs()
    );
    assert!(
        rotated.elapsed() >= Duration::from_millis(250),
        "applied before the debounce ended ({:?})",
        rotated.elapsed()
    );
    assert_eq!(push("old-secret"), 401, "the old secret is refused");
    let reload = d.reload_status();
    assert_eq!(reload["reloads"], 1, "{reload:#}");
    assert_eq!(std::fs::read(&d.config).unwrap(), config_before);
    assert_eq!(
        std::fs::metadata(&d.config).unwrap().modified().unwrap(),
        mtime_before,
        "the config file itself was not touched"
    );
    // And the new secret syncs.
    let next = a.commit("rotated.txt", "x\n");
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push("new-secret", &a.url(), "main", &next)
        ),
        202
    );
    d.wait_head("a", &da, &next);
}

// ---------------------------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------------------------

#[test]
fn sighup_reloads_without_the_watcher() {
    let a = Origin::new();
    let b = Origin::new();
    let work = work_dir();
    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let ra = repo("a", &a.url(), &da, "");
    // The config is a symlink to a file in a folder nobody watches, so only SIGHUP can tell the
    // daemon that the file changed.
    let d = Daemon::start_with(&config(std::slice::from_ref(&ra)), true, &[]);
    d.wait_head("a", &da, &a.head("main"));
    assert_eq!(d.reload_status()["reloads"], 0);

    // An unchanged file: SIGHUP alone reloads.
    d.sighup();
    let reload = d.wait_reloads(1);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        d.reload_status()["reloads"],
        1,
        "one SIGHUP, one reload\n{}",
        d.logs()
    );
    assert!(
        d.logs().contains("cause=\"SIGHUP\"") || d.logs().contains("cause=SIGHUP"),
        "the log names the cause:\n{}",
        d.logs()
    );

    // Change the file, then SIGHUP: the change is applied.
    std::fs::write(
        &d.target,
        with_listen(d.port, &config(&[ra, repo("b", &b.url(), &db, "")])),
    )
    .unwrap();
    d.sighup();
    d.wait_reloads(2);
    d.wait_head("b", &db, &b.head("main"));
    assert_eq!(d.names(), ["a", "b"]);
}

// ---------------------------------------------------------------------------------------------
// Branch and workers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_changed_branch_resyncs_to_the_new_branch_head() {
    let origin = Origin::new();
    let main = origin.head("main");
    let dev = origin.commit_on("dev", "dev.txt", "on dev\n");
    origin.checkout("main");
    let git = GitDaemon::start(origin.root.path());
    let url = git.url("origin.git");
    let work = work_dir();
    let dir = work.path().join("site");
    let d = Daemon::start(&config(&[repo("site", &url, &dir, "    branch: main\n")]));
    d.wait_head("site", &dir, &main);
    assert_eq!(d.status("site")["ref"], "branch main");

    d.replace_config(&config(&[repo("site", &url, &dir, "    branch: dev\n")]));
    d.wait_head("site", &dir, &dev);
    let s = d.status("site");
    assert_eq!(s["ref"], "branch dev", "{s:#}");
    assert_eq!(s["remote_ref"], "refs/heads/dev", "{s:#}");
    assert_eq!(s["last_trigger"], "reload", "{s:#}");
    assert!(dir.join("dev.txt").is_file());

    // Webhooks now follow dev, not main.
    let dev2 = origin.commit_on("dev", "dev2.txt", "2\n");
    assert_eq!(
        d.deliver(
            "/hooks/site",
            &github_push("secret-site", &url, "dev", &dev2)
        ),
        202
    );
    d.wait_head("site", &dir, &dev2);
}

/// The `[start, end]` times (ms since the epoch) the on_success command of each run wrote.
fn intervals(path: &Path) -> Vec<(u128, u128)> {
    read_lossy(path)
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_changed_workers_count_is_applied() {
    // Two repos whose on_success command takes 700 ms and records when it ran (the command runs
    // inside the sync, holding a worker). With one worker the two runs cannot overlap; with two
    // they do.
    let (a, b) = (Origin::new(), Origin::new());
    let work = work_dir();
    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let log = work.path().join("runs.log");
    let hook = format!(
        "    on_success:\n      command: ['sh', '-c', 's=$(date +%s%3N); sleep 0.7; echo \"$s $(date +%s%3N)\" >> {}']\n",
        log.display()
    );
    let body = |workers: usize| {
        preamble(workers) + &repo("a", &a.url(), &da, &hook) + &repo("b", &b.url(), &db, &hook)
    };
    let d = Daemon::start(&body(1));
    d.wait_head("a", &da, &a.head("main"));
    d.wait_head("b", &db, &b.head("main"));

    // Both repos change; ask for both syncs at once; returns the two runs' intervals.
    let round = |n: usize| -> Vec<(u128, u128)> {
        std::fs::remove_file(&log).ok();
        a.commit(&format!("a{n}.txt"), "x\n");
        b.commit(&format!("b{n}.txt"), "x\n");
        std::thread::scope(|s| {
            let ja = s.spawn(|| d.sync_wait("a"));
            let jb = s.spawn(|| d.sync_wait("b"));
            for report in [ja.join().unwrap(), jb.join().unwrap()] {
                assert_eq!(report["ok"], true, "{report:#}");
                assert_eq!(report["changed"], true, "{report:#}");
            }
        });
        let runs = intervals(&log);
        assert_eq!(runs.len(), 2, "two on_success runs: {runs:?}\n{}", d.logs());
        runs
    };
    let overlap = |r: &[(u128, u128)]| r[0].0 < r[1].1 && r[1].0 < r[0].1;

    let runs = round(1);
    assert!(
        !overlap(&runs),
        "workers: 1 ran two syncs at once: {runs:?}"
    );

    d.replace_config(&body(2));
    let reload = d.wait_reloads(1);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    let runs = round(2);
    assert!(
        overlap(&runs),
        "workers: 2 did not run both at once: {runs:?}"
    );

    d.replace_config(&body(1));
    let reload = d.wait_reloads(2);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    let runs = round(3);
    assert!(
        !overlap(&runs),
        "back to workers: 1, two syncs still ran at once: {runs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[test]
fn an_interval_schedule_syncs_without_webhooks() {
    let a = Origin::new();
    let work = work_dir();
    let da = work.path().join("a");
    let d = Daemon::start(&config(&[repo(
        "a",
        &a.url(),
        &da,
        "    interval: 1s\n    jitter: 0s\n",
    )]));
    d.wait_head("a", &da, &a.head("main"));
    let start = d.status("a")["syncs"].as_u64().unwrap();
    let t0 = Instant::now();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = d.status("a");
            last["syncs"].as_u64().unwrap() >= start + 2
        }),
        "fewer than 2 scheduled syncs in {:?}: {last:#}",
        t0.elapsed()
    );
    assert_eq!(last["last_trigger"], "schedule", "{last:#}");

    // A new commit arrives without a webhook.
    let next = a.commit("scheduled.txt", "x\n");
    d.wait_head("a", &da, &next);
    assert_eq!(d.status("a")["last_trigger"], "schedule");

    // next_run: within the coming interval.
    let now = chrono::Utc::now();
    let next_run = parse_time(&d.status("a")["next_run"]);
    assert!(
        next_run > now - chrono::Duration::milliseconds(200)
            && next_run <= now + chrono::Duration::milliseconds(1200),
        "next_run {next_run} is not within a second of {now}"
    );
}

#[test]
fn a_cron_schedule_shows_its_next_run() {
    use chrono::{Datelike, TimeZone, Timelike};
    let a = Origin::new();
    let work = work_dir();
    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let d = Daemon::start(&config(&[
        repo("every", &a.url(), &da, "    schedule: '* * * * *'\n"),
        repo(
            "daily",
            &a.url(),
            &db,
            "    schedule: '30 9 * * *'\n    timezone: America/New_York\n",
        ),
    ]));
    d.wait_head("every", &da, &a.head("main"));

    // Every minute: the next whole minute (UTC and local agree on whole minutes).
    let minute = |t: chrono::DateTime<chrono::Utc>| {
        t.with_second(0).unwrap().with_nanosecond(0).unwrap() + chrono::Duration::minutes(1)
    };
    let before = chrono::Utc::now();
    let every = parse_time(&d.status("every")["next_run"]);
    let after = chrono::Utc::now();
    assert!(
        every == minute(before) || every == minute(after),
        "next_run {every}, want {}",
        minute(before)
    );

    // 09:30 in New York, as UTC.
    let ny = chrono_tz::America::New_York;
    let now = chrono::Utc::now().with_timezone(&ny);
    let mut want = ny
        .with_ymd_and_hms(now.year(), now.month(), now.day(), 9, 30, 0)
        .single()
        .unwrap();
    if want <= now {
        let tomorrow = now.date_naive() + chrono::Duration::days(1);
        want = ny
            .from_local_datetime(&tomorrow.and_hms_opt(9, 30, 0).unwrap())
            .single()
            .unwrap();
    }
    let daily = parse_time(&d.status("daily")["next_run"]);
    assert_eq!(daily, want.with_timezone(&chrono::Utc));
    assert!(daily > chrono::Utc::now());
}

// ---------------------------------------------------------------------------------------------
// Found while testing reload
// ---------------------------------------------------------------------------------------------

/// BUG (src/sync/git.rs `sync_once`, the "hints already contained" shortcut, and
/// src/daemon.rs `record`): for a repo that tracks the remote's default branch (no `branch` or
/// `tag`), a webhook whose `after` the checkout already has is answered without a fetch and
/// reports `remote_ref: "HEAD"`; `record` stores that as the repo's remote ref, and from then
/// on `wanted` (src/server/webhook.rs) compares every push's ref with "HEAD", so every later
/// push to the default branch is ignored (200 "refs/heads/main is not the tracked default
/// branch") until a schedule or API sync happens to fetch again.
#[test]
fn a_default_branch_repo_keeps_taking_webhooks_after_a_push_it_already_had() {
    let a = Origin::new();
    let work = work_dir();
    let da = work.path().join("a");
    let d = Daemon::start(&config(&[repo("a", &a.url(), &da, "")]));
    let head = a.head("main");
    d.wait_head("a", &da, &head);
    assert_eq!(d.status("a")["remote_ref"], "refs/heads/main");

    // A push the checkout already has (a redelivery under a new id, or a commit a scheduled
    // fetch brought in before its webhook arrived).
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push("secret-a", &a.url(), "main", &head)
        ),
        202
    );
    let mut s = Value::Null;
    wait_until(WAIT, || {
        s = d.status("a");
        s["syncs"] == 2 && s["state"] == "idle"
    });

    // The next real push must sync.
    let next = a.commit("next.txt", "x\n");
    let r = d.deliver(
        "/hooks/a",
        &github_push("secret-a", &a.url(), "main", &next),
    );
    assert_eq!(
        r,
        202,
        "a push to the default branch was not queued; status after the first push: {s:#}\n{}",
        d.logs()
    );
    d.wait_head("a", &da, &next);
}

/// BUG (src/daemon.rs `run`, the `listen_changed` branch): when the new `listen` cannot be bound
/// the error is only logged. The reload still counts as a success (`reload.reloads` + 1,
/// `last_error` null), and the config in force now names the unbound address, so a later
/// reload (SIGHUP, once the port is free) sees no `listen` change and never binds it: the
/// daemon stays on the old port for good while the API says all is well.
#[test]
fn a_listen_that_cannot_be_bound_is_reported_and_retried() {
    let a = Origin::new();
    let work = work_dir();
    let da = work.path().join("a");
    let body = config(&[repo("a", &a.url(), &da, "")]);
    let d = Daemon::start(&body);
    d.wait_head("a", &da, &a.head("main"));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wanted = busy.local_addr().unwrap().port();
    d.replace_config_text(&with_listen(wanted, &body));
    let mut reload = Value::Null;
    wait_until(WAIT, || {
        reload = d.reload_status();
        reload["reloads"] == 1 || reload["failures"] == 1
    });
    // The old port keeps serving (this part holds).
    assert!(!refused(d.port));
    assert_eq!(
        reload["failures"],
        1,
        "a listen address that cannot be bound is not reported as a failed reload: {reload:#}\n{}",
        d.logs()
    );
    assert!(
        reload["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&wanted.to_string())),
        "{reload:#}"
    );
    // Once the port is free, a reload binds it.
    drop(busy);
    d.sighup();
    assert!(
        wait_until(WAIT, || !refused(wanted)),
        "the daemon never moved to {wanted}\n{}",
        d.logs()
    );
}

/// BUG (src/schedule.rs `tick_loop` and src/daemon.rs `sync_schedules`): when a reload removes
/// a repo's schedule, its loop stops but `next_run` keeps the last planned time, so the API
/// announces a sync that will never happen.
#[test]
fn schedules_follow_reloads_and_next_run_goes_when_the_schedule_does() {
    let a = Origin::new();
    let work = work_dir();
    let da = work.path().join("a");
    let d = Daemon::start(&config(&[repo("a", &a.url(), &da, "")]));
    d.wait_head("a", &da, &a.head("main"));
    assert!(d.status("a")["next_run"].is_null());

    // A schedule added by a reload starts running.
    d.replace_config(&config(&[repo(
        "a",
        &a.url(),
        &da,
        "    interval: 1s\n    jitter: 0s\n",
    )]));
    d.wait_reloads(1);
    let syncs = d.status("a")["syncs"].as_u64().unwrap();
    let mut s = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            s = d.status("a");
            s["syncs"].as_u64().unwrap() >= syncs + 2 && s["next_run"].is_string()
        }),
        "the added schedule does not run: {s:#}"
    );

    // Removed: no more scheduled syncs, and no next run announced.
    d.replace_config(&config(&[repo("a", &a.url(), &da, "")]));
    d.wait_reloads(2);
    std::thread::sleep(Duration::from_millis(300));
    let syncs = d.status("a")["syncs"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let s = d.status("a");
    assert_eq!(
        s["syncs"].as_u64().unwrap(),
        syncs,
        "scheduled syncs went on after the schedule was removed: {s:#}"
    );
    assert!(
        s["next_run"].is_null(),
        "next_run still announced after the schedule was removed: {s:#}"
    );
}

/// GAP (src/reload.rs `Watcher`): a config reached through a symlink that is swapped
/// atomically — how Kubernetes ConfigMap and Secret volumes update (`config.yaml ->
/// ..data/config.yaml`, then `..data` is replaced by a rename) and how many deploy tools switch
/// releases — is never reloaded: the events name `..data`, which is not in the watched set.
/// Fix: also react to events on any path in the config's folder whose canonical target
/// changed (e.g. keep the canonicalized paths of the watched files and compare after each
/// event), or watch the symlinks' targets' folders too.
#[test]
fn a_config_behind_a_swapped_symlink_is_reloaded() {
    let a = Origin::new();
    let b = Origin::new();
    let work = work_dir();
    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let ra = repo("a", &a.url(), &da, "");
    let d = Daemon::start(&config(std::slice::from_ref(&ra)));
    d.wait_head("a", &da, &a.head("main"));
    let folder = &d.conf();
    // Turn the config into the ConfigMap layout (this rename is seen: it names the config).
    let v1 = folder.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::copy(&d.config, v1.join("hookmirror.yaml")).unwrap();
    std::os::unix::fs::symlink("..v1", folder.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/hookmirror.yaml", folder.join("link.tmp")).unwrap();
    std::fs::rename(folder.join("link.tmp"), &d.config).unwrap();
    d.wait_reloads(1);

    // The update: a new folder, and `..data` swapped to it by rename.
    let v2 = folder.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("hookmirror.yaml"),
        with_listen(d.port, &config(&[ra, repo("b", &b.url(), &db, "")])),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v2", folder.join("..data_tmp")).unwrap();
    std::fs::rename(folder.join("..data_tmp"), folder.join("..data")).unwrap();
    let mut names = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            names = d.names();
            names.len() == 2
        }),
        "the swapped config was never reloaded (repos {names:?})\n{}",
        d.logs()
    );
}
