//! The fault benchmarks, `bench/run.sh faults [options]` (one command, one run; it builds the
//! release binary and this driver, as for the main benchmark): (1) a healthy repository's
//! push → synced latency beside a hung and a dead remote, against the same without them; (2) 50
//! repositories pushed at once, the time until all are synced, per `workers`. About a minute
//! after the builds. Summary on stdout, progress on stderr.
//!
//! (1) A healthy repository beside bad ones. Two hookmirrors (release, `workers: 2`) follow the
//!     same origin (`git daemon`, 201 files, 300 commits of history; see run.sh): "alone" has only
//!     the healthy repository; "beside" has it and two more that keep failing all run long — one
//!     whose remote accepts the connection and never answers (hung: each attempt ends at its
//!     `stall_timeout: 2s`), one whose port refuses (dead) — both retrying every 1-2 s (`retry:
//!     {attempts: 100, initial_delay: 2s, max_delay: 2s}`). Per iteration (3 warm-up + 30, 100 ms
//!     apart): one new commit moves `main`, then on each hookmirror (alternating which goes
//!     first) a signed GitHub push webhook is sent and the status API polled every 1 ms until it
//!     shows the commit. Medians, p90, max; ratio beside/alone (target <= 1.5). Also how many
//!     iterations found a bad repository mid-attempt (holding one of the two workers), and how
//!     many attempts the bad ones failed meanwhile (from hookmirror's log).
//! (2) Many repositories at once. 50 bare repositories (41 files, 20 commits each) behind one
//!     `git daemon`; per `workers` value (1, 2, 4, 8) a fresh hookmirror follows all 50 (cloned
//!     at start-up). Per round (5): every repository's `main` moves to a new commit, then the 50
//!     signed webhooks go out back to back on one keep-alive connection; timed from the first
//!     webhook until `GET /api/repos` shows all 50 new commits. Median per `workers`, against
//!     `workers: 1` and against 50 times one repository's push -> synced latency measured alone.
//!
//! Driver options: --iterations N --warmup N --repos N --rounds N --workers 1,2,4,8

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{Conn, push_delivery, webhook_request};
use crate::origin::{GitDaemon, Origin};
use crate::procs::{Proc, free_port, git, git_with, mkdir};
use crate::{
    REPO, SECRET, TOKEN, log, median, ms, pct, send_hook, start_hookmirror, wait_commit, wait_idle,
};

struct Opts {
    hookmirror: PathBuf,
    fixture: PathBuf,
    work: PathBuf,
    iterations: usize,
    warmup: usize,
    repos: usize,
    rounds: usize,
    workers: Vec<usize>,
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts {
        hookmirror: PathBuf::new(),
        fixture: PathBuf::new(),
        work: PathBuf::new(),
        iterations: 30,
        warmup: 3,
        repos: 50,
        rounds: 5,
        workers: vec![1, 2, 4, 8],
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        let num = || {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("{k}: not a number"))
        };
        match k.as_str() {
            "--hookmirror" => o.hookmirror = v.into(),
            "--fixture" => o.fixture = v.into(),
            "--work" => o.work = v.into(),
            "--iterations" => o.iterations = num(),
            "--warmup" => o.warmup = num(),
            "--repos" => o.repos = num(),
            "--rounds" => o.rounds = num(),
            "--workers" => {
                o.workers = v
                    .split(',')
                    .map(|w| w.trim().parse().expect("--workers 1,2,4"))
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
    }
    assert!(o.hookmirror.is_file(), "--hookmirror must name the binary");
    assert!(o.fixture.is_file(), "--fixture must name a push payload");
    assert!(o.work.is_dir(), "--work must name an existing empty folder");
    o
}

/// `hookmirror-bench faults …`: both benchmarks, then the summary.
pub fn main(args: &[String]) {
    let o = parse(args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let work = o.work.canonicalize().expect("work dir");
        let template: Value =
            serde_json::from_slice(&std::fs::read(&o.fixture).expect("read fixture"))
                .expect("fixture JSON");
        let beside = beside_bad_remotes(&o, &work.join("beside"), &template).await;
        let many = many_at_once(&o, &work.join("many"), &template).await;
        report(&o, &beside, &many);
    });
}

/// A TCP server that accepts connections and never answers (a hung git server).
async fn hung_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

