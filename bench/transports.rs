//! hookmirror's engine against the git CLI over each transport, in one run, as ratios.
//!
//!     cargo bench --bench transports [-- ITERATIONS] [--quick] [--only 1,2,3,4]
//!
//! (default 15 iterations; `--quick`: 5, and one first clone; `--only`: those parts)
//!
//! Complements `bench/run.sh`, whose latency part runs over `git daemon` only. All servers run
//! on 127.0.0.1: `git daemon` (git://), nginx + fcgiwrap + `git http-backend` over TLS with a
//! test CA and basic auth (https://, the test suite's `NginxGit`), a private OpenSSH `sshd`
//! (ed25519 key; it runs commands with a HOME of its own, so the machine user's `~/.bashrc` is not
//! timed with every fetch — a forge's SSH front end runs no rc file). Parts:
//!
//! 1. **One change synced**: the origin has 301 commits of history (50 files in 10 folders);
//!    per iteration one new commit is pushed, then — in alternating order — hookmirror runs
//!    `sync_with_retry` of its checkout in process (as the daemon's workers do: no process
//!    start-up counted, connections kept between syncs as in the daemon) and the git CLI runs
//!    `git fetch -q origin main` + `git reset -q --hard FETCH_HEAD` in a separate clone. Median
//!    of the iterations, ratio hookmirror/CLI. The https and ssh rows are repeated through a TCP
//!    proxy that delays every chunk by 20 ms each way (a remote ~40 ms away: handshakes cost).
//! 2. **First clone** of a 20,000-file repository (one commit, ~100 bytes per file, made with
//!    `git fast-import`) over https and ssh into a tmpfs (`/dev/shm`): hookmirror's first sync
//!    (clone + checkout) against `git clone -q`; median of 5 (1 with `--quick`).
//! 3. **Memory**: peak RSS of this process while hookmirror clones a repository whose pack is
//!    over 100 MB (incompressible files) over https, minus its RSS just before (the kernel's peak
//!    counter is reset first, `/proc/self/clear_refs`).
//! 4. **8 repositories of one host at once**: 8 checkouts of the origin cloned in parallel
//!    threads, then 3 rounds of 8 parallel syncs (a new commit before each), over https and over
//!    ssh; all must succeed, and the connections the servers saw are counted (nginx's connection
//!    serials, sshd's accepted logins): at most 8, however many syncs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hookmirror::config::{Context, Format, Repo, parse_str, validate};
use hookmirror::sync::{SyncOptions, sync_with_retry};
use support::https::{DelayProxy, NginxGit, NginxOptions, TestCa};
use support::{GitDaemon, Origin, Sshd, git, git_command};

/// The delay the proxy adds in each direction.
const DELAY: Duration = Duration::from_millis(20);

