//! hookmirror benchmark driver. `bench/run.sh` builds and runs it; the method is described there.
//!
//! Subcommands:
//! - `run --hookmirror BIN --fixture JSON --work DIR [options]`: the whole benchmark
//! - `minimal-server`: the intake floor (prints its port, serves until killed)
//! - `faults --hookmirror BIN --fixture JSON --work DIR [options]`: the fault benchmarks
//!   (`bench/faults.sh`)

mod client;
mod faults;
mod load;
mod minimal;
mod origin;
mod procs;
mod rss;
mod slowloris;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use client::{Conn, Delivery, push_delivery, webhook_request};
use origin::{GitDaemon, Origin};
use procs::{Proc, free_port, git, git_quiet, path_str, proc_cpu, self_cpu, wait_port};

const SECRET: &str = "bench-webhook-secret";
const TOKEN: &str = "bench-api-token";
const REPO: &str = "bench";
const HOOK_PATH: &str = "/hooks/bench";
/// Polling interval of the status API while waiting for a sync.
const POLL: Duration = Duration::from_millis(1);

struct Opts {
    hookmirror: PathBuf,
    fixture: PathBuf,
    work: PathBuf,
    iterations: usize,
    warmup: usize,
    bursts: usize,
    burst_size: usize,
    requests: u64,
    warm_requests: u64,
    rounds: usize,
    concurrency: usize,
    /// `depth:` for hookmirror's repository in (a) and (b) (shallow fetches); none by default.
    depth: Option<u32>,
    /// Which sections run: any of `abcdef`.
    sections: String,
    /// Slowloris connections in (d).
    attack: usize,
    /// Repositories and workers in (e).
    rss_repos: usize,
    rss_workers: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("minimal-server") => minimal::serve(false),
        Some("checked-server") => minimal::serve(true),
        Some("faults") => faults::main(&args[1..]),
        // Load only, for profiling a server by hand:
        // `load PORT FIXTURE URL REQUESTS CONCURRENCY` (the untracked-branch delivery).
        Some("load") if args.len() == 6 => {
            let port: u16 = args[1].parse().expect("port");
            let template: Value =
                serde_json::from_slice(&std::fs::read(&args[2]).expect("fixture")).expect("JSON");
            let d = untracked_delivery(&template, &args[3]);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let r = rt.block_on(load::run(
                ([127, 0, 0, 1], port).into(),
                HOOK_PATH,
                &d,
                args[4].parse().expect("requests"),
                args[5].parse().expect("concurrency"),
            ));
            println!(
                "{:.0} req/s, statuses {:?}, errors {}, body {} B; answer: {}",
                r.rps(),
                r.statuses,
                r.errors,
                d.body.len(),
                r.sample
            );
        }
        Some("run") => {
            let opts = parse_opts(&args[1..]);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(run(opts));
        }
        _ => {
            eprintln!(
                "usage: hookmirror-bench run --hookmirror BIN --fixture JSON --work DIR \
                 [--iterations N] [--warmup N] [--bursts N] [--burst-size N] [--requests N] \
                 [--warm-requests N] [--rounds N] [--concurrency N] [--depth N]\n       hookmirror-bench minimal-server"
            );
            std::process::exit(2);
        }
    }
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        hookmirror: PathBuf::new(),
        fixture: PathBuf::new(),
        work: PathBuf::new(),
        iterations: 30,
        warmup: 3,
        bursts: 5,
        burst_size: 50,
        requests: 20_000,
        warm_requests: 3_000,
        rounds: 5,
        concurrency: 32,
        depth: None,
        sections: "abcdef".into(),
        attack: 1500,
        rss_repos: 1000,
        rss_workers: 16,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| panic!("{k} needs a value"))
            .clone();
        let num = || {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{k}: not a number"))
        };
        match k.as_str() {
            "--hookmirror" => o.hookmirror = PathBuf::from(&v),
            "--fixture" => o.fixture = PathBuf::from(&v),
            "--work" => o.work = PathBuf::from(&v),
            "--iterations" => o.iterations = num() as usize,
            "--warmup" => o.warmup = num() as usize,
            "--bursts" => o.bursts = num() as usize,
            "--burst-size" => o.burst_size = num() as usize,
            "--requests" => o.requests = num(),
            "--warm-requests" => o.warm_requests = num(),
            "--rounds" => o.rounds = num() as usize,
            "--concurrency" => o.concurrency = num() as usize,
            "--depth" => o.depth = Some(num() as u32),
            "--sections" => o.sections = v.clone(),
            "--attack" => o.attack = num() as usize,
            "--rss-repos" => o.rss_repos = num() as usize,
            "--rss-workers" => o.rss_workers = num() as usize,
            _ => panic!("unknown option {k}"),
        }
    }
    assert!(o.hookmirror.is_file(), "--hookmirror must name the binary");
    assert!(o.fixture.is_file(), "--fixture must name a push payload");
    assert!(o.work.is_dir(), "--work must name an existing empty folder");
    o
}