/// A config for hookmirror on `port` with `workers`, an API token and `repos` (YAML entries).
fn config(path: &Path, port: u16, workers: usize, logfile: &Path, repos: &[String]) {
    let text = format!(
        "listen: 127.0.0.1:{port}\nworkers: {workers}\ninitialise: true\n\
         log:\n  format: text\n  level: info\n  output: {}\n\
         api:\n  token: {TOKEN}\nrepos:\n{}",
        logfile.display(),
        repos.concat()
    );
    std::fs::write(path, text).expect("write config");
}

fn repo_entry(name: &str, url: &str, dir: &Path, extra: &str) -> String {
    format!(
        "  - name: {name}\n    url: {url}\n    directory: {}\n    branch: main\n    provider: github\n    secret: {SECRET}\n{extra}",
        dir.display()
    )
}

struct Beside {
    clean: Vec<f64>,
    faulty: Vec<f64>,
    /// Iterations of the faulty side during which a bad repository was mid-attempt.
    busy: usize,
    /// Failed attempts of the hung and the dead repository during the run (from the log).
    hung_attempts: usize,
    dead_attempts: usize,
}

/// Benchmark (1). Two hookmirrors with `workers: 2` follow one origin: "clean" has only the
/// healthy repository, "faulty" has it beside a hung and a dead remote that keep failing. Each
/// iteration makes one commit and times push → synced on both, alternating which goes first.
async fn beside_bad_remotes(o: &Opts, w: &Path, template: &Value) -> Beside {
    mkdir(w);
    log("(1) healthy repo beside a hung and a dead remote, workers: 2");
    let mut origin = Origin::new(w);
    let daemon = GitDaemon::start(&origin.base, &w.join("git-daemon.log"));
    let url = daemon.url("origin.git");
    let hung = format!("git://127.0.0.1:{}/hung.git", hung_server().await);
    let dead = format!("git://127.0.0.1:{}/dead.git", free_port());
    // The bad ones keep trying all run long: 2 s per hung attempt, 1-2 s between attempts.
    let bad =
        "    stall_timeout: 2s\n    retry: {attempts: 100, initial_delay: 2s, max_delay: 2s}\n";
    let mut procs: Vec<Proc> = Vec::new();
    let mut sides = Vec::new();
    for (name, with_bad) in [("clean", false), ("faulty", true)] {
        let port = free_port();
        let mut repos = vec![repo_entry(
            REPO,
            &url,
            &w.join(format!("{name}-checkout")),
            "",
        )];
        if with_bad {
            repos.push(repo_entry("hung", &hung, &w.join("hung"), bad));
            repos.push(repo_entry("dead", &dead, &w.join("dead"), bad));
        }
        let cfg = w.join(format!("{name}.yaml"));
        config(&cfg, port, 2, &w.join(format!("{name}.log")), &repos);
        procs.push(
            start_hookmirror(&o.hookmirror, &cfg, port, &w.join(format!("{name}.out"))).await,
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut api = Conn::connect(addr).await.expect("API");
        let hook = Conn::connect(addr).await.expect("hook");
        wait_commit(&mut api, &origin.main(), Duration::from_secs(60)).await;
        wait_idle(&mut api).await;
        sides.push((api, hook));
    }
    let mut r = Beside {
        clean: vec![],
        faulty: vec![],
        busy: 0,
        hung_attempts: 0,
        dead_attempts: 0,
    };
    let mut prev = origin.main();
    for i in 0..(o.warmup + o.iterations) {
        let c = tokio::task::block_in_place(|| {
            let c = origin.make_commit();
            origin.update_main(&c, &prev);
            c
        });
        let d = push_delivery(template, SECRET, "refs/heads/main", &prev, &c, &url);
        for step in 0..2 {
            let side = if (step == 0) == (i % 2 == 0) { 0 } else { 1 };
            let (api, hook) = &mut sides[side];
            let bad_busy = if side == 1 {
                let all = api.get_json("/api/repos", TOKEN).await.expect("repos");
                all["repos"]
                    .as_array()
                    .expect("repos")
                    .iter()
                    .any(|s| s["name"] != REPO && s["state"] == "syncing")
            } else {
                false
            };
            let t0 = Instant::now();
            send_hook(hook, &d).await;
            wait_commit(api, &c, Duration::from_secs(60)).await;
            let took = ms(t0.elapsed());
            wait_idle(api).await;
            if i >= o.warmup {
                if side == 0 {
                    r.clean.push(took);
                } else {
                    r.faulty.push(took);
                    r.busy += usize::from(bad_busy);
                }
            }
        }
        prev = c;
        // Spread the run over some seconds, so the bad repositories go through several attempts.
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(100)));
    }
    let all = sides[1]
        .0
        .get_json("/api/repos", TOKEN)
        .await
        .expect("repos");
    for s in all["repos"].as_array().expect("repos") {
        if s["name"] != REPO {
            let e = &s["retry"]["error"];
            log(format!(
                "  {}: state {}, last error {}: {}",
                s["name"], s["state"], e["kind"], e["message"]
            ));
        }
    }
    let text = std::fs::read_to_string(w.join("faulty.log")).unwrap_or_default();
    let failed = |name: &str| {
        text.lines()
            .filter(|l| l.contains("sync failed, retrying") && l.contains(&format!("repo={name} ")))
            .count()
    };
    r.hung_attempts = failed("hung");
    r.dead_attempts = failed("dead");
    drop(procs);
    r
}

