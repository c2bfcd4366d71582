//! The one harness for `hookmirror serve` (the real binary, `CARGO_BIN_EXE_hookmirror`):
//!
//! - [`Daemon::builder`]: the config (a whole text, or [`config_text`]'s top-level keys plus
//!   [`repo_yaml`] entries), a symlinked config, files beside the config, extra arguments and
//!   environment variables, a fixed port, socket activation through `systemd-socket-activate`
//!   (`LISTEN_FDS`), a `NOTIFY_SOCKET` ([`Notify`]), and an API token for the calls it makes.
//!   stdout and stderr go to files ([`Daemon::logs`], [`Daemon::output`]); drop kills the
//!   daemon's process group.
//! - [`Daemon`]: HTTP to it (webhook deliveries, the API, waiting for syncs and reloads), config
//!   edits (renamed over the config, rewritten in place), signals.
//! - [`Remote`]: an origin reached over `git://` (served by [`GitDaemon`]) or by its local path.
//! - [`Mirror`]: "origin + first sync": a remote, a daemon with one repo following it, and that
//!   repo's first sync done.
//! - Raw HTTP over a socket, for what a well-behaved client cannot do (stalling, oversized bodies).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use super::forge::{Delivery, UrlForms};
use super::{GitDaemon, Origin, free_port, git, read_file_lossy, rev_parse, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_hookmirror");
/// How long a test waits for a sync or a state it expects (generous: the machine is shared).
pub const WAIT: Duration = Duration::from_secs(30);
/// How long the daemon may take to come up.
const START_WAIT: Duration = Duration::from_secs(20);
const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// The binary with a clean environment (PATH, HOME = `home`, LC_ALL=C) in `home`, so the
/// caller's HOOKMIRROR_CONFIG, RUST_LOG, git config or proxies cannot change a result.
pub fn hookmirror_command(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LC_ALL", "C")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

/// A fresh temp dir named `hookmirror-{what}-…`.
pub fn scratch(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hookmirror-{what}-"))
        .tempdir()
        .unwrap()
}

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

/// A whole config but `listen`: `top` holds more top-level keys (api, limits, initialise, log,
/// workers); `workers: 4` and a debug log to stdout unless `top` says otherwise; every repo
/// retries fast so a failure cannot stall a test.
pub fn config_text(top: &str, repos: &[String]) -> String {
    let workers = if top.contains("workers:") {
        ""
    } else {
        "workers: 4\n"
    };
    let log = if top.contains("log:") {
        ""
    } else {
        "log: {level: debug, output: stdout}\n"
    };
    format!(
        "{workers}{log}{top}defaults:\n  retry: {{attempts: 2, initial_delay: 10ms, max_delay: 20ms}}\nrepos:\n{}",
        repos.concat()
    )
}

/// The config file's text: `listen: 127.0.0.1:PORT` and `body`.
pub fn with_listen(port: u16, body: &str) -> String {
    format!("listen: 127.0.0.1:{port}\n{body}")
}

// ---------------------------------------------------------------------------------------------
// Building and starting the daemon
// ---------------------------------------------------------------------------------------------

/// How to start a [`Daemon`]; see [`Daemon::builder`].
#[derive(Debug, Clone, Default)]
pub struct DaemonBuilder {
    top: String,
    repos: Vec<String>,
    text: Option<String>,
    symlink: bool,
    files: Vec<(String, String)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    token: Option<String>,
    port: Option<u16>,
    socket_activation: bool,
}

impl DaemonBuilder {
    /// Top-level keys for [`config_text`] (appended to what was given before).
    pub fn top(mut self, keys: &str) -> Self {
        self.top.push_str(keys);
        self
    }

    /// One entry of `repos:` (see [`repo_yaml`]) for [`config_text`].
    pub fn repo(mut self, yaml: String) -> Self {
        self.repos.push(yaml);
        self
    }

    /// More entries of `repos:`.
    pub fn repos(mut self, yaml: &[String]) -> Self {
        self.repos.extend_from_slice(yaml);
        self
    }

    /// The whole config but `listen`, as it is (instead of [`config_text`]).
    pub fn config(mut self, text: &str) -> Self {
        self.text = Some(text.to_string());
        self
    }

    /// `--config` names a symlink (`conf/hookmirror.yaml`) to a file in a folder of its own
    /// (`elsewhere/real.yaml`) that nothing watches.
    pub fn symlink(mut self, on: bool) -> Self {
        self.symlink = on;
        self
    }

    /// A file written into the config's folder before the start.
    pub fn file(mut self, name: &str, content: &str) -> Self {
        self.files.push((name.into(), content.into()));
        self
    }

    /// An environment variable on top of the clean environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Arguments after `serve --config FILE`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The bearer token the harness's API calls carry (the config sets `api.token` itself).
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// `listen` on this port (no retry on another one if it is taken).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Runs `systemd-socket-activate -l 127.0.0.1:PORT hookmirror serve …`: it binds PORT and,
    /// on the first connection, execs hookmirror with the socket as fd 3 (`LISTEN_FDS=1`,
    /// `LISTEN_PID` its own pid, which hookmirror inherits through exec). The config's `listen`
    /// names another free port ([`Daemon::listen_port`]); the environment is passed with
    /// `--setenv` (systemd-socket-activate passes nothing else on).
    pub fn socket_activation(mut self) -> Self {
        self.socket_activation = true;
        self
    }

    /// Sets `NOTIFY_SOCKET` to `notify`'s socket.
    pub fn notify_socket(self, notify: &Notify) -> Self {
        let path = notify.path.to_str().unwrap().to_string();
        self.env("NOTIFY_SOCKET", &path)
    }

    /// Starts the daemon and waits until it is up: `/healthz` answers 200 (under socket
    /// activation: systemd-socket-activate listens; hookmirror itself starts on the first
    /// connection). A port lost to someone else is retried on another one.
    pub fn start(self) -> Daemon {
        self.launch(true)
    }

    /// Starts the daemon and returns at once (the test watches the start-up itself).
    pub fn spawn(self) -> Daemon {
        self.launch(false)
    }

    fn body(&self) -> String {
        match &self.text {
            Some(t) => t.clone(),
            None => config_text(&self.top, &self.repos),
        }
    }

    fn launch(self, wait: bool) -> Daemon {
        let dir = scratch("daemon");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        // The config's folder holds only the config and its files (the daemon watches it); the
        // captured output is elsewhere.
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        for (name, content) in &self.files {
            std::fs::write(conf.join(name), content).unwrap();
        }
        let config = conf.join("hookmirror.yaml");
        let target = if self.symlink {
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
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let body = self.body();
        let out = |name: &str| dir.path().join(name);
        let attempts = if wait && self.port.is_none() { 5 } else { 1 };
        for _attempt in 0..attempts {
            let port = self.port.unwrap_or_else(free_port);
            let listen_port = if self.socket_activation {
                other_port(&[port])
            } else {
                port
            };
            std::fs::write(&target, with_listen(listen_port, &body)).unwrap();
            let mut cmd = self.command(&config, &home, port);
            // Files rather than pipes: nothing has to drain them, and they are read at the end.
            cmd.stdout(std::fs::File::create(out("stdout.log")).unwrap())
                .stderr(std::fs::File::create(out("stderr.log")).unwrap());
            let mut child = cmd.spawn().unwrap();
            let running = |child: &mut Child| matches!(child.try_wait(), Ok(None));
            let up = !wait
                || (wait_until(START_WAIT, || {
                    !running(&mut child)
                        || if self.socket_activation {
                            (read_file_lossy(&out("stderr.log"))
                                + &read_file_lossy(&out("stdout.log")))
                                .contains("Listening on")
                        } else {
                            client
                                .get(format!("http://127.0.0.1:{port}/healthz"))
                                .timeout(Duration::from_secs(2))
                                .send()
                                .is_ok_and(|r| r.status().as_u16() == 200)
                        }
                }) && running(&mut child));
            if up {
                return Daemon {
                    port,
                    listen_port,
                    dir,
                    config,
                    target,
                    api_token: self.token,
                    child: Mutex::new(child),
                    client,
                };
            }
            // Lost the port to someone else (or did not come up): kill and try another one.
            let _ = nix::sys::signal::killpg(pid_of(&child), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "hookmirror serve did not come up; logs:\n{}{}",
            read_file_lossy(&out("stdout.log")),
            read_file_lossy(&out("stderr.log"))
        );
    }

    /// `hookmirror serve --config CONFIG ARGS` (under socket activation, wrapped), in its own
    /// process group.
    fn command(&self, config: &Path, home: &Path, port: u16) -> Command {
        let mut cmd = if self.socket_activation {
            let mut cmd = Command::new(SOCKET_ACTIVATE);
            cmd.arg("-l")
                .arg(format!("127.0.0.1:{port}"))
                .arg(format!("--setenv=HOME={}", home.display()))
                .arg("--setenv=LC_ALL=C");
            for (k, v) in &self.env {
                cmd.arg(format!("--setenv={k}={v}"));
            }
            cmd.arg(BIN)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .current_dir(home)
                .stdin(Stdio::null());
            cmd
        } else {
            let mut cmd = hookmirror_command(home);
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            cmd
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .args(&self.args);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        cmd
    }
}

/// A free port other than `taken`.
pub fn other_port(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if !taken.contains(&port) {
            return port;
        }
    }
}

fn pid_of(child: &Child) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap())
}

/// Whether connecting to 127.0.0.1:`port` is refused (nothing listens).
pub fn refused(port: u16) -> bool {
    match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) {
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
    }
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

    /// Asserts a 202 that queued exactly `names` for delivery `id`.
    #[track_caller]
    pub fn expect_queued(&self, names: &[&str], id: &str) {
        let v = self.expect(202);
        assert_eq!(
            v,
            serde_json::json!({"queued": names, "delivery": id}),
            "{}",
            self.text
        );
    }

    fn read(r: reqwest::blocking::Response) -> reqwest::Result<Resp> {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text()?;
        Ok(Resp {
            status,
            text,
            headers,
        })
    }
}

/// What a daemon printed.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The non-empty lines of stdout.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// `hookmirror serve` with a config in a temp dir (see [`DaemonBuilder`]). Drop kills its
/// process group (the daemon and anything it started) and reaps it.
pub struct Daemon {
    /// Where it answers (under socket activation: the activated socket).
    pub port: u16,
    /// The port the config's `listen` names (the same as `port` without socket activation).
    pub listen_port: u16,
    /// Holds `conf/` (the config's folder), `home/` (HOME and the working directory),
    /// `stdout.log` and `stderr.log`.
    pub dir: tempfile::TempDir,
    /// What `--config` names.
    pub config: PathBuf,
    /// The file holding the config text (`config` itself, or where the symlink points).
    pub target: PathBuf,
    /// Bearer token for the API calls below.
    pub api_token: Option<String>,
    child: Mutex<Child>,
    client: reqwest::blocking::Client,
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// Starts the daemon with [`config_text`]`(top, repos)` and waits until it is up.
    pub fn start(top: &str, repos: &[String]) -> Daemon {
        Daemon::builder().top(top).repos(repos).start()
    }

    /// The config's folder.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        pid_of(&self.child.lock().unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    // --- HTTP ---------------------------------------------------------------------------------

    /// Sends a built request and reads the whole answer (panics, with the logs, if it fails).
    pub fn send(&self, req: reqwest::blocking::RequestBuilder) -> Resp {
        req.send()
            .and_then(Resp::read)
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.logs()))
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

    /// GET `path` on 127.0.0.1:`port` on a fresh connection (5 s at most), with the API token
    /// when one is set; `None` when nothing answered.
    pub fn try_get_on(&self, port: u16, path: &str) -> Option<Resp> {
        let mut req = self
            .client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("Connection", "close")
            .timeout(Duration::from_secs(5));
        if let Some(t) = &self.api_token {
            req = req.bearer_auth(t);
        }
        req.send().and_then(Resp::read).ok()
    }

    /// [`Daemon::try_get_on`] the daemon's port.
    pub fn try_get(&self, path: &str) -> Option<Resp> {
        self.try_get_on(self.port, path)
    }

    // --- The API --------------------------------------------------------------------------------

    /// GET `path` with the API token when one is set.
    pub fn api_get(&self, path: &str) -> Resp {
        match &self.api_token {
            Some(t) => self.get_auth(path, t),
            None => self.get(path),
        }
    }

    /// `GET /api/repos/{name}`.
    #[track_caller]
    pub fn status(&self, name: &str) -> Value {
        let r = self.api_get(&format!("/api/repos/{name}"));
        assert_eq!(r.status, 200, "status of {name}: {}", r.text);
        r.json()
    }

    /// `GET /api/repos`.
    #[track_caller]
    pub fn repos(&self) -> Value {
        self.api_get("/api/repos").expect(200)
    }

    /// The names in `GET /api/repos`.
    pub fn names(&self) -> Vec<String> {
        self.repos()["repos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// `reload` of `GET /api/repos`.
    pub fn reload_status(&self) -> Value {
        self.repos()["reload"].clone()
    }

    /// `POST /api/repos/{name}/sync?wait=true` with the API token.
    pub fn api_sync(&self, name: &str) -> Resp {
        let path = format!("/api/repos/{name}/sync?wait=true");
        self.post_auth(&path, self.api_token.as_deref())
    }

    // --- Waiting --------------------------------------------------------------------------------

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

    /// Polls `GET /api/repos` until `pred` holds; panics with the last answer and the logs.
    #[track_caller]
    pub fn wait_repos(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
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

    /// Waits until `reload.reloads` (successful reloads) reaches `n`; returns `reload`.
    #[track_caller]
    pub fn wait_reloads(&self, n: u64) -> Value {
        self.wait_repos(&format!("{n} reloads"), |v| {
            v["reload"]["reloads"].as_u64() >= Some(n)
        })["reload"]
            .clone()
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

    /// Waits until the checkout in `dir` is at `commit` and `name` is idle, showing it.
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

    // --- Output ---------------------------------------------------------------------------------

    /// What the daemon wrote to stdout and stderr so far.
    pub fn output(&self) -> Output {
        Output {
            stdout: read_file_lossy(&self.dir.path().join("stdout.log")),
            stderr: read_file_lossy(&self.dir.path().join("stderr.log")),
        }
    }

    /// stdout and stderr so far, one after the other.
    pub fn logs(&self) -> String {
        let out = self.output();
        out.stdout + &out.stderr
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

    // --- Config edits ---------------------------------------------------------------------------

    /// Writes `listen` + `body` to a new file next to the config's text and renames it over it
    /// (what editors, `install` and config management do).
    pub fn replace_config(&self, body: &str) {
        self.replace_config_text(&with_listen(self.listen_port, body));
    }

    /// Like [`Daemon::replace_config`] with the exact text (for a changed `listen`).
    pub fn replace_config_text(&self, text: &str) {
        let tmp = self.target.with_extension("yaml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.target).unwrap();
    }

    /// Truncates the config and writes `listen` + `body` into the same file.
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(&self.target, with_listen(self.listen_port, body)).unwrap();
    }

    // --- Signals and exit -----------------------------------------------------------------------

    /// Sends `signal` to the daemon (not its group: children finish on their own).
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(self.pid(), signal).unwrap();
    }

    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Sends SIGHUP once the daemon handles it (its SigCgt mask has bit 0): before that, the
    /// default action would kill it.
    pub fn sighup(&self) {
        let status_file = format!("/proc/{}/status", self.pid());
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
        self.signal(Signal::SIGHUP);
    }

    /// Waits up to `limit` for the daemon to exit; its status if it did.
    pub fn wait_exit(&self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.lock().unwrap().try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// SIGTERM, an exit with code 0 within [`WAIT`], and what it printed.
    #[track_caller]
    pub fn stop(self) -> Output {
        self.sigterm();
        let status = self.wait_exit(WAIT);
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
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = nix::sys::signal::killpg(pid_of(child), Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The commit checked out in `dir` (for `publish: atomic`, the tree its symlink names); `None`
/// while there is no checkout (yet).
pub fn head_of(dir: &Path) -> Option<String> {
    if let Ok(target) = std::fs::read_link(dir) {
        let name = target.file_name()?.to_string_lossy().into_owned();
        return name.get(..40).map(str::to_string);
    }
    dir.join(".git")
        .exists()
        .then(|| rev_parse(dir, "HEAD"))
        .flatten()
}

/// Nothing queued or running.
pub fn idle(s: &Value) -> bool {
    s["state"] == "idle" && s["pending"] == false
}

// ---------------------------------------------------------------------------------------------
// sd_notify
// ---------------------------------------------------------------------------------------------

/// One datagram from the daemon, and when it arrived.
pub struct Message {
    pub at: Instant,
    pub text: String,
}

impl Message {
    pub fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }

    pub fn status(&self) -> Option<&str> {
        self.text.lines().find_map(|l| l.strip_prefix("STATUS="))
    }
}

/// The `NOTIFY_SOCKET` end systemd would hold (see [`DaemonBuilder::notify_socket`]).
pub struct Notify {
    pub path: PathBuf,
    socket: UnixDatagram,
    /// Every message received so far.
    pub seen: Vec<Message>,
    _dir: tempfile::TempDir,
}

impl Notify {
    pub fn new() -> Notify {
        let dir = scratch("notify");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Notify {
            path,
            socket,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// Receives until a message satisfies `pred` (returns its index in `seen`) or `limit`
    /// passes.
    pub fn until(&mut self, limit: Duration, pred: impl Fn(&Message) -> bool) -> Option<usize> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let m = Message {
                        at: Instant::now(),
                        text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                    };
                    let hit = pred(&m);
                    self.seen.push(m);
                    if hit {
                        return Some(self.seen.len() - 1);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
        None
    }

    /// Everything received so far, for messages.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|m| format!("[{}]", m.text.trim_end().replace('\n', " | ")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Default for Notify {
    fn default() -> Self {
        Notify::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Remotes
// ---------------------------------------------------------------------------------------------

/// An origin (bare repo `origin.git` + work clone), served over `git://` or reached by its path.
pub struct Remote {
    pub origin: Origin,
    /// Serves the origin's folder over `git://` ([`Remote::new`]).
    pub daemon: Option<GitDaemon>,
}

impl Remote {
    /// An origin served over `git://`.
    pub fn new() -> Remote {
        let origin = Origin::new();
        let daemon = Some(GitDaemon::start(origin.root.path()));
        Remote { origin, daemon }
    }

    /// An origin reached by its local path.
    pub fn local() -> Remote {
        Remote {
            origin: Origin::new(),
            daemon: None,
        }
    }

    /// `git://127.0.0.1:PORT/origin.git`, or the bare repo's path.
    pub fn url(&self) -> String {
        match &self.daemon {
            Some(_) => self.git_url("origin.git"),
            None => self.origin.url(),
        }
    }

    /// The `git://` URL of another repository in the origin's folder.
    pub fn git_url(&self, path: &str) -> String {
        self.daemon
            .as_ref()
            .expect("a remote served over git://")
            .url(path)
    }

    /// The URL forms a forge names this repository by (its path itself when it is local).
    pub fn forms(&self) -> UrlForms {
        match &self.daemon {
            Some(_) => UrlForms::new("origin.git"),
            None => UrlForms::all(&self.origin.url()),
        }
    }

    /// The commit of `main`.
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

// ---------------------------------------------------------------------------------------------
// Origin + first sync
// ---------------------------------------------------------------------------------------------

/// "Origin + first sync": a remote, a daemon with one repo following it, that repo's first sync
/// done and its checkout at the head of the remote's `main` (where a tag the repo follows must
/// point too).
pub struct Mirror {
    pub daemon: Daemon,
    pub remote: Remote,
    /// The repo's name.
    pub name: String,
    /// Its checkout (`work/NAME`).
    pub dir: PathBuf,
    /// Holds the checkout; put other repos' checkouts here too.
    pub work: tempfile::TempDir,
    /// The repo's status after its first sync.
    pub first: Value,
}

type ConfigFn<'a> = Box<dyn FnOnce(&str, &Path) -> String + 'a>;

/// How to start a [`Mirror`]; see [`Mirror::on`].
pub struct MirrorBuilder<'a> {
    remote: Remote,
    name: String,
    keys: String,
    url: Option<String>,
    daemon: DaemonBuilder,
    config: Option<ConfigFn<'a>>,
    work: tempfile::TempDir,
}

impl Mirror {
    /// A remote served over `git://`, repo `site` with `keys` (its YAML keys after `directory`,
    /// each line indented 4 spaces) in [`config_text`], first sync done.
    pub fn start(keys: &str) -> Mirror {
        Mirror::on(Remote::new()).keys(keys).start()
    }

    /// A mirror of `remote`, to be set up and started.
    pub fn on<'a>(remote: Remote) -> MirrorBuilder<'a> {
        MirrorBuilder {
            remote,
            name: "site".into(),
            keys: String::new(),
            url: None,
            daemon: Daemon::builder(),
            config: None,
            work: scratch("work"),
        }
    }
}

impl<'a> MirrorBuilder<'a> {
    /// The repo's name (default `site`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// The repo's keys after `directory` (each line indented 4 spaces).
    pub fn keys(mut self, keys: &str) -> Self {
        self.keys = keys.into();
        self
    }

    /// The URL the repo is configured with (default: the remote's).
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.into());
        self
    }

    /// How to start the daemon (top-level keys, other repos, a token, arguments, …); the repo
    /// comes first in its `repos`.
    pub fn daemon(mut self, daemon: DaemonBuilder) -> Self {
        self.daemon = daemon;
        self
    }

    /// The whole config (without `listen`) from the repo's URL and checkout directory, instead
    /// of [`config_text`] with the repo added.
    pub fn config(mut self, config: impl FnOnce(&str, &Path) -> String + 'a) -> Self {
        self.config = Some(Box::new(config));
        self
    }

    /// The folder the checkout goes in (for other repos' checkouts beside it).
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// Starts the daemon and waits for the repo's first sync.
    #[track_caller]
    pub fn start(self) -> Mirror {
        let MirrorBuilder {
            remote,
            name,
            keys,
            url,
            daemon,
            config,
            work,
        } = self;
        let dir = work.path().join(&name);
        let url = url.unwrap_or_else(|| remote.url());
        let daemon = match config {
            Some(f) => daemon.config(&f(&url, &dir)),
            None => DaemonBuilder {
                // First in `repos:`, before the builder's others.
                repos: [vec![repo_yaml(&name, &url, &dir, &keys)], daemon.repos].concat(),
                ..daemon
            },
        }
        .start();
        daemon.wait_syncs(&name, 1);
        let first = daemon.wait_head(&name, &dir, &remote.head());
        Mirror {
            daemon,
            remote,
            name,
            dir,
            work,
            first,
        }
    }
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