// ---- statistics --------------------------------------------------------------------------------

/// Nearest-rank percentile of `v` (sorted or not).
fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

// ---- hookmirror --------------------------------------------------------------------------------

fn write_config(
    path: &Path,
    port: u16,
    url: &str,
    checkout: &Path,
    logfile: &Path,
    initialise: bool,
    depth: Option<u32>,
) {
    let text = format!(
        "listen: 127.0.0.1:{port}\n\
         workers: 4\n\
         initialise: {initialise}\n\
         log:\n  format: text\n  level: info\n  output: {log}\n\
         api:\n  token: {TOKEN}\n\
         repos:\n\
         \x20 - name: {REPO}\n\
         \x20   url: {url}\n\
         \x20   directory: {dir}\n\
         \x20   branch: main\n\
         \x20   provider: github\n\
         \x20   secret: {SECRET}\n",
        log = logfile.display(),
        dir = checkout.display(),
    );
    let text = match depth {
        Some(d) => format!("{text}    depth: {d}\n"),
        None => text,
    };
    std::fs::write(path, text).expect("write config");
}

/// Starts `hookmirror serve` with the config at `config` (whose port is `port`) and waits for
/// `/healthz`.
async fn start_hookmirror(bin: &Path, config: &Path, port: u16, out: &Path) -> Proc {
    start_hookmirror_env(bin, config, port, out, &[]).await
}

/// [`start_hookmirror`] with extra environment variables.
async fn start_hookmirror_env(
    bin: &Path,
    config: &Path,
    port: u16,
    out: &Path,
    env: &[(&str, &str)],
) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().copied());
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("hookmirror out"))
        .stderr(std::fs::File::create(out.with_extension("err")).expect("hookmirror err"));
    let mut p = Proc::spawn("hookmirror", &mut cmd);
    if !wait_port(port, &mut p, Duration::from_secs(20)) {
        panic!(
            "hookmirror did not start; stderr:\n{}",
            std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
        );
    }
    p
}

async fn status(api: &mut Conn) -> Value {
    api.get_json(&format!("/api/repos/{REPO}"), TOKEN)
        .await
        .expect("status API")
}

fn sleep_poll() {
    tokio::task::block_in_place(|| std::thread::sleep(POLL));
}

/// Polls the status API every POLL until `commit` is `want`; returns the last status.
async fn wait_commit(api: &mut Conn, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(api).await;
        if s["commit"].as_str() == Some(want) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "hookmirror did not reach {want} in {limit:?}; status: {s}"
        );
        sleep_poll();
    }
}

/// Polls until no sync runs or is pending.
async fn wait_idle(api: &mut Conn) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(api).await;
        if s["state"].as_str() == Some("idle") && s["pending"].as_bool() == Some(false) {
            return s;
        }
        assert!(Instant::now() < deadline, "hookmirror never idle: {s}");
        sleep_poll();
    }
}

async fn send_hook(conn: &mut Conn, d: &Delivery) -> u16 {
    let req = webhook_request(&conn.host(), HOOK_PATH, d);
    let (st, body) = conn.send(req).await.expect("webhook");
    assert!(
        st.is_success(),
        "webhook answered {st}: {}",
        String::from_utf8_lossy(&body)
    );
    st.as_u16()
}

/// `git fetch origin main && git reset --hard origin/main` in `dir`; (fetch, reset) times.
fn raw_sync(dir: &Path) -> (Duration, Duration) {
    tokio::task::block_in_place(|| {
        let t0 = Instant::now();
        git_quiet(dir, &["fetch", "-q", "origin", "main"]);
        let t1 = Instant::now();
        git_quiet(dir, &["reset", "-q", "--hard", "origin/main"]);
        (t1 - t0, t1.elapsed())
    })
}