struct Many {
    /// One repository pushed alone: push → synced, ms.
    single: Vec<f64>,
    /// Per `workers`: each round's time from the first webhook to the last repository synced.
    totals: Vec<(usize, Vec<f64>)>,
}

/// Makes `n` bare repositories `rNN.git` under `base`, each with a small tree and history.
fn many_repos(base: &Path, n: usize) -> Vec<String> {
    let mut stream = Vec::new();
    for c in 1..=20 {
        stream.extend_from_slice(
            format!(
                "commit refs/heads/main\ncommitter Bench <bench@hookmirror.invalid> {} +0000\ndata 9\ncommit {c:02}\n",
                1_700_000_000 + c * 60
            )
            .as_bytes(),
        );
        for f in 0..if c == 1 { 40 } else { 1 } {
            let body = format!("commit {c} file {f}: the quick brown fox\n").repeat(40);
            stream.extend_from_slice(
                format!(
                    "M 100644 inline src/f{:02}.txt\ndata {}\n{body}\n",
                    (f + c) % 40,
                    body.len()
                )
                .as_bytes(),
            );
        }
    }
    (0..n)
        .map(|i| {
            let name = format!("r{i:02}.git");
            git(base, &["init", "-q", "--bare", "-b", "main", &name]);
            git_with(
                &base.join(&name),
                &["fast-import", "--quiet"],
                &[],
                Some(&stream),
            );
            name
        })
        .collect()
}

/// A new commit on `main` of the bare repository `bare` (same tree), its ref moved; returns
/// (old, new).
fn advance(bare: &Path, msg: &str) -> (String, String) {
    let old = git(bare, &["rev-parse", "refs/heads/main"]);
    let tree = git(bare, &["rev-parse", &format!("{old}^{{tree}}")]);
    let new = git(bare, &["commit-tree", &tree, "-p", &old, "-m", msg]);
    git(bare, &["update-ref", "refs/heads/main", &new, &old]);
    (old, new)
}

