//! Shared helpers for integration tests: real git remotes on loopback and the real daemon, no
//! mocks.
//!
//! - [`git`]: the git CLI with a fixed identity and no user/system config.
//! - [`Origin`]: a bare "origin" repository plus a work clone that commits, tags and pushes.
//! - [`GitDaemon`]: `git daemon` serving a directory over `git://`.
//! - [`Sshd`]: a private `sshd` with its own host key, user keys (ed25519, RSA, ECDSA, all with
//!   a passphrase) and known_hosts files for the known, changed-key and unknown-host cases.
//! - [`GitHttp`]: smart HTTP (`git http-backend` as CGI) behind HTTP basic auth, on axum.
//! - [`https`]: nginx + fcgiwrap + `git http-backend` over TLS with a test CA, tinyproxy, and a
//!   TCP proxy that delays every byte (for benchmarks).
//! - [`daemon`]: the one harness for `hookmirror serve` ([`daemon::Daemon`]), remotes for it
//!   ([`daemon::Remote`]) and the "origin + first sync" fixture ([`daemon::Mirror`]).
//! - [`forge`]: webhook deliveries signed as each forge signs them, with payloads made from the
//!   captured fixtures.
//! - [`hostile`]: remotes that misbehave on purpose (`git://` and smart HTTP on plain TCP, a
//!   listener that never speaks) and a memory-sampling run of the binary.
//!
//! Everything lives in temp dirs and every server is killed on `Drop`.
//! Each test file does `mod support;` and uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

pub mod daemon;
pub mod faults;
pub mod forge;
pub mod hostile;
pub mod https;
pub mod nats;

use std::ffi::OsStr;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// git CLI
// ---------------------------------------------------------------------------------------------

/// A `git` command in `dir` with a fixed identity and environment: no system or global config,
/// no prompts, file transport allowed, default branch `main`. Variables a caller's environment
/// may carry (GIT_DIR, askpass helpers, …) are removed.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(["-c", "protocol.file.allow=always"])
        .args(["-c", "init.defaultBranch=main"])
        .args(["-c", "advice.detachedHead=false"])
        .args(["-c", "core.hooksPath=/dev/null"])
        .args(["-c", "commit.gpgSign=false", "-c", "tag.gpgSign=false"]);
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CEILING_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_PROXY_COMMAND",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_AUTHOR_NAME", "Hookmirror Test")
        .env("GIT_AUTHOR_EMAIL", "test@hookmirror.invalid")
        .env("GIT_COMMITTER_NAME", "Hookmirror Test")
        .env("GIT_COMMITTER_EMAIL", "test@hookmirror.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PROTOCOL_FROM_USER", "1")
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    cmd
}

/// Runs git in `dir` (see [`git_command`]); panics with stderr on failure; trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