/// Pack files in a checkout (libgit2 writes one per fetch and never repacks).
fn count_packs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(".git/objects/pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}

fn head(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD"])
}

// ---- the run -----------------------------------------------------------------------------------

struct LatencyResult {
    hm: Vec<f64>,
    hm_sync: Vec<f64>,
    raw: Vec<f64>,
    raw_fetch: Vec<f64>,
    raw_reset: Vec<f64>,
}

struct BurstResult {
    total: Vec<f64>,
    sending: Vec<f64>,
    tail: Vec<f64>,
    fetches: Vec<u64>,
    syncs: Vec<u64>,
    raw_catchup: Vec<f64>,
}

struct IntakeRound {
    rps: f64,
    server_cpu_us: f64,
    client_cpu_us: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn run(o: Opts) {
    let t_start = Instant::now();
    let w = o.work.canonicalize().expect("work dir");
    let template: Value = serde_json::from_slice(&std::fs::read(&o.fixture).expect("read fixture"))
        .expect("fixture JSON");

    log("setting up the origin and git daemon");
    let mut origin = Origin::new(&w);
    let daemon = GitDaemon::start(&origin.base, &w.join("git-daemon.log"));
    let url = daemon.url("origin.git");

    // The raw-git clone.
    let raw = w.join("raw");
    git(&w, &["clone", "-q", &url, path_str(&raw)]);

    let ab = if o.sections.contains('a') || o.sections.contains('b') {
        Some(latency_and_bursts(&o, &w, &mut origin, &url, &template).await)
    } else {
        None
    };
    let untracked = untracked_delivery(&template, &url);
    let intake = if o.sections.contains('c') {
        log(format!(
            "(c) intake: {} rounds x {} requests (+{} warm-up), {} connections: do-nothing floor, checked floor, hookmirror",
            o.rounds, o.requests, o.warm_requests, o.concurrency
        ));
        Some(
            intake_rounds(
                &o,
                &w,
                &url,
                &untracked,
                &[Server::Minimal, Server::Checked, Server::Hookmirror],
                0,
            )
            .await,
        )
    } else {
        None
    };
    let attacked = if o.sections.contains('d') {
        log(format!(
            "(d) intake during a {}-connection slowloris: checked floor, hookmirror",
            o.attack
        ));
        Some(
            intake_rounds(
                &o,
                &w,
                &url,
                &untracked,
                &[Server::Checked, Server::Hookmirror],
                o.attack,
            )
            .await,
        )
    } else {
        None
    };
    let rss = if o.sections.contains('e') {
        Some(rss::run(&o.hookmirror, &url, &w, o.rss_repos, o.rss_workers).await)
    } else {
        None
    };

    let metrics = if o.sections.contains('f') {
        log(format!(
            "(f) metrics overhead: hookmirror against itself with HOOKMIRROR_METRICS=off, {} rounds",
            o.rounds
        ));
        let servers = [Server::Hookmirror, Server::NoMetrics];
        Some(intake_rounds(&o, &w, &url, &untracked, &servers, 0).await)
    } else {
        None
    };

    // In-process cost of the work hookmirror adds per delivery, for the diagnosis.
    let micro = micro_costs(&untracked);
    report(
        &o,
        ab.as_ref(),
        intake.as_ref(),
        attacked.as_ref(),
        rss.as_ref(),
        &micro,
        untracked.body.len(),
    );
    if let Some(m) = &metrics {
        metrics_overhead(m);
    }
    log(format!("done in {:.1} s", t_start.elapsed().as_secs_f64()));
    drop(daemon);
}

/// (f): intake with metrics recorded (as always) against the same binary recording none.
fn metrics_overhead(m: &Intake) {
    let (on, off) = (
        rounds_of(m, Server::Hookmirror),
        rounds_of(m, Server::NoMetrics),
    );
    let ratio = median_rps(on) / median_rps(off);
    let (_, per_round) = paired(on, off);
    println!();
    println!(
        "(f) metrics overhead: hookmirror {:.0} req/s with metrics, {:.0} req/s with HOOKMIRROR_METRICS=off: ratio {ratio:.3} (of the medians), {per_round:.3} (median of per-round ratios); target >= 0.95: {}",
        median_rps(on),
        median_rps(off),
        met(ratio >= 0.95)
    );
}

/// The servers the intake rounds compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Minimal,
    Checked,
    Hookmirror,
    /// The same binary with `HOOKMIRROR_METRICS=off`: no counters, no delivery list.
    NoMetrics,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Minimal => "do-nothing",
            Server::Checked => "hmac+parse",
            Server::Hookmirror => "hookmirror",
            Server::NoMetrics => "no-metrics",
        }
    }
}

