//! (e) idle memory: hookmirror with `repos` repositories (all following the origin over git://,
//! each in its own checkout) started with none cloned, then restarted with all cloned; after each
//! start the syncs finish, the daemon idles [`SETTLE`], and its RSS is read from /proc.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Conn;
use crate::procs::{Proc, free_port};
use crate::{SECRET, TOKEN, log, start_hookmirror};

/// Idle time before RSS is read: tokio's idle blocking threads exit after 10 s, and freed memory
/// is returned after the allocator's 10 s decay. Then RSS is read every [`SAMPLE`] until it
/// stopped falling for [`STABLE`] samples (at most [`SETTLE_MAX`]).
const SETTLE: Duration = Duration::from_secs(25);
const SAMPLE: Duration = Duration::from_secs(2);
const STABLE: usize = 4;
const SETTLE_MAX: Duration = Duration::from_secs(90);

pub struct Rss {
    /// (kB RSS, kB anonymous, kB peak) after the first start (cloning) and after the restart.
    pub first: (u64, u64, u64),
    pub restart: (u64, u64, u64),
    pub first_secs: f64,
    pub restart_secs: f64,
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn write_config(path: &Path, port: u16, url: &str, dir: &Path, repos: usize, workers: usize) {
    let mut text = format!(
        "listen: 127.0.0.1:{port}\nworkers: {workers}\ninitialise: true\n\
         log: {{format: text, level: info, output: {}}}\napi: {{token: {TOKEN}}}\nrepos:\n",
        dir.join("hookmirror.log").display()
    );
    for i in 0..repos {
        text.push_str(&format!(
            "  - {{name: r{i}, url: '{url}', directory: '{}', branch: main, secret: {SECRET}}}\n",
            dir.join(format!("r{i}")).display()
        ));
    }
    std::fs::write(path, text).expect("write config");
}

/// Waits until every repository synced at least once since the start and none is busy.
async fn wait_synced(api: &mut Conn, repos: usize) {
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let v: Value = api.get_json("/api/repos", TOKEN).await.expect("status");
        let list = v["repos"].as_array().cloned().unwrap_or_default();
        let done = list
            .iter()
            .filter(|r| {
                r["syncs"].as_u64().unwrap_or(0) >= 1
                    && r["state"] == "idle"
                    && r["last_error"].is_null()
            })
            .count();
        if done == repos {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of {repos} synced");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn one_start(
    bin: &Path,
    config: &Path,
    port: u16,
    dir: &Path,
    repos: usize,
) -> ((u64, u64, u64), f64) {
    let t0 = Instant::now();
    let mut p: Proc = start_hookmirror(bin, config, port, &dir.join("hookmirror.out")).await;
    let mut api = Conn::connect(([127, 0, 0, 1], port).into())
        .await
        .expect("API");
    wait_synced(&mut api, repos).await;
    let took = t0.elapsed().as_secs_f64();
    drop(api);
    tokio::time::sleep(SETTLE).await;
    let pid = p.pid();
    let settled = Instant::now();
    let mut samples = vec![status_kb(pid, "VmRSS:")];
    while settled.elapsed() < SETTLE_MAX - SETTLE
        && (samples.len() <= STABLE
            || samples[samples.len() - 1 - STABLE..]
                .windows(2)
                .any(|w| w[1] < w[0]))
    {
        tokio::time::sleep(SAMPLE).await;
        samples.push(status_kb(pid, "VmRSS:"));
    }
    let rss = (
        status_kb(pid, "VmRSS:"),
        status_kb(pid, "RssAnon:"),
        status_kb(pid, "VmHWM:"),
    );
    p.stop();
    (rss, took)
}

pub async fn run(bin: &Path, url: &str, work: &Path, repos: usize, workers: usize) -> Rss {
    let dir = work.join("rss");
    std::fs::create_dir_all(&dir).expect("rss dir");
    let config = dir.join("hookmirror.yaml");
    let port = free_port();
    write_config(&config, port, url, &dir, repos, workers);
    log(format!(
        "(e) idle memory: {repos} repositories, workers {workers}: first start (cloning)"
    ));
    let (first, first_secs) = one_start(bin, &config, port, &dir, repos).await;
    log("(e) restart with every repository cloned");
    let (restart, restart_secs) = one_start(bin, &config, port, &dir, repos).await;
    Rss {
        first,
        restart,
        first_secs,
        restart_secs,
    }
}