/// [`git`] with extra environment variables (e.g. `GIT_SSH_COMMAND`).
pub fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = try_git_env(dir, args, env);
    if !out.status.success() {
        panic!(
            "git {:?} in {} failed ({}):\n{}{}",
            args,
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs git and returns its output whatever the exit status (for expected failures).
pub fn try_git(dir: &Path, args: &[&str]) -> Output {
    try_git_env(dir, args, &[])
}

/// [`try_git`] with extra environment variables.
pub fn try_git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = git_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"))
}

/// The commit a revision resolves to in `repo` (`rev^{commit}`), or `None` if it does not.
pub fn rev_parse(repo: &Path, rev: &str) -> Option<String> {
    let spec = format!("{rev}^{{commit}}");
    let out = try_git(repo, &["rev-parse", "--verify", "--quiet", &spec]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs any command, panics with its stderr on failure, returns trimmed stdout.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if !out.status.success() {
        let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        panic!(
            "{program} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// The engine in process
// ---------------------------------------------------------------------------------------------

/// A repo config as an operator would write it (validated as `hookmirror check` does): `extra`
/// holds more YAML keys, indented 4; retries are fast so a misclassified failure cannot stall a
/// test.
pub fn repo_config(url: &str, dir: &Path, extra: &str) -> hookmirror::config::Repo {
    let fast_retry = "    retry: {attempts: 3, initial_delay: 10ms, max_delay: 20ms}\n";
    plain_repo_config(url, dir, &format!("{fast_retry}{extra}"))
}

/// [`repo_config`] with the defaults for everything `extra` leaves out (retries included).
pub fn plain_repo_config(url: &str, dir: &Path, extra: &str) -> hookmirror::config::Repo {
    use hookmirror::config::{Context, Format, parse_str, validate};
    let text = format!(
        "repos:\n  - name: t\n    url: '{url}'\n    directory: '{}'\n    insecure_no_secret: true\n{extra}",
        dir.display()
    );
    let raw = parse_str(&text, Format::Yaml).unwrap();
    let mut c =
        validate(raw, &Context::bare(Format::Yaml, "/")).unwrap_or_else(|p| panic!("{p:#?}"));
    c.repos.remove(0)
}

/// Syncs `r` in process as the daemon's workers do (libgit2 set up as `main` does: timeouts and
/// hookmirror's transports).
pub fn sync_repo(r: &hookmirror::config::Repo) -> hookmirror::sync::Outcome {
    hookmirror::sync::init_libgit2();
    hookmirror::sync::sync_with_retry(r, &hookmirror::sync::SyncOptions::default(), |_| true)
}

// ---------------------------------------------------------------------------------------------
// Origin
// ---------------------------------------------------------------------------------------------

/// A bare "origin" repo plus a work clone used to make commits and push them.
pub struct Origin {
    pub root: tempfile::TempDir,
    /// `root/origin.git`, default branch `main`; `http.receivepack` is on.
    pub bare: PathBuf,
    /// `root/work`, remote `origin` = `bare`.
    pub work: PathBuf,
}

impl Origin {
    /// A bare repo whose `main` holds one initial commit (`README`), and its work clone on `main`.
    pub fn new() -> Origin {
        let root = tempfile::Builder::new()
            .prefix("hookmirror-origin-")
            .tempdir()
            .unwrap();
        let bare = root.path().join("origin.git");
        let work = root.path().join("work");
        git(
            root.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        git(&bare, &["config", "http.receivepack", "true"]);
        git(root.path(), &["init", "-q", "-b", "main", "work"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let origin = Origin { root, bare, work };
        origin.commit("README", "initial\n");
        origin
    }

    /// The bare repo as a plain path.
    pub fn url(&self) -> String {
        self.bare.to_str().unwrap().to_string()
    }

    /// `file://` URL of the bare repo.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.url())
    }

    /// Writes `file` (relative to the work tree; parents created), commits it on the work
    /// clone's current branch, pushes that branch; returns the new commit id.
    pub fn commit(&self, file: &str, content: &str) -> String {
        let path = self.work.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        git(&self.work, &["add", "--", file]);
        git(
            &self.work,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("write {file}"),
            ],
        );
        let branch = git(&self.work, &["symbolic-ref", "--short", "HEAD"]);
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Switches the work clone to `branch` (created from the current HEAD if new), commits there
    /// and pushes it. The work clone stays on `branch` afterwards.
    pub fn commit_on(&self, branch: &str, file: &str, content: &str) -> String {
        let local = format!("refs/heads/{branch}");
        if rev_parse(&self.work, &local).is_some() {
            git(&self.work, &["checkout", "-q", branch]);
        } else {
            git(&self.work, &["checkout", "-q", "-b", branch]);
        }
        self.commit(file, content)
    }

    /// Switches the work clone back to `branch` (which must exist locally).
    pub fn checkout(&self, branch: &str) {
        git(&self.work, &["checkout", "-q", branch]);
    }

    /// Tags the work clone's HEAD (annotated or lightweight, replacing an existing tag) and
    /// force-pushes the tag; returns the commit id the tag points to.
    pub fn tag(&self, name: &str, annotated: bool) -> String {
        if annotated {
            let msg = format!("tag {name}");
            git(&self.work, &["tag", "-f", "-a", "-m", &msg, name, "HEAD"]);
        } else {
            git(&self.work, &["tag", "-f", name, "HEAD"]);
        }
        let refspec = format!("+refs/tags/{name}:refs/tags/{name}");
        git(&self.work, &["push", "-q", "--force", "origin", &refspec]);
        git(
            &self.work,
            &["rev-parse", &format!("refs/tags/{name}^{{commit}}")],
        )
    }

    /// Makes a new commit (on the current branch, pushed), force-moves the tag to it and
    /// force-pushes the tag; returns the new commit id.
    pub fn move_tag(&self, name: &str, annotated: bool) -> String {
        let n = git(&self.work, &["rev-list", "--count", "HEAD"]);
        self.commit(
            &format!("tag-{name}.txt"),
            &format!("moving {name} ({n})\n"),
        );
        self.tag(name, annotated)
    }

    /// Rewrites `main`: `reset --hard HEAD~1` (or a new root commit if `main` has only one
    /// commit), commits something different and force-pushes; returns the new tip. The work
    /// clone is on `main` afterwards.
    pub fn force_push_rewrite(&self) -> String {
        git(&self.work, &["checkout", "-q", "main"]);
        let old = git(&self.work, &["rev-parse", "HEAD"]);
        let orphan = rev_parse(&self.work, "HEAD~1").is_none();
        if orphan {
            git(&self.work, &["checkout", "-q", "--orphan", "rewritten"]);
            git(
                &self.work,
                &["rm", "-q", "-r", "-f", "--ignore-unmatch", "."],
            );
        } else {
            git(&self.work, &["reset", "-q", "--hard", "HEAD~1"]);
        }
        let path = self.work.join("rewritten.txt");
        std::fs::write(&path, format!("rewritten away from {old}\n")).unwrap();
        git(&self.work, &["add", "--", "rewritten.txt"]);
        git(&self.work, &["commit", "-q", "-m", "rewrite history"]);
        if orphan {
            git(&self.work, &["branch", "-q", "-M", "main"]);
        }
        git(
            &self.work,
            &["push", "-q", "--force", "origin", "HEAD:refs/heads/main"],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `git push origin --delete branch`.
    pub fn delete_branch(&self, branch: &str) {
        git(&self.work, &["push", "-q", "origin", "--delete", branch]);
    }

    /// Commit id of `refs/heads/branch` in the bare repo (panics if there is none).
    pub fn head(&self, branch: &str) -> String {
        self.rev(&format!("refs/heads/{branch}"))
            .unwrap_or_else(|| panic!("origin has no branch {branch}"))
    }

    /// Commit a revision resolves to in the bare repo (peeling tags), `None` if it does not.
    pub fn rev(&self, rev: &str) -> Option<String> {
        rev_parse(&self.bare, rev)
    }
}

impl Default for Origin {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Ports, waiting, child processes
// ---------------------------------------------------------------------------------------------

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child started in its own process group; `Drop` terminates the whole group (so `git daemon`,
/// which `git` runs as a grandchild, and its per-connection children go too) and reaps it.
struct GroupChild {
    child: Child,
}

impl GroupChild {
    fn spawn(cmd: &mut Command) -> std::io::Result<GroupChild> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Ok(GroupChild {
            child: cmd.spawn()?,
        })
    }

    /// `Some(status)` if the child exited already.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal_group(&self, signal: nix::sys::signal::Signal) {
        // The pgid is the child's pid (process_group(0)).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        use nix::sys::signal::Signal;
        self.signal_group(Signal::SIGTERM);
        let exited = wait_until(Duration::from_secs(3), || self.exited().is_some());
        // Also catches grandchildren that ignored SIGTERM or outlived the leader.
        self.signal_group(Signal::SIGKILL);
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn read_file_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// git daemon
// ---------------------------------------------------------------------------------------------

/// `git daemon` serving `base` over `git://127.0.0.1:port/` (export-all, read-only).
pub struct GitDaemon {
    pub port: u16,
    child: GroupChild,
    log_dir: tempfile::TempDir,
}

impl GitDaemon {
    /// Starts the daemon on a free port and waits until it accepts connections.
    pub fn start(base: &Path) -> GitDaemon {
        let base = base.canonicalize().unwrap();
        let log_dir = tempfile::Builder::new()
            .prefix("hookmirror-gitdaemon-")
            .tempdir()
            .unwrap();
        let log = log_dir.path().join("daemon.log");
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = git_command(&base);
            cmd.arg("daemon")
                .arg("--verbose")
                .arg("--reuseaddr")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg("--informative-errors")
                .arg(&base)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            let mut child = GroupChild::spawn(&mut cmd).expect("cannot start git daemon");
            // Its own word that it listens: a connection alone could reach another test's
            // daemon that took the port first (this one then exits, too late to be noticed).
            let up = wait_until(START_TIMEOUT, || {
                child.exited().is_some() || read_file_lossy(&log).contains("Ready to rumble")
            });
            if up && child.exited().is_none() {
                return GitDaemon {
                    port,
                    child,
                    log_dir,
                };
            }
            // Lost the port to someone else (or did not come up): try another one.
        }
        panic!("git daemon did not start; log:\n{}", read_file_lossy(&log));
    }

    /// `git://127.0.0.1:PORT/path_under_base`.
    pub fn url(&self, path_under_base: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            path_under_base.trim_start_matches('/')
        )
    }

    /// What the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        read_file_lossy(&self.log_dir.path().join("daemon.log"))
    }
}

// ---------------------------------------------------------------------------------------------
// sshd
// ---------------------------------------------------------------------------------------------

const SSHD: &str = "/usr/sbin/sshd";

/// A private `sshd` on 127.0.0.1, run in the foreground (`-D`) and killed on
/// drop. All files live in `dir`.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `[127.0.0.1]:PORT ssh-ed25519 <host key>`.
    pub known_hosts: PathBuf,
    /// User keys, all in OpenSSH's private key format and encrypted with `passphrase`; all
    /// three are authorised. `<key>.pub` next to each.
    pub ed25519_key: PathBuf,
    pub rsa_key: PathBuf,
    pub ecdsa_key: PathBuf,
    pub passphrase: String,
    /// Lists a DIFFERENT ed25519 key for `[127.0.0.1]:PORT` (the changed-host-key case).
    pub other_known_hosts: PathBuf,
    /// Exists and is empty (the unknown-host case).
    pub empty_known_hosts: PathBuf,
    /// The server's public host key, `ssh-ed25519 AAAA…` (OpenSSH .pub format).
    pub host_key_pub: PathBuf,
    /// The user the URLs log in as (the current user; `root` on CI and here).
    pub user: String,
    child: GroupChild,
}

impl Sshd {
    /// Generates keys and config in a temp dir, starts sshd on a free port and waits until it
    /// sends its SSH banner. Panics if `/usr/sbin/sshd` is missing.
    pub fn start() -> Sshd {
        if !Path::new(SSHD).exists() {
            panic!(
                "{SSHD} not found: the ssh tests need a real sshd. Install it with \
                 `apt-get install -y openssh-server` (CI's .ci/run does this)."
            );
        }
        // Privilege separation directory; sshd refuses to start without it.
        if let Err(e) = std::fs::create_dir_all("/run/sshd") {
            eprintln!("warning: cannot create /run/sshd: {e}");
        }

        let dir = tempfile::Builder::new()
            .prefix("hookmirror-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        let passphrase = "correct horse battery staple".to_string();

        let host_key = d.join("host_ed25519");
        keygen(&host_key, "ed25519", None, "");
        let other_host_key = d.join("other_host_ed25519");
        keygen(&other_host_key, "ed25519", None, "");

        let ed25519_key = d.join("id_ed25519");
        let rsa_key = d.join("id_rsa");
        let ecdsa_key = d.join("id_ecdsa");
        keygen(&ed25519_key, "ed25519", None, &passphrase);
        keygen(&rsa_key, "rsa", Some("3072"), &passphrase);
        keygen(&ecdsa_key, "ecdsa", Some("256"), &passphrase);

        let authorized_keys = d.join("authorized_keys");
        let mut auth = String::new();
        for key in [&ed25519_key, &rsa_key, &ecdsa_key] {
            auth.push_str(&read_file_lossy(&pub_path(key)));
        }
        std::fs::write(&authorized_keys, auth).unwrap();

        let user = current_user();
        let host_key_pub = pub_path(&host_key);
        let config = d.join("sshd_config");
        let log = d.join("sshd.log");
        let known_hosts = d.join("known_hosts");
        let other_known_hosts = d.join("other_known_hosts");
        let empty_known_hosts = d.join("empty_known_hosts");
        std::fs::write(&empty_known_hosts, "").unwrap();

        let penalties_supported = {
            // OpenSSH >= 9.8 penalises sources with failed or aborted logins, which many
            // negative tests from 127.0.0.1 would trip; older sshd rejects the option.
            std::fs::write(
                &config,
                sshd_config(&d, 22, &host_key, &authorized_keys, true),
            )
            .unwrap();
            Command::new(SSHD)
                .arg("-t")
                .arg("-f")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };

        for _attempt in 0..5 {
            let port = free_port();
            std::fs::write(
                &config,
                sshd_config(&d, port, &host_key, &authorized_keys, penalties_supported),
            )
            .unwrap();
            let mut cmd = Command::new(SSHD);
            cmd.arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = GroupChild::spawn(&mut cmd).expect("cannot start sshd");
            let up = wait_until(START_TIMEOUT, || {
                child.exited().is_some() || ssh_banner(port)
            });
            if !(up && child.exited().is_none()) {
                continue;
            }
            let host_line = format!("[127.0.0.1]:{port} {}\n", key_type_and_blob(&host_key));
            std::fs::write(&known_hosts, host_line).unwrap();
            let other_line = format!(
                "[127.0.0.1]:{port} {}\n",
                key_type_and_blob(&other_host_key)
            );
            std::fs::write(&other_known_hosts, other_line).unwrap();
            return Sshd {
                port,
                dir,
                known_hosts,
                ed25519_key,
                rsa_key,
                ecdsa_key,
                passphrase,
                other_known_hosts,
                empty_known_hosts,
                host_key_pub,
                user,
                child,
            };
        }
        panic!("sshd did not start; log:\n{}", read_file_lossy(&log));
    }

    /// `ssh://USER@127.0.0.1:PORT/abs/repo/path`.
    pub fn url(&self, abs_repo_path: &Path) -> String {
        assert!(
            abs_repo_path.is_absolute(),
            "ssh URLs need an absolute path"
        );
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            abs_repo_path.display()
        )
    }

    /// A copy of one of the (encrypted) user keys with the passphrase removed, next to the
    /// original as `<name>.nopass` (and `.nopass.pub`). Handy for driving the ssh CLI.
    pub fn unencrypted_copy(&self, key: &Path) -> PathBuf {
        let name = key.file_name().unwrap().to_string_lossy().into_owned();
        let copy = key.with_file_name(format!("{name}.nopass"));
        std::fs::copy(key, &copy).unwrap();
        std::fs::copy(pub_path(key), pub_path(&copy)).unwrap();
        let mut args: Vec<&OsStr> = vec![OsStr::new("-q"), OsStr::new("-p")];
        args.extend([OsStr::new("-P"), OsStr::new(self.passphrase.as_str())]);
        args.extend([OsStr::new("-N"), OsStr::new("")]);
        args.extend([OsStr::new("-f"), copy.as_os_str()]);
        run("ssh-keygen", &args);
        copy
    }

    /// A `GIT_SSH_COMMAND` value for the OpenSSH client: this identity only, this known_hosts
    /// only, strict checking, no user config, no prompts. `key` must not need a passphrase
    /// (see [`Sshd::unencrypted_copy`]).
    /// Public-key logins sshd accepted so far: one per SSH session a client opened.
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// Sessions clients ended themselves (sshd logs the reason a client gave).
    pub fn client_disconnects(&self) -> usize {
        self.log().matches("Received disconnect").count()
    }

    /// Kills the per-connection sshd processes (not the listener): every open session dies, as
    /// when a server restarts or a connection is dropped.
    pub fn kill_sessions(&self) -> usize {
        let listener = self.child.child.id();
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = read_file_lossy(&entry.path().join("stat"));
            // pid (comm) state ppid …: the comm may hold spaces, so split after its `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(listener) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed += 1;
            }
        }
        killed
    }

    pub fn ssh_command(&self, key: &Path, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
             -o BatchMode=yes -o ConnectTimeout=10",
            key.display(),
            known_hosts.display()
        )
    }

    /// The server's host key: `(type, raw blob)` as found in its `.pub` file.
    pub fn host_key(&self) -> (String, Vec<u8>) {
        use base64::Engine as _;
        let text = read_file_lossy(&self.host_key_pub);
        let mut fields = text.split_whitespace();
        let kind = fields.next().unwrap().to_string();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(fields.next().unwrap())
            .unwrap();
        (kind, blob)
    }

    /// What sshd logged so far (LogLevel VERBOSE).
    pub fn log(&self) -> String {
        read_file_lossy(&self.dir.path().join("sshd.log"))
    }
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_os_string();
    s.push(".pub");
    PathBuf::from(s)
}

fn keygen(path: &Path, kind: &str, bits: Option<&str>, passphrase: &str) {
    let mut args: Vec<&OsStr> = vec![OsStr::new("-q"), OsStr::new("-t"), OsStr::new(kind)];
    if let Some(bits) = bits {
        args.extend([OsStr::new("-b"), OsStr::new(bits)]);
    }
    args.extend([OsStr::new("-N"), OsStr::new(passphrase)]);
    args.extend([OsStr::new("-C"), OsStr::new("hookmirror-test")]);
    args.extend([OsStr::new("-f"), path.as_os_str()]);
    run("ssh-keygen", &args);
}

/// The first two fields (`type base64`) of a key's `.pub` file.
fn key_type_and_blob(private_key: &Path) -> String {
    let text = read_file_lossy(&pub_path(private_key));
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "root".to_string(),
    }
}

/// Whether something on `port` speaks SSH (sends an `SSH-` banner).
fn ssh_banner(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// The private sshd's config. `HOME` is the sshd's own folder: bash, the login shell that runs
/// each command, reads `~/.bashrc` when started by sshd, and a user's rc file (here root's runs
/// `pyenv init`, ~300 ms) is not what a forge's SSH front end does per fetch.
fn sshd_config(
    dir: &Path,
    port: u16,
    host_key: &Path,
    authorized_keys: &Path,
    no_penalties: bool,
) -> String {
    let mut c = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         StrictModes no\n\
         UsePAM no\n\
         UseDNS no\n\
         PrintMotd no\n\
         AcceptEnv GIT_PROTOCOL\n\
         LogLevel VERBOSE\n\
         PidFile {pid}\n\
         SetEnv HOME={home}\n",
        host_key = host_key.display(),
        authorized_keys = authorized_keys.display(),
        pid = dir.join("sshd.pid").display(),
        home = dir.display(),
    );
    if no_penalties {
        c.push_str("PerSourcePenalties no\n");
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Smart HTTP with basic auth
// ---------------------------------------------------------------------------------------------

/// Smart HTTP git server on 127.0.0.1: axum on a tokio runtime in a background thread, running
/// `git http-backend` as a CGI per request, behind HTTP basic auth. Read and write (push) are
/// both allowed for the authorised user.
pub struct GitHttp {
    pub port: u16,
    requests: Arc<AtomicUsize>,
    unauthorized: Arc<AtomicUsize>,
    chunked: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct HttpState {
    base: PathBuf,
    expected_auth: String,
    username: String,
    requests: Arc<AtomicUsize>,
    unauthorized: Arc<AtomicUsize>,
    chunked: Arc<AtomicUsize>,
}

impl GitHttp {
    /// Serves the repos under `base`; every request must carry `Authorization: Basic
    /// base64(username:token)`, else 401 with `WWW-Authenticate: Basic realm="hookmirror-test"`.
    pub fn start(base: &Path, username: &str, token: &str) -> GitHttp {
        use base64::Engine as _;
        let base = base.canonicalize().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let unauthorized = Arc::new(AtomicUsize::new(0));
        let chunked = Arc::new(AtomicUsize::new(0));
        let state = HttpState {
            base,
            expected_auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{token}"))
            ),
            username: username.to_string(),
            requests: requests.clone(),
            unauthorized: unauthorized.clone(),
            chunked: chunked.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name(format!("git-http-{port}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("listener: {e}")));
                            return;
                        }
                    };
                    let app = axum::Router::new().fallback(http_handler).with_state(state);
                    let _ = ready_tx.send(Ok(()));
                    let server = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    );
                    tokio::select! {
                        r = server => { if let Err(e) = r { eprintln!("git http server: {e}"); } }
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels open connections; CGI children are
                // kill_on_drop.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .unwrap();
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("git http server did not start: {e}"),
            Err(e) => panic!("git http server did not start: {e}"),
        }
        GitHttp {
            port,
            requests,
            unauthorized,
            chunked,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/path_under_base` (no credentials).
    pub fn url(&self, path_under_base: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path_under_base.trim_start_matches('/')
        )
    }

    /// [`GitHttp::url`] with `user:password@` in it.
    pub fn url_with_credentials(
        &self,
        path_under_base: &str,
        user: &str,
        password: &str,
    ) -> String {
        format!(
            "http://{user}:{password}@127.0.0.1:{}/{}",
            self.port,
            path_under_base.trim_start_matches('/')
        )
    }

    /// Requests received so far, whether authorised or not.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 401 so far.
    pub fn unauthorized_requests(&self) -> usize {
        self.unauthorized.load(Ordering::SeqCst)
    }

    /// Requests whose body came with `Transfer-Encoding: chunked` (authorised or not).
    pub fn chunked_requests(&self) -> usize {
        self.chunked.load(Ordering::SeqCst)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn http_handler(
    axum::extract::State(state): axum::extract::State<HttpState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;

    state.requests.fetch_add(1, Ordering::SeqCst);
    let is_chunked = request
        .headers()
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if is_chunked {
        state.chunked.fetch_add(1, Ordering::SeqCst);
    }
    let authorised = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == state.expected_auth);
    if !authorised {
        state.unauthorized.fetch_add(1, Ordering::SeqCst);
        let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hookmirror-test\""),
        );
        return response;
    }

    let (parts, body) = request.into_parts();
    let header_str = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("cannot read body: {e}\n")).into_response();
        }
    };

    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &state.base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", percent_decode(parts.uri.path()))
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REMOTE_USER", &state.username)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = header_str("content-type") {
        cmd.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header_str("git-protocol") {
        cmd.env("GIT_PROTOCOL", v);
    }
    if let Some(v) = header_str("content-encoding") {
        // http-backend inflates gzip request bodies itself when told so.
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot run git http-backend: {e}\n"),
            )
                .into_response();
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&body).await;
            let _ = stdin.shutdown().await;
        });
    }
    let output = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("git http-backend failed: {e}\n"),
            )
                .into_response();
        }
    };
    match parse_cgi(&output.stdout) {
        Some(CgiResponse {
            status,
            headers,
            body,
        }) => {
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            for (name, value) in headers {
                if let (Ok(n), Ok(v)) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().append(n, v);
                }
            }
            response
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "git http-backend gave no CGI response ({}): {}\n",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        )
            .into_response(),
    }
}

/// A CGI program's answer: status (from `Status:`, default 200), other headers, body.
struct CgiResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Splits CGI output into status, other headers and body.
fn parse_cgi(out: &[u8]) -> Option<CgiResponse> {
    let (head_len, sep_len) = find_header_end(out)?;
    let head = std::str::from_utf8(&out[..head_len]).ok()?;
    let body = out[head_len + sep_len..].to_vec();
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value.split_whitespace().next()?.parse().ok()?;
        } else {
            headers.push((name.trim().to_string(), value.to_string()));
        }
    }
    Some(CgiResponse {
        status,
        headers,
        body,
    })
}

/// Offset and length of the blank line ending CGI headers (`\r\n\r\n` or `\n\n`).
fn find_header_end(out: &[u8]) -> Option<(usize, usize)> {
    let crlf = out.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = out.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) if b < a => Some((b, 2)),
        (Some(a), _) => Some((a, 4)),
        (None, Some(b)) => Some((b, 2)),
        (None, None) => None,
    }
}

fn percent_decode(path: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