fn repo(url: &str, dir: &Path, extra: &str) -> Repo {
    let text = format!(
        "repos:\n  - name: t\n    url: '{url}'\n    directory: '{}'\n    insecure_no_secret: true\n    branch: main\n{extra}",
        dir.display()
    );
    let raw = parse_str(&text, Format::Yaml).expect("config");
    let mut c = validate(raw, &Context::bare(Format::Yaml, "/")).expect("valid config");
    c.repos.remove(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Who goes first in round `i`: hookmirror (`true`) and the git CLI take turns.
fn turns(i: usize) -> [bool; 2] {
    if i.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// One remote as both sides reach it.
struct Case {
    name: String,
    url: String,
    extra: String,
    cli_url: String,
    cli_env: Vec<(&'static str, String)>,
}

impl Case {
    fn cli(&self, args: &[&str], cwd: &Path) {
        let mut c = git_command(cwd);
        c.args(args);
        for (k, v) in &self.cli_env {
            c.env(k, v);
        }
        let out = c.output().expect("git");
        assert!(
            out.status.success(),
            "{}: git {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn synced(&self, r: &Repo) -> String {
        sync_with_retry(r, &SyncOptions::default(), |_| true)
            .result
            .unwrap_or_else(|e| panic!("{}: {e:?}", self.name))
            .new
    }
}

/// The servers, all serving the folder that holds the origins.
struct Servers {
    ca: TestCa,
    nginx: NginxGit,
    sshd: Sshd,
    key: std::path::PathBuf,
    daemon: GitDaemon,
}

impl Servers {
    fn start(root: &Path) -> Servers {
        let ca = TestCa::new();
        let cert = ca.issue("server", "IP:127.0.0.1", 2);
        let nginx = NginxGit::start(
            root,
            &cert,
            &NginxOptions {
                login: Some(("bench".into(), "bench-token".into())),
                gzip: true,
            },
        );
        let sshd = Sshd::start();
        let key = sshd.unencrypted_copy(&sshd.ed25519_key);
        let daemon = GitDaemon::start(root);
        Servers {
            ca,
            nginx,
            sshd,
            key,
            daemon,
        }
    }

    /// The https case for `path` under the root, on `port` (nginx's, or a proxy's in front).
    fn https(&self, name: &str, path: &str, port: u16) -> Case {
        let url = format!("https://127.0.0.1:{port}/{path}");
        Case {
            name: name.into(),
            extra: format!(
                "    auth:\n      username: bench\n      token: bench-token\n      ca_file: '{}'\n",
                self.ca.cert.display()
            ),
            cli_url: url.replace("https://", "https://bench:bench-token@"),
            url,
            cli_env: vec![("GIT_SSL_CAINFO", self.ca.cert.display().to_string())],
        }
    }

    /// The ssh case for the absolute `path`, on `port` (sshd's, or a proxy's in front; the
    /// host key is listed for that port).
    fn ssh(&self, name: &str, path: &Path, port: u16, scratch: &Path) -> Case {
        let known_hosts = scratch.join(format!("known_hosts_{port}"));
        let host_key = std::fs::read_to_string(&self.sshd.host_key_pub).expect("host key");
        let fields: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", fields.join(" ")),
        )
        .expect("known_hosts");
        let url = format!(
            "ssh://{}@127.0.0.1:{port}{}",
            self.sshd.user,
            path.display()
        );
        Case {
            name: name.into(),
            extra: format!(
                "    auth:\n      ssh_key: '{}'\n      known_hosts: '{}'\n",
                self.key.display(),
                known_hosts.display()
            ),
            cli_url: url.clone(),
            url,
            cli_env: vec![(
                "GIT_SSH_COMMAND",
                self.sshd.ssh_command(&self.key, &known_hosts),
            )],
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let iterations: usize = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with('-') && (*i == 0 || args[i - 1] != "--only"))
        .and_then(|(_, a)| a.parse().ok())
        .unwrap_or(if quick { 5 } else { 15 });
    let only: Vec<char> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| "1234".chars().collect(), |p| p.chars().collect());
    let part = |n: char| only.contains(&n);
    hookmirror::sync::init_libgit2();
    eprintln!("[transports] setting up the origins and the servers");
    let origin = Origin::new();
    for i in 0..300 {
        origin.commit(&format!("d{}/f{}", i % 10, i % 50), &format!("{i}\n"));
    }
    let root = origin.root.path();
    big_origin(&root.join("wide.git"), 20_000);
    let servers = Servers::start(root);
    let scratch = tempfile::tempdir().expect("tempdir");
    let nginx_delayed = DelayProxy::start(servers.nginx.port, DELAY);
    let sshd_delayed = DelayProxy::start(servers.sshd.port, DELAY);

    if part('1') {
        one_change(
            &origin,
            &servers,
            &nginx_delayed,
            &sshd_delayed,
            iterations,
            scratch.path(),
        );
    }
    if part('2') {
        first_clone(&servers, root, if quick { 1 } else { 5 }, scratch.path());
    }
    if part('3') {
        memory(&servers, root);
    }
    if part('4') {
        eight_at_once(&origin, &servers, scratch.path());
    }
}

fn one_change(
    origin: &Origin,
    s: &Servers,
    nginx_delayed: &DelayProxy,
    sshd_delayed: &DelayProxy,
    iterations: usize,
    scratch: &Path,
) {
    let cases = vec![
        Case {
            name: "file://".into(),
            url: origin.file_url(),
            extra: String::new(),
            cli_url: origin.file_url(),
            cli_env: vec![],
        },
        Case {
            name: "git:// (git daemon)".into(),
            url: s.daemon.url("origin.git"),
            extra: String::new(),
            cli_url: s.daemon.url("origin.git"),
            cli_env: vec![],
        },
        s.https("https:// (nginx, TLS)", "origin.git", s.nginx.port),
        s.ssh("ssh:// (sshd)", &origin.bare, s.sshd.port, scratch),
        s.https("https:// +20 ms each way", "origin.git", nginx_delayed.port),
        s.ssh(
            "ssh:// +20 ms each way",
            &origin.bare,
            sshd_delayed.port,
            scratch,
        ),
    ];
    println!(
        "1. one new commit synced, median of {iterations} (ms); hookmirror in process, git CLI as fetch + reset --hard"
    );
    println!(
        "    {:<26} {:>12} {:>12} {:>8}",
        "transport", "hookmirror", "git CLI", "ratio"
    );
    for case in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("hookmirror");
        let r = repo(&case.url, &dir, &case.extra);
        case.synced(&r);
        let cli = tmp.path().join("cli");
        case.cli(
            &["clone", "-q", &case.cli_url, cli.to_str().expect("utf-8")],
            tmp.path(),
        );
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for i in 0..iterations + 2 {
            let new = origin.commit("d0/f0", &format!("{} {i}\n", case.name));
            for hookmirror_turn in turns(i) {
                let t = Instant::now();
                if hookmirror_turn {
                    assert_eq!(case.synced(&r), new, "{}", case.name);
                    if i >= 2 {
                        ours.push(ms(t));
                    }
                } else {
                    case.cli(&["fetch", "-q", "origin", "main"], &cli);
                    case.cli(&["reset", "-q", "--hard", "FETCH_HEAD"], &cli);
                    if i >= 2 {
                        theirs.push(ms(t));
                    }
                }
            }
            assert_eq!(git(&cli, &["rev-parse", "HEAD"]), new, "{}", case.name);
        }
        let (h, c) = (median(ours), median(theirs));
        let through = if case.name.contains("+20") {
            let proxy = if case.name.starts_with("https") {
                nginx_delayed
            } else {
                sshd_delayed
            };
            format!(
                "  ({} connections through the proxy, both sides)",
                proxy.accepted()
            )
        } else {
            String::new()
        };
        println!(
            "    {:<26} {:>12.1} {:>12.1} {:>8.2}{through}",
            case.name,
            h,
            c,
            h / c
        );
    }
}

/// A bare repository at `path` with one commit of `files` small files in 100 folders, written
/// with `git fast-import` (seconds, where `git add` would take much longer).
fn big_origin(path: &Path, files: usize) {
    git(
        path.parent().expect("parent"),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            path.to_str().expect("utf-8"),
        ],
    );
    let mut stream = String::new();
    stream.push_str(
        "commit refs/heads/main\ncommitter B <b@invalid> 1700000000 +0000\ndata 5\nwide\n",
    );
    for i in 0..files {
        let content = format!("file {i}: {}\n", "x".repeat(80 + i % 40));
        stream.push_str(&format!(
            "M 100644 inline d{:02}/f{i:05}.txt\ndata {}\n{content}\n",
            i % 100,
            content.len()
        ));
    }
    feed(path, &stream);
}

/// Runs `git fast-import` in `path` on `stream`.
fn feed(path: &Path, stream: &str) {
    use std::io::Write;
    let mut child = git_command(path)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("fast-import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stream.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "fast-import failed");
}

fn first_clone(s: &Servers, root: &Path, rounds: usize, scratch: &Path) {
    let wide = root.join("wide.git");
    let cases = [
        s.https("https:// (nginx, TLS)", "wide.git", s.nginx.port),
        s.ssh("ssh:// (sshd)", &wide, s.sshd.port, scratch),
    ];
    println!();
    println!(
        "2. first clone of 20,000 files into /dev/shm, median of {rounds} (ms): hookmirror's first sync vs git clone"
    );
    println!(
        "    {:<26} {:>12} {:>12} {:>8}",
        "transport", "hookmirror", "git clone", "ratio"
    );
    for case in cases {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            let shm = tempfile::Builder::new()
                .prefix("hookmirror-bench-")
                .tempdir_in("/dev/shm")
                .expect("a tmpfs at /dev/shm");
            for hookmirror_turn in turns(i) {
                let t = Instant::now();
                if hookmirror_turn {
                    let r = repo(&case.url, &shm.path().join("h"), &case.extra);
                    case.synced(&r);
                    ours.push(ms(t));
                } else {
                    let dest = shm.path().join("c");
                    case.cli(
                        &["clone", "-q", &case.cli_url, dest.to_str().expect("utf-8")],
                        shm.path(),
                    );
                    theirs.push(ms(t));
                }
            }
            let files = |d: &str| walk(&shm.path().join(d));
            assert_eq!(files("h"), files("c"), "{}: the same tree", case.name);
        }
        let (h, c) = (median(ours), median(theirs));
        println!(
            "    {:<26} {:>12.1} {:>12.1} {:>8.2}",
            case.name,
            h,
            c,
            h / c
        );
    }
}

/// Files under `dir`, `.git` aside.
fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        if e.file_name() == ".git" {
            continue;
        }
        if e.path().is_dir() {
            n += walk(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// `VmRSS` or `VmHWM` of this process, in MiB.
fn status_mib(field: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn memory(s: &Servers, root: &Path) {
    let big = root.join("big.git");
    git(
        root,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            big.to_str().expect("utf-8"),
        ],
    );
    // 130 files of 1 MiB of printable noise: a pack of ~113 MB (zlib shrinks ~6.6 bits of
    // entropy per byte to ~83 %).
    let mut stream = String::from(
        "commit refs/heads/main\ncommitter B <b@invalid> 1700000000 +0000\ndata 4\nbig\n",
    );
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..130 {
        let content: String = (0..1 << 20)
            .map(|_| char::from(b'!' + rng.u8(0..94)))
            .collect();
        stream.push_str(&format!(
            "M 100644 inline noise/{i:03}.bin\ndata {}\n{content}\n",
            content.len()
        ));
    }
    feed(&big, &stream);
    let pack_mb: f64 = std::fs::read_dir(big.join("objects/pack"))
        .expect("pack dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| e.metadata().map_or(0, |m| m.len()) as f64 / 1e6)
        .sum();
    let case = s.https("https", "big.git", s.nginx.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = repo(&case.url, &tmp.path().join("big"), &case.extra);
    let idle = status_mib("VmRSS:");
    // Resets VmHWM to the current RSS (Linux ≥ 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let t = Instant::now();
    case.synced(&r);
    let took = ms(t);
    let peak = status_mib("VmHWM:");
    println!();
    println!("3. memory: clone of a {pack_mb:.0} MB pack over https in {took:.0} ms");
    println!(
        "    idle RSS {idle:.1} MiB, peak {peak:.1} MiB{}: +{:.1} MiB (target: within 64 MiB)",
        if reset {
            ""
        } else {
            " (peak counter not reset: over the process's life)"
        },
        peak - idle
    );
}

fn eight_at_once(origin: &Origin, s: &Servers, scratch: &Path) {
    println!();
    println!("4. 8 repositories of one host synced at once, 3 rounds (a new commit before each)");
    let cases = [
        s.https("https:// (nginx, TLS)", "origin.git", s.nginx.port),
        s.ssh("ssh:// (sshd)", &origin.bare, s.sshd.port, scratch),
    ];
    for (k, case) in cases.iter().enumerate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repos: Vec<Repo> = (0..8)
            .map(|i| repo(&case.url, &tmp.path().join(format!("r{i}")), &case.extra))
            .collect();
        let count = || {
            if k == 0 {
                s.nginx.connections()
            } else {
                s.sshd.logins()
            }
        };
        let before = count();
        // The first syncs clone.
        std::thread::scope(|scope| {
            for r in &repos {
                scope.spawn(move || case.synced(r));
            }
        });
        let mut times = Vec::new();
        for round in 0..3 {
            let new = origin.commit("d1/f1", &format!("round {round} {}\n", case.name));
            let t = Instant::now();
            std::thread::scope(|scope| {
                let hs: Vec<_> = repos
                    .iter()
                    .map(|r| scope.spawn(move || case.synced(r)))
                    .collect();
                for h in hs {
                    assert_eq!(h.join().expect("sync thread"), new, "{}", case.name);
                }
            });
            times.push(ms(t));
        }
        println!(
            "    {:<26} 32 syncs ok (8 clones, 3 rounds of 8 fetches) over {} {} (rounds: {:.0} / {:.0} / {:.0} ms)",
            case.name,
            count() - before,
            if k == 0 {
                "TCP/TLS connections"
            } else {
                "SSH logins"
            },
            times[0],
            times[1],
            times[2]
        );
    }
}