/// Rounds of the intake load against each of `servers`, each started fresh per round, the
/// order rotating; with `attack` > 0 a slowloris of that many connections (30 addresses) runs
/// against the server during the load. Returns each server's rounds and a sample answer.
async fn intake_rounds(
    o: &Opts,
    w: &Path,
    url: &str,
    untracked: &Delivery,
    servers: &[Server],
    attack: usize,
) -> Vec<(Server, Vec<IntakeRound>, String)> {
    let cfg_c = w.join("hookmirror-intake.yaml");
    let self_exe = std::env::current_exe().expect("current exe");
    let mut out: Vec<(Server, Vec<IntakeRound>, String)> = servers
        .iter()
        .map(|s| (*s, vec![], String::new()))
        .collect();
    for round in 0..o.rounds {
        for k in 0..servers.len() {
            let which = (k + round) % servers.len();
            let server = servers[which];
            let (mut p, port) = match server {
                Server::Hookmirror | Server::NoMetrics => {
                    let port = free_port();
                    let env: &[(&str, &str)] = if server == Server::NoMetrics {
                        &[("HOOKMIRROR_METRICS", "off")]
                    } else {
                        &[]
                    };
                    let checkout = w.join("hm-checkout");
                    write_config(
                        &cfg_c,
                        port,
                        url,
                        &checkout,
                        &w.join("hookmirror-intake.log"),
                        false,
                        None,
                    );
                    let p = start_hookmirror_env(
                        &o.hookmirror,
                        &cfg_c,
                        port,
                        &w.join("hookmirror-intake.out"),
                        env,
                    )
                    .await;
                    (p, port)
                }
                floor => {
                    let mut cmd = Command::new(&self_exe);
                    let arg = if floor == Server::Checked {
                        "checked-server"
                    } else {
                        "minimal-server"
                    };
                    cmd.arg(arg).stdin(Stdio::null()).stdout(Stdio::piped());
                    let mut p = Proc::spawn(server.name(), &mut cmd);
                    let port: u16 = p.first_line().parse().expect("floor server port");
                    assert!(wait_port(port, &mut p, Duration::from_secs(10)));
                    (p, port)
                }
            };
            let slow = (attack > 0).then(|| {
                let addresses = 30;
                slowloris::Attack::start(port, addresses, attack.div_ceil(addresses as usize))
            });
            if let Some(a) = &slow {
                // Let the attack build up: most connections open.
                let t = Instant::now();
                while a.connections() + a.dropped.load(std::sync::atomic::Ordering::Relaxed)
                    < attack
                    && t.elapsed() < Duration::from_secs(20)
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            load::run(addr, HOOK_PATH, untracked, o.warm_requests, o.concurrency).await;
            let (s0, c0) = (proc_cpu(p.pid()), self_cpu());
            let r = load::run(addr, HOOK_PATH, untracked, o.requests, o.concurrency).await;
            let (s1, c1) = (proc_cpu(p.pid()), self_cpu());
            let attackers = slow.as_ref().map(|a| {
                a.stop();
                (
                    a.connections(),
                    a.dropped.load(std::sync::atomic::Ordering::Relaxed),
                )
            });
            p.stop();
            let name = server.name();
            assert!(
                r.errors == 0 && r.ok() == r.requests,
                "{name}: not every request got 200: {:?}, {} errors; sample: {}",
                r.statuses,
                r.errors,
                r.sample
            );
            if matches!(server, Server::Hookmirror | Server::NoMetrics) {
                assert!(
                    r.sample.contains("ignored"),
                    "hookmirror answered: {}",
                    r.sample
                );
            }
            let lat: Vec<f64> = r.latencies_us.iter().map(|&v| v as f64).collect();
            let round_r = IntakeRound {
                rps: r.rps(),
                server_cpu_us: (s1 - s0).as_secs_f64() * 1e6 / r.requests as f64,
                client_cpu_us: (c1 - c0).as_secs_f64() * 1e6 / r.requests as f64,
                p50_us: pct(&lat, 50.0),
                p99_us: pct(&lat, 99.0),
            };
            let attack_note = attackers
                .map(|(open, dropped)| format!("  (slowloris: {open} connections open at the end, {dropped} dropped by the server)"))
                .unwrap_or_default();
            log(format!(
                "    round {} {name:<10} {:>8.0} req/s  server {:>5.1} us CPU/req  client {:>5.1} us CPU/req{attack_note}",
                round + 1,
                round_r.rps,
                round_r.server_cpu_us,
                round_r.client_cpu_us
            ));
            out[which].1.push(round_r);
            out[which].2 = r.sample;
            // The attackers' sockets close and their tasks end before the next server starts.
            if slow.is_some() {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
        }
    }
    out
}

/// (a) latency and (b) bursts: hookmirror cloning at start-up, then pushes.
async fn latency_and_bursts(
    o: &Opts,
    w: &Path,
    origin: &mut Origin,
    url: &str,
    template: &Value,
) -> (LatencyResult, BurstResult, usize) {
    let t_start = Instant::now();
    let raw = w.join("raw");
    // hookmirror, cloning at start-up (initialise: true).
    let checkout = w.join("hm-checkout");
    let cfg = w.join("hookmirror.yaml");
    let port = free_port();
    write_config(
        &cfg,
        port,
        url,
        &checkout,
        &w.join("hookmirror.log"),
        true,
        o.depth,
    );
    let mut hm = start_hookmirror(&o.hookmirror, &cfg, port, &w.join("hookmirror.out")).await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut api = Conn::connect(addr).await.expect("connect API");
    let mut hook = Conn::connect(addr).await.expect("connect hook");
    let first = origin.main();
    wait_commit(&mut api, &first, Duration::from_secs(30)).await;
    wait_idle(&mut api).await;
    log(format!("ready in {:.1} s", t_start.elapsed().as_secs_f64()));

    // (a) push -> synced latency.
    log(format!(
        "(a) latency: {} warm-up + {} iterations",
        o.warmup, o.iterations
    ));
    let mut lat = LatencyResult {
        hm: vec![],
        hm_sync: vec![],
        raw: vec![],
        raw_fetch: vec![],
        raw_reset: vec![],
    };
    let mut prev = first;
    for i in 0..(o.warmup + o.iterations) {
        let c = tokio::task::block_in_place(|| {
            let c = origin.make_commit();
            origin.update_main(&c, &prev);
            c
        });
        let d = push_delivery(template, SECRET, "refs/heads/main", &prev, &c, url);
        let mut hm_ms = 0.0;
        let mut hm_sync = 0.0;
        let mut raw_t = (Duration::ZERO, Duration::ZERO);
        for step in 0..2 {
            // Alternate which goes first, so neither always meets a warmer cache.
            if (step == 0) == (i % 2 == 0) {
                let t0 = Instant::now();
                send_hook(&mut hook, &d).await;
                let s = wait_commit(&mut api, &c, Duration::from_secs(30)).await;
                hm_ms = ms(t0.elapsed());
                hm_sync = s["last_duration_ms"].as_f64().unwrap_or(f64::NAN);
            } else {
                raw_t = raw_sync(&raw);
                assert_eq!(head(&raw), c, "raw clone did not reach the new commit");
            }
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(20)));
        }
        wait_idle(&mut api).await;
        if i >= o.warmup {
            lat.hm.push(hm_ms);
            lat.hm_sync.push(hm_sync);
            lat.raw.push(ms(raw_t.0 + raw_t.1));
            lat.raw_fetch.push(ms(raw_t.0));
            lat.raw_reset.push(ms(raw_t.1));
        }
        prev = c;
    }
    assert_eq!(
        git(&checkout, &["rev-parse", "HEAD"]),
        prev,
        "hookmirror checkout HEAD"
    );

    // (b) bursts.
    log(format!(
        "(b) burst: {} bursts of {} branch moves, a webhook after each",
        o.bursts, o.burst_size
    ));
    let mut burst = BurstResult {
        total: vec![],
        sending: vec![],
        tail: vec![],
        fetches: vec![],
        syncs: vec![],
        raw_catchup: vec![],
    };
    for _ in 0..o.bursts {
        let commits: Vec<String> = tokio::task::block_in_place(|| {
            (0..o.burst_size).map(|_| origin.make_commit()).collect()
        });
        let deliveries: Vec<Delivery> = {
            let mut before = prev.clone();
            commits
                .iter()
                .map(|c| {
                    let d = push_delivery(template, SECRET, "refs/heads/main", &before, c, url);
                    before = c.clone();
                    d
                })
                .collect()
        };
        let s0 = wait_idle(&mut api).await;
        let last = commits.last().expect("burst size > 0").clone();
        let t0 = Instant::now();
        for (c, d) in commits.iter().zip(&deliveries) {
            origin.write_main(c);
            send_hook(&mut hook, d).await;
        }
        let sent = t0.elapsed();
        wait_commit(&mut api, &last, Duration::from_secs(60)).await;
        let total = t0.elapsed();
        let s1 = wait_idle(&mut api).await;
        let delta = |k: &str| s1[k].as_u64().unwrap_or(0) - s0[k].as_u64().unwrap_or(0);
        burst.total.push(ms(total));
        burst.sending.push(ms(sent));
        burst.tail.push(ms(total - sent));
        burst.fetches.push(delta("fetches"));
        burst.syncs.push(delta("syncs"));
        assert_eq!(s1["commit"].as_str(), Some(last.as_str()));
        // The floor: one raw fetch+reset over the same 50 commits.
        let (f, r) = raw_sync(&raw);
        assert_eq!(head(&raw), last);
        burst.raw_catchup.push(ms(f + r));
        prev = last;
    }
    hm.stop();
    let packs = count_packs(&checkout);
    drop(api);
    drop(hook);
    (lat, burst, packs)
}