/// Benchmark (2). One hookmirror per `workers` value follows `repos` repositories of one
/// `git daemon`; each round moves every repository's `main` and then sends the 50 webhooks back
/// to back; timed until the status API shows every new commit.
async fn many_at_once(o: &Opts, w: &Path, template: &Value) -> Many {
    mkdir(w);
    log(format!("(2) {} repositories pushed at once", o.repos));
    let base = mkdir(&w.join("srv"));
    let names = tokio::task::block_in_place(|| many_repos(&base, o.repos));
    let daemon = GitDaemon::start(&base, &w.join("git-daemon.log"));
    let mut r = Many {
        single: vec![],
        totals: vec![],
    };
    for &workers in &o.workers {
        let run = w.join(format!("workers-{workers}"));
        mkdir(&run);
        let repos: Vec<String> = names
            .iter()
            .map(|n| {
                let name = n.trim_end_matches(".git");
                repo_entry(name, &daemon.url(n), &run.join(name), "")
            })
            .collect();
        let port = free_port();
        let cfg = run.join("hookmirror.yaml");
        config(&cfg, port, workers, &run.join("hookmirror.log"), &repos);
        let _hm = start_hookmirror(&o.hookmirror, &cfg, port, &run.join("hookmirror.out")).await;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut api = Conn::connect(addr).await.expect("API");
        let mut hook = Conn::connect(addr).await.expect("hook");
        let all_at = |all: &Value, want: &[(String, String)]| {
            want.iter().all(|(name, c)| {
                all["repos"]
                    .as_array()
                    .expect("repos")
                    .iter()
                    .any(|s| s["name"] == name.as_str() && s["commit"] == c.as_str())
            })
        };
        let heads = |names: &[String]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| {
                    let name = n.trim_end_matches(".git").to_string();
                    (name, git(&base.join(n), &["rev-parse", "refs/heads/main"]))
                })
                .collect()
        };
        wait_all(&mut api, &heads(&names), &all_at).await;
        // One repository alone, for the floor (with the first `workers` value's instance).
        if r.single.is_empty() {
            let (n0, name0) = (&names[0], names[0].trim_end_matches(".git"));
            for i in 0..(o.warmup + o.iterations.min(10)) {
                let (old, new) =
                    tokio::task::block_in_place(|| advance(&base.join(n0), &format!("single {i}")));
                let url = daemon.url(n0);
                let d = push_delivery(template, SECRET, "refs/heads/main", &old, &new, &url);
                let t0 = Instant::now();
                let req = webhook_request(&hook.host(), &format!("/hooks/{name0}"), &d);
                hook.send(req).await.expect("webhook");
                wait_all(&mut api, &[(name0.to_string(), new)], &all_at).await;
                if i >= o.warmup {
                    r.single.push(ms(t0.elapsed()));
                }
            }
        }
        let mut totals = Vec::new();
        for round in 0..o.rounds {
            let moved: Vec<(String, String, String)> = tokio::task::block_in_place(|| {
                names
                    .iter()
                    .map(|n| {
                        let (old, new) = advance(&base.join(n), &format!("round {round}"));
                        (n.clone(), old, new)
                    })
                    .collect()
            });
            let deliveries: Vec<_> = moved
                .iter()
                .map(|(n, old, new)| {
                    let d = push_delivery(
                        template,
                        SECRET,
                        "refs/heads/main",
                        old,
                        new,
                        &daemon.url(n),
                    );
                    (format!("/hooks/{}", n.trim_end_matches(".git")), d)
                })
                .collect();
            let want: Vec<(String, String)> = moved
                .iter()
                .map(|(n, _, new)| (n.trim_end_matches(".git").to_string(), new.clone()))
                .collect();
            let t0 = Instant::now();
            for (path, d) in &deliveries {
                let (st, _) = hook
                    .send(webhook_request(&hook.host(), path, d))
                    .await
                    .expect("webhook");
                assert!(st.is_success(), "webhook answered {st}");
            }
            wait_all(&mut api, &want, &all_at).await;
            totals.push(ms(t0.elapsed()));
        }
        log(format!(
            "  workers {workers}: {} repos synced in {:.0} ms (median of {})",
            o.repos,
            median(&totals),
            totals.len()
        ));
        r.totals.push((workers, totals));
    }
    r
}

/// Polls `/api/repos` until every (name, commit) in `want` shows.
async fn wait_all(
    api: &mut Conn,
    want: &[(String, String)],
    done: &impl Fn(&Value, &[(String, String)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let all = api.get_json("/api/repos", TOKEN).await.expect("repos");
        if done(&all, want) {
            return;
        }
        assert!(Instant::now() < deadline, "not all synced: {all}");
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(2)));
    }
}

fn report(o: &Opts, b: &Beside, m: &Many) {
    let (c, f) = (median(&b.clean), median(&b.faulty));
    println!();
    println!(
        "## (1) push -> synced, healthy repo, workers: 2 (median of {} each)",
        o.iterations
    );
    println!();
    println!("| | median | p90 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("alone", &b.clean),
        ("beside a hung and a dead remote", &b.faulty),
    ] {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms |",
            median(v),
            pct(v, 90.0),
            pct(v, 100.0)
        );
    }
    println!();
    println!(
        "ratio beside/alone (median): **{:.2}** (target <= 1.5); a bad repo held a worker (mid-attempt) in {} of {} iterations; meanwhile the hung remote failed {} attempts (timeout) and the dead one {} (transient)",
        f / c,
        b.busy,
        b.faulty.len(),
        b.hung_attempts,
        b.dead_attempts
    );
    println!();
    let single = median(&m.single);
    println!(
        "## (2) {} repositories pushed at once (median of {} rounds)",
        o.repos, o.rounds
    );
    println!();
    println!(
        "one repository alone: push -> synced {single:.1} ms (median of {})",
        m.single.len()
    );
    println!();
    println!(
        "| workers | all synced | per repo | vs workers: 1 | vs {} x alone |",
        o.repos
    );
    println!("|---|---|---|---|---|");
    let base = m.totals.first().map(|(_, t)| median(t)).unwrap_or(f64::NAN);
    for (w, t) in &m.totals {
        let total = median(t);
        println!(
            "| {w} | {total:.0} ms | {:.1} ms | {:.2} | {:.2} |",
            total / o.repos as f64,
            total / base,
            total / (o.repos as f64 * single)
        );
    }
}
