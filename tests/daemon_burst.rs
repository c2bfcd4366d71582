//! A burst of pushes against the real `hookmirror serve`: the origin's branch moves 50 times in
//! quick succession (plumbing in the bare repo: the commits are made with `git commit-tree`
//! beforehand, each move is a `git update-ref`), each move followed at once by a signed GitHub
//! delivery naming the new `after`, without waiting for any sync. In each of 20 runs (one daemon,
//! one origin) the checkout must end at the last commit, and coalescing must hold: once the last
//! webhook is answered, at most the running sync and one more stand between it and the checkout
//! (a daemon that queued a sync per push would still have dozens to go), and far fewer fetches
//! than pushes happen. Sync times are read from the daemon's history, so a slow machine slows
//! both sides of the comparison alike.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::daemon::*;
use support::forge::*;
use support::git;

const RUNS: usize = 20;
const PUSHES: usize = 50;
/// Polling and answering the status API on a loaded machine, on top of two syncs.
const TAIL_SLACK_MS: u64 = 500;

#[test]
fn fifty_quick_pushes_end_at_the_last_commit_in_each_of_20_runs() {
    let secret = "burst-secret-6d2f0a";
    let m = Mirror::on(Remote::new())
        .keys(&format!(
            "    branch: main\n    provider: github\n    secret: {secret}\n"
        ))
        .daemon(Daemon::builder().top("log: {level: info, output: stdout}\n"))
        .start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let forms = remote.forms();
    let bare = remote.origin.bare.clone();
    let mut tip = remote.head();
    let mut fetches_per_run = Vec::new();
    let started = Instant::now();
    for run in 0..RUNS {
        // The run's commits, made beforehand (objects only; no ref moves yet).
        let tree = git(&bare, &["rev-parse", &format!("{tip}^{{tree}}")]);
        let mut parent = tip.clone();
        let commits: Vec<String> = (0..PUSHES)
            .map(|i| {
                let msg = format!("run {run} push {i}");
                parent = git(&bare, &["commit-tree", &tree, "-p", &parent, "-m", &msg]);
                parent.clone()
            })
            .collect();
        let s0 = server.wait_idle("site");
        let t = Instant::now();
        for (i, new) in commits.into_iter().enumerate() {
            // Move the branch, then tell the daemon at once, as a forge would.
            git(&bare, &["update-ref", "refs/heads/main", &new, &tip]);
            let (id, d) = github_main_push(secret, &forms, &tip, &new);
            let r = server.deliver("/hooks/site", &d);
            assert_eq!(r.status, 202, "run {run} push {i}: {}", r.text);
            assert_eq!(r.json(), json!({"queued": ["site"], "delivery": id}));
            tip = new;
        }
        let sent = t.elapsed();
        assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), tip);
        // Fails the test (with status and logs) if the checkout does not get there in time.
        let s1 = server.wait_head("site", dir, &tip);
        let settled = t.elapsed();
        // Nothing more is on its way: a later sync could only confirm the same commit.
        std::thread::sleep(Duration::from_millis(100));
        let s2 = server.wait_idle("site");
        assert_eq!(s2["commit"], tip.as_str(), "run {run}");
        assert_eq!(support::rev_parse(dir, "HEAD").unwrap(), tip, "run {run}");
        let delta = |key: &str| s2[key].as_u64().unwrap() - s0[key].as_u64().unwrap();
        let (fetches, syncs) = (delta("fetches"), delta("syncs"));
        assert_eq!(s1["failures"], 0, "run {run}: {s1:#}");
        eprintln!(
            "run {run:2}: {PUSHES} pushes sent in {sent:>9.1?}, checkout at the last commit after \
             {settled:>9.1?}: {fetches:2} fetches, {syncs:2} syncs"
        );
        assert!(fetches >= 1, "run {run}: the pushes were fetched");
        assert!(syncs >= fetches, "run {run}");
        let history = server.get("/api/repos/site/history").expect(200);
        let runs_syncs = history["syncs"].as_array().unwrap();
        let longest = runs_syncs[runs_syncs.len() - syncs as usize..]
            .iter()
            .map(|h| h["duration_ms"].as_u64().unwrap())
            .max()
            .unwrap();
        let tail = settled.saturating_sub(sent);
        let bound = Duration::from_millis(2 * longest + TAIL_SLACK_MS);
        assert!(
            tail <= bound,
            "run {run}: {tail:?} from the last webhook to the checkout, more than the running \
             sync and one more ({longest} ms each at most) allow: requests were not coalesced"
        );
        fetches_per_run.push(fetches);
    }
    let total: u64 = fetches_per_run.iter().sum();
    let mean = total as f64 / RUNS as f64;
    eprintln!(
        "burst: {RUNS} runs x {PUSHES} pushes in {:.1?}: {total} fetches in all, {mean:.1} per run \
         on average (min {}, max {})",
        started.elapsed(),
        fetches_per_run.iter().min().unwrap(),
        fetches_per_run.iter().max().unwrap()
    );
    assert!(
        mean <= PUSHES as f64 / 2.0,
        "coalescing: {mean:.1} fetches per {PUSHES} pushes on average"
    );
    let logs = server.logs();
    assert!(
        !logs.contains("fetched tip lacks the pushed commit"),
        "no push was ever missing from a fetched tip"
    );
    server.assert_clean_logs(&[secret]);
}