/// A push to `refs/heads/untracked` of the repository at `url`: hookmirror verifies and parses
/// it, then answers 200 "ignored".
fn untracked_delivery(template: &Value, url: &str) -> Delivery {
    push_delivery(
        template,
        SECRET,
        "refs/heads/untracked",
        "0123456789abcdef0123456789abcdef01234567",
        "89abcdef0123456789abcdef0123456789abcdef",
        url,
    )
}

struct Micro {
    hmac_us: f64,
    json_us: f64,
    typed_us: f64,
}

/// Only the fields hookmirror reads from a GitHub push, each still a `Value` so that type checks
/// stay hookmirror's; everything else is skipped by serde without building anything.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct PushFields {
    #[serde(rename = "ref")]
    git_ref: Option<Value>,
    before: Option<Value>,
    after: Option<Value>,
    deleted: Option<Value>,
    repository: Option<RepoFields>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct RepoFields {
    clone_url: Option<Value>,
    ssh_url: Option<Value>,
    git_url: Option<Value>,
    html_url: Option<Value>,
    url: Option<Value>,
    svn_url: Option<Value>,
}

/// Microseconds per call of `f`: the fastest of 7 batches of 300 calls, so that other load on
/// the machine (a compile next door) does not inflate it.
fn per_call_us(mut f: impl FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..300 {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / 300.0
        })
        .fold(f64::INFINITY, f64::min)
}

