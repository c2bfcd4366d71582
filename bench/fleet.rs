//! Push → synced on every node of a 3-node fleet, against push → synced on one node without a
//! fleet, in the same run.
//!
//!     cargo bench --bench fleet [-- ITERATIONS]      (default 20, after 3 warm-up rounds)
//!
//! Setup, all on 127.0.0.1: one origin served by `git daemon` over git://; one `nats-server
//! -js`; three `hookmirror serve` nodes in one fleet (`fleet.nats` that server, stream with one
//! replica), each with its own checkout of the origin's `main`; and four `hookmirror serve`
//! without a `fleet` block, with a checkout each. Per iteration, each case in turn (a
//! different one first each time):
//! - solo: a new commit on `main`, its signed GitHub push sent to the solo node, then its
//!   status polled until its `commit` is the new commit;
//! - fleet: a new commit, its push sent to node 1, then the three nodes' status polled in turn
//!   until all three show the new commit (node 1 answers the webhook once JetStream stored the
//!   request; every node syncs from its consumer);
//! - apart: three nodes without a fleet, today's setup (one webhook per server): the push sent
//!   to each of them, then polled until all three show it. The same git work as the fleet's.
//!
//! One status request every 2 ms in both cases (round robin over the nodes still waiting), so
//! the polling loads the machine alike. Prints medians, p90, min, the time until the first
//! fleet node synced (the fleet's own overhead) and the ratio fleet/solo of the medians
//! (target ≤ 1.5). The nodes share the machine's cores: three fetches at once, each with its
//! `git upload-pack` on the origin's side, cost more than one on two cores.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Remote, head_of, repo_yaml, scratch};
use support::forge::github_main_push;
use support::nats::Nats;

const SECRET: &str = "bench-fleet-secret";
const POLL: Duration = Duration::from_millis(2);
const LIMIT: Duration = Duration::from_secs(60);

fn keys() -> String {
    format!("    branch: main\n    provider: github\n    secret: {SECRET}\n")
}

fn node(remote: &Remote, dir: &Path, fleet: Option<(&str, &str)>) -> Daemon {
    let mut top = "log: {level: warn, output: stdout}\n".to_string();
    if let Some((urls, name)) = fleet {
        top.push_str(&format!("fleet:\n  nats: {urls}\n  node: {name}\n"));
    }
    Daemon::builder()
        .top(&top)
        .repo(repo_yaml("site", &remote.url(), dir, &keys()))
        .start()
}

fn commit_of(d: &Daemon) -> Option<String> {
    d.status("site")["commit"].as_str().map(str::to_string)
}

/// Sends the push of a new commit to `to`, then polls `watch` (one status request per
/// [`POLL`], whatever the number of nodes, so both cases load the machine alike) until all
/// show it; when the first and when the last did (ms).
fn round(remote: &Remote, to: &[&Daemon], watch: &[&Daemon]) -> (f64, f64) {
    let before = remote.head();
    let after = remote.advance("bench");
    let (_, d) = github_main_push(SECRET, &remote.forms(), &before, &after);
    let t = Instant::now();
    for node in to {
        let r = node.deliver("/hooks/site", &d);
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let mut pending: Vec<&Daemon> = watch.to_vec();
    let mut first = None;
    let mut i = 0;
    while !pending.is_empty() {
        assert!(t.elapsed() < LIMIT, "not synced within {LIMIT:?}");
        i %= pending.len();
        if commit_of(pending[i]).as_deref() == Some(after.as_str()) {
            first.get_or_insert(t.elapsed());
            pending.remove(i);
        } else {
            i += 1;
            std::thread::sleep(POLL);
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(first.unwrap_or_default()), ms(t.elapsed()))
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), v[0])
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let nats = Nats::single();
    let urls = nats.urls_yaml();
    let remote = Remote::new();
    let work = scratch("bench-fleet");
    let dir = |n: &str| work.path().join(n);
    let solo = node(&remote, &dir("solo"), None);
    let fleet: Vec<Daemon> = (1..=3)
        .map(|i| {
            node(
                &remote,
                &dir(&format!("n{i}")),
                Some((&urls, &format!("n{i}"))),
            )
        })
        .collect();
    let ok = support::wait_until(LIMIT, || {
        fleet.iter().all(|d| {
            d.get("/api/fleet").json()["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 3)
        }) && head_of(&dir("solo")).is_some()
    });
    assert!(ok, "the fleet did not come up");
    let watch: Vec<&Daemon> = fleet.iter().collect();
    let apart: Vec<Daemon> = (1..=3)
        .map(|i| node(&remote, &dir(&format!("apart{i}")), None))
        .collect();
    let apart: Vec<&Daemon> = apart.iter().collect();
    let cases: [(&str, Vec<&Daemon>, Vec<&Daemon>); 3] = [
        ("1 node, no fleet", vec![&solo], vec![&solo]),
        (
            "3-node fleet (push to node 1)",
            vec![&fleet[0]],
            watch.clone(),
        ),
        ("3 nodes apart (push to each)", apart.clone(), apart.clone()),
    ];
    let mut last: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut first: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for i in 0..iterations + 3 {
        // A different case goes first each time.
        for k in 0..cases.len() {
            let c = (i + k) % cases.len();
            let (f, l) = round(&remote, &cases[c].1, &cases[c].2);
            if i >= 3 {
                first[c].push(f);
                last[c].push(l);
            }
        }
    }
    println!("push -> synced on every node of the case, {iterations} iterations (ms)");
    println!(
        "{:<32} {:>8} {:>8} {:>8} {:>14}",
        "", "median", "p90", "min", "first node"
    );
    let mut medians = Vec::new();
    for (c, (name, _, _)) in cases.iter().enumerate() {
        let (m, p, min) = stats(last[c].clone());
        let (f, _, _) = stats(first[c].clone());
        println!("{name:<32} {m:>8.1} {p:>8.1} {min:>8.1} {f:>14.1}");
        medians.push(m);
    }
    println!(
        "ratio 3-node fleet / 1 node (medians): {:.2} (target <= 1.5)",
        medians[1] / medians[0]
    );
    println!(
        "ratio 3-node fleet / 3 nodes apart (medians): {:.2} (the fleet's own cost)",
        medians[1] / medians[2]
    );
}