fn micro_costs(d: &Delivery) -> Micro {
    use hmac::{Hmac, KeyInit, Mac};
    let body = &d.body;
    let hmac_us = per_call_us(|| {
        let mut m =
            <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
        m.update(std::hint::black_box(body));
        std::hint::black_box(m.finalize());
    });
    let json_us = per_call_us(|| {
        let v: Value = serde_json::from_slice(std::hint::black_box(body)).expect("json");
        std::hint::black_box(v);
    });
    let typed_us = per_call_us(|| {
        let v: PushFields = serde_json::from_slice(std::hint::black_box(body)).expect("json");
        std::hint::black_box(v);
    });
    Micro {
        hmac_us,
        json_us,
        typed_us,
    }
}

/// Median req/s of a server's rounds.
fn median_rps(r: &[IntakeRound]) -> f64 {
    median(&r.iter().map(|x| x.rps).collect::<Vec<_>>())
}

fn col(r: &[IntakeRound], g: fn(&IntakeRound) -> f64) -> f64 {
    median(&r.iter().map(g).collect::<Vec<_>>())
}

type Intake = Vec<(Server, Vec<IntakeRound>, String)>;

fn rounds_of(i: &Intake, s: Server) -> &[IntakeRound] {
    i.iter()
        .find(|(x, _, _)| *x == s)
        .map_or(&[][..], |(_, r, _)| r.as_slice())
}

/// The per-round ratios of `a` to `b` (each round runs both back to back, which cancels slow
/// drifts in background load), and their median.
fn paired(a: &[IntakeRound], b: &[IntakeRound]) -> (Vec<f64>, f64) {
    let v: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.rps / y.rps).collect();
    let m = median(&v);
    (v, m)
}

fn intake_table(i: &Intake) {
    println!(
        "    {:<12} {:>12} {:>36} {:>11} {:>11} {:>8} {:>8}",
        "server", "median req/s", "rounds req/s", "srv us/req", "cli us/req", "p50 us", "p99 us"
    );
    for (s, r, _) in i {
        let rounds: Vec<String> = r.iter().map(|v| format!("{:.0}", v.rps)).collect();
        println!(
            "    {:<12} {:>12.0} {:>36} {:>11.1} {:>11.1} {:>8.0} {:>8.0}",
            s.name(),
            median_rps(r),
            rounds.join(" "),
            col(r, |x| x.server_cpu_us),
            col(r, |x| x.client_cpu_us),
            col(r, |x| x.p50_us),
            col(r, |x| x.p99_us)
        );
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

#[allow(clippy::too_many_arguments)]
fn report(
    o: &Opts,
    ab: Option<&(LatencyResult, BurstResult, usize)>,
    intake: Option<&Intake>,
    attacked: Option<&Intake>,
    rss: Option<&rss::Rss>,
    micro: &Micro,
    body_len: usize,
) {
    let mut summary: Vec<(String, f64, &str, String)> = Vec::new();
    println!();
    println!("== hookmirror benchmark ==");
    println!(
        "machine: {} cpus; git {}; all traffic on 127.0.0.1",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        git(Path::new("/"), &["--version"]).trim_start_matches("git version ")
    );
    println!();
    if let Some((lat, b, packs)) = ab {
        let packs = *packs;
        let f = |v: &[f64]| {
            format!(
                "{:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                median(v),
                pct(v, 90.0),
                pct(v, 0.0),
                pct(v, 100.0)
            )
        };
        println!(
            "(a) push -> synced latency over git:// ({} iterations; one changed file per commit; 201-file tree, {}+ commits of history)",
            o.iterations,
            origin::HISTORY
        );
        if let Some(d) = o.depth {
            println!("    hookmirror repository configured with depth: {d} (shallow fetches)");
        }
        println!(
            "    {:<44} {:>8} {:>8} {:>8} {:>8}   (ms)",
            "", "median", "p90", "min", "max"
        );
        println!(
            "    {:<44} {}",
            "hookmirror: webhook sent -> API shows commit",
            f(&lat.hm)
        );
        println!(
            "    {:<44} {}",
            "  of which the sync itself (last_duration_ms)",
            f(&lat.hm_sync)
        );
        println!(
            "    {:<44} {}",
            "raw git: fetch + reset --hard",
            f(&lat.raw)
        );
        println!(
            "    {:<44} {}",
            "  git fetch origin main",
            f(&lat.raw_fetch)
        );
        println!(
            "    {:<44} {}",
            "  git reset --hard origin/main",
            f(&lat.raw_reset)
        );
        let ratio_a = median(&lat.hm) / median(&lat.raw);
        let ratio_a90 = pct(&lat.hm, 90.0) / pct(&lat.raw, 90.0);
        println!(
            "    ratio hookmirror/raw: median {ratio_a:.3}, p90 {ratio_a90:.3}   (target <= 0.5: {})",
            if ratio_a <= 0.5 { "MET" } else { "NOT MET" }
        );
        println!(
            "    (hookmirror time includes up to {} ms of status polling granularity)",
            POLL.as_millis()
        );
        let k = (lat.hm_sync.len() / 3).max(1);
        println!(
            "    hookmirror sync time, first {k} vs last {k} iterations (median): {:.1} -> {:.1} ms; checkout after (a)+(b): {packs} pack files (one per fetch, never repacked)",
            median(&lat.hm_sync[..k]),
            median(&lat.hm_sync[lat.hm_sync.len() - k..])
        );
        println!();
        println!(
            "(b) burst: {} branch moves, a signed webhook after each without waiting ({} bursts)",
            o.burst_size, o.bursts
        );
        println!(
            "    {:<5} {:>12} {:>12} {:>12} {:>8} {:>6} {:>14}",
            "burst", "total ms", "sending ms", "tail ms", "fetches", "syncs", "raw 1x ms"
        );
        for i in 0..b.total.len() {
            println!(
                "    {:<5} {:>12.1} {:>12.1} {:>12.1} {:>8} {:>6} {:>14.1}",
                i + 1,
                b.total[i],
                b.sending[i],
                b.tail[i],
                b.fetches[i],
                b.syncs[i],
                b.raw_catchup[i]
            );
        }
        println!(
            "    median total {:.1} ms; fetches per burst {:?} (coalesced: while the webhooks keep coming, one sync runs and one waits, so about one fetch per sync-length of sending, plus one); vs one raw fetch+reset over the same commits: {:.2}x",
            median(&b.total),
            b.fetches,
            median(&b.total) / median(&b.raw_catchup)
        );
        println!(
            "    (total = first move to API showing the last commit; tail = last webhook answered to synced)"
        );
        println!();

        let ratio_a = median(&lat.hm) / median(&lat.raw);
        summary.push((
            "(a) latency hookmirror/raw (median)".into(),
            ratio_a,
            "<= 0.5",
            met(ratio_a <= 0.5).into(),
        ));
        summary.push((
            "(b) burst / one raw catch-up (median)".into(),
            median(&b.total) / median(&b.raw_catchup),
            "-",
            "-".into(),
        ));
    }
    if let Some(i) = intake {
        println!(
            "(c) intake throughput: {} B signed GitHub push to an untracked branch, {} keep-alive connections, {} requests x {} rounds",
            body_len, o.concurrency, o.requests, o.rounds
        );
        intake_table(i);
        let (hm, checked, minimal) = (
            rounds_of(i, Server::Hookmirror),
            rounds_of(i, Server::Checked),
            rounds_of(i, Server::Minimal),
        );
        let ratio = median_rps(hm) / median_rps(checked);
        let (per_round, paired_median) = paired(hm, checked);
        println!(
            "    hookmirror/hmac+parse req/s: {ratio:.3} (of the medians); per round {} -> median {paired_median:.3}   (target >= 0.9: {})",
            per_round
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
            met(ratio >= 0.9)
        );
        println!(
            "    hookmirror/do-nothing req/s: {:.3}; server CPU per request hookmirror/hmac+parse {:.2}x, hookmirror/do-nothing {:.2}x",
            median_rps(hm) / median_rps(minimal),
            col(hm, |x| x.server_cpu_us) / col(checked, |x| x.server_cpu_us),
            col(hm, |x| x.server_cpu_us) / col(minimal, |x| x.server_cpu_us)
        );
        println!(
            "    in-process cost per delivery (this driver, same crates): HMAC-SHA256 over the body {:.1} us; \
             serde_json::Value parse+drop {:.1} us; typed parse of only the used fields {:.1} us",
            micro.hmac_us, micro.json_us, micro.typed_us
        );
        for (s, _, sample) in i {
            println!("    answer of {}: {}", s.name(), sample.trim());
        }
        println!();
        summary.push((
            "(c) intake hookmirror/hmac+parse (medians)".into(),
            ratio,
            ">= 0.9",
            met(ratio >= 0.9).into(),
        ));
        summary.push((
            "(c) intake hookmirror/hmac+parse (paired)".into(),
            paired_median,
            "-",
            "-".into(),
        ));
    }
    if let Some(i) = attacked {
        println!(
            "(d) the same intake during a slowloris of {} connections (30 addresses from 127.0.0.2, a byte a second each, reconnecting when dropped)",
            o.attack
        );
        intake_table(i);
        let hm = rounds_of(i, Server::Hookmirror);
        let checked_attacked = rounds_of(i, Server::Checked);
        let floor = intake
            .map(|c| rounds_of(c, Server::Checked))
            .filter(|r| !r.is_empty());
        let base = floor.unwrap_or(checked_attacked);
        let ratio = median_rps(hm) / median_rps(base);
        println!(
            "    hookmirror under attack / hmac+parse {}: {ratio:.3}   (target >= 0.7: {}); / hmac+parse under attack: {:.3}",
            if floor.is_some() {
                "without attack (c)"
            } else {
                "under attack"
            },
            met(ratio >= 0.7),
            median_rps(hm) / median_rps(checked_attacked)
        );
        println!();
        summary.push((
            "(d) intake under slowloris / hmac+parse".into(),
            ratio,
            ">= 0.7",
            met(ratio >= 0.7).into(),
        ));
    }
    if let Some(r) = rss {
        println!(
            "(e) idle memory, {} repositories over git:// (workers {}), read once stable (25-90 s after the last sync)",
            o.rss_repos, o.rss_workers
        );
        println!(
            "    {:<34} {:>9} {:>9} {:>9} {:>8}",
            "", "RSS MB", "anon MB", "peak MB", "synced s"
        );
        for (what, (rss, anon, peak), secs) in [
            ("first start (clones every repo)", r.first, r.first_secs),
            ("restart (all cloned, fetches)", r.restart, r.restart_secs),
        ] {
            println!(
                "    {:<34} {:>9.1} {:>9.1} {:>9.1} {:>8.1}",
                what,
                rss as f64 / 1024.0,
                anon as f64 / 1024.0,
                peak as f64 / 1024.0,
                secs
            );
        }
        let worst = r.first.0.max(r.restart.0) as f64 / 1024.0;
        println!(
            "    idle RSS: {worst:.1} MB (target <= 25 MB: {})",
            met(worst <= 25.0)
        );
        println!();
        summary.push((
            format!("(e) idle RSS MB, {} repos (worst of both)", o.rss_repos),
            worst,
            "<= 25",
            met(worst <= 25.0).into(),
        ));
    }
    println!("summary");
    println!(
        "    {:<46} {:>8} {:>10} {:>8}",
        "ratio", "value", "target", "result"
    );
    for (what, v, target, result) in summary {
        println!("    {what:<46} {v:>8.3} {target:>10} {result:>8}");
    }
}
