//! A fleet of nodes on NATS JetStream, against the real binary and real `nats-server -js`
//! processes on loopback: a push to one node reaches every node; a node that was down catches up
//! with one sync; a delivery sent to two nodes is synced once per node; a 3-server cluster loses
//! a server mid-burst; NATS dies and comes back while pushes continue (the outbox); `?wait=fleet`
//! and `GET /api/fleet`; `hookmirror check` and hot reload of the `fleet` block.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::daemon::*;
use support::forge::*;
use support::nats::Nats;
use support::wait_until;

const SECRET: &str = "fleet-secret-5be1c7";
const TOKEN: &str = "fleet-api-token-93ad0f21";

/// Longer than [`WAIT`]: a cluster that lost a server elects new leaders first.
const FLEET_WAIT: Duration = Duration::from_secs(90);

/// Three (or more) nodes following `site` (`main` of one remote), each with its own checkout.
struct Fleet {
    nats: Nats,
    remote: Remote,
    work: tempfile::TempDir,
    nodes: Vec<Option<Daemon>>,
}

/// The top-level keys of node `name` on `urls` (a YAML list) with `replicas`, plus `extra`.
fn top(urls: &str, name: &str, replicas: usize, extra: &str) -> String {
    format!(
        "log: {{level: info, output: stdout}}\napi:\n  token: {TOKEN}\nfleet:\n  nats: {urls}\n  node: {name}\n  replicas: {replicas}\n{extra}"
    )
}

fn repo_keys() -> String {
    format!("    branch: main\n    provider: github\n    secret: {SECRET}\n")
}

impl Fleet {
    fn start(nats: Nats, n: usize, replicas: usize) -> Fleet {
        Fleet::start_with(nats, n, replicas, |_, _| String::new())
    }

    /// [`Fleet::start`] with more keys for node `i` (`extra(i, work folder)`).
    fn start_with(
        nats: Nats,
        n: usize,
        replicas: usize,
        extra: impl Fn(usize, &Path) -> String,
    ) -> Fleet {
        let remote = Remote::new();
        let work = scratch("fleet");
        let mut f = Fleet {
            nats,
            remote,
            work,
            nodes: Vec::new(),
        };
        for i in 1..=n {
            let d = f.launch(i, replicas, &extra(i, f.work.path()));
            f.nodes.push(Some(d));
        }
        for i in 1..=n {
            f.node(i).wait_head("site", &f.dir(i), &f.remote.head());
        }
        f.wait_connected(n);
        f
    }

    /// Node `i`'s checkout.
    fn dir(&self, i: usize) -> PathBuf {
        self.work.path().join(format!("site-{i}"))
    }

    fn launch(&self, i: usize, replicas: usize, extra: &str) -> Daemon {
        Daemon::builder()
            .top(&top(
                &self.nats.urls_yaml(),
                &format!("n{i}"),
                replicas,
                extra,
            ))
            .token(TOKEN)
            .repo(repo_yaml(
                "site",
                &self.remote.url(),
                &self.dir(i),
                &repo_keys(),
            ))
            .start()
    }

    fn node(&self, i: usize) -> &Daemon {
        self.nodes[i - 1].as_ref().expect("node running")
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Daemon)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.as_ref().map(|d| (i + 1, d)))
    }

    /// Waits until every running node is connected and sees `live` live nodes.
    fn wait_connected(&self, live: usize) {
        for (i, d) in self.running() {
            let mut last = Value::Null;
            let ok = wait_until(FLEET_WAIT, || {
                last = fleet(d);
                last["state"] == "connected"
                    && last["nodes"]
                        .as_array()
                        .is_some_and(|n| n.iter().filter(|n| n["live"] == true).count() == live)
            });
            assert!(ok, "node {i}: {last:#}\n{}", d.logs());
        }
    }

    /// Moves `main` to a new commit and sends its push to node `i`; the new commit and the
    /// answer.
    fn push(&self, i: usize, msg: &str) -> (String, Resp) {
        let before = self.remote.head();
        let after = self.remote.advance(msg);
        let (_, d) = github_main_push(SECRET, &self.remote.forms(), &before, &after);
        (after, self.node(i).deliver("/hooks/site", &d))
    }

    /// Waits until every running node's checkout is at `commit`.
    fn wait_all_at(&self, commit: &str) {
        for (i, d) in self.running() {
            let ok = wait_until(FLEET_WAIT, || {
                head_of(&self.dir(i)).as_deref() == Some(commit)
            });
            assert!(
                ok,
                "node {i} never reached {commit} (at {:?})\nstatus: {:#}\nfleet: {:#}\nlogs:\n{}\nNATS:\n{}",
                head_of(&self.dir(i)),
                d.status("site"),
                fleet(d),
                d.logs(),
                self.nats.logs()
            );
        }
    }
}

fn fleet(d: &Daemon) -> Value {
    d.get_auth("/api/fleet", TOKEN).json()
}

fn syncs(d: &Daemon) -> u64 {
    d.wait_idle("site")["syncs"].as_u64().unwrap()
}

fn fetches(d: &Daemon) -> u64 {
    d.wait_idle("site")["fetches"].as_u64().unwrap()
}

#[test]
fn a_push_to_one_node_reaches_all_three_and_wait_fleet_answers_when_all_have_it() {
    let f = Fleet::start(Nats::single(), 3, 1);
    let (commit, r) = f.push(1, "one push");
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["queued"], serde_json::json!(["site"]));
    f.wait_all_at(&commit);

    // Every node's state is in the status bucket, shown by any node.
    let mut view = Value::Null;
    let all_at = wait_until(FLEET_WAIT, || {
        view = fleet(f.node(3));
        let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
        nodes.len() == 3
            && nodes
                .iter()
                .all(|n| n["repos"][0]["commit"] == commit.as_str())
    });
    assert!(all_at, "{view:#}");
    assert_eq!(view["node"], "n3");
    assert_eq!(view["outbox"], 0);
    let names: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"]);

    // An API sync with ?wait=fleet on node 2 answers once every node has the new commit.
    let newer = f.remote.advance("api sync");
    let r = f
        .node(2)
        .post_auth("/api/repos/site/sync?wait=fleet", Some(TOKEN));
    let v = r.expect(200);
    assert_eq!(v["commit"], newer.as_str(), "{v:#}");
    assert_eq!(v["nodes"], serde_json::json!(["n1", "n2", "n3"]), "{v:#}");
    assert_eq!(v["sync"]["commit"], newer.as_str());
    for i in 1..=3 {
        assert_eq!(
            head_of(&f.dir(i)).as_deref(),
            Some(newer.as_str()),
            "node {i}"
        );
    }
    // The status page has the fleet section: every node and its commit (once each node's
    // status entry, written as it syncs, has the newer one).
    let mut page = String::new();
    let shown = wait_until(FLEET_WAIT, || {
        page = f.node(1).get_auth("/", TOKEN).text;
        ["n1", "n2", "n3"].iter().all(|n| {
            page.contains(&format!(
                "<tr><td>{n}</td><td>site</td><td><span class=\"badge idle\">idle</span></td><td><code>{}</code>",
                &newer[..12]
            ))
        })
    });
    assert!(shown && page.contains("<table id=\"fleet\">"), "{page}");
    let ready = f.node(1).get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json()["fleet"], "connected");
    // Without a token, the fleet view is refused like every other read.
    assert_eq!(f.node(1).get("/api/fleet").status, 401);
    for (_, d) in f.running() {
        d.assert_clean_logs(&[SECRET, TOKEN]);
    }
}

#[test]
fn a_node_that_was_down_for_five_pushes_catches_up_with_one_sync() {
    let mut f = Fleet::start(Nats::single(), 3, 1);
    f.nodes[2].take().unwrap().stop();
    f.wait_connected(2);
    let mut last = String::new();
    for n in 0..5 {
        let (commit, r) = f.push(1 + n % 2, &format!("push {n} while node 3 is down"));
        assert_eq!(r.status, 202, "{}", r.text);
        last = commit;
    }
    f.wait_all_at(&last);
    // Node 3 comes back without a start-up sync: only the fleet can bring it up to date.
    f.nodes[2] = Some(f.launch(3, 1, "initialise: false\n"));
    f.wait_all_at(&last);
    let n3 = f.node(3);
    assert_eq!(syncs(n3), 1, "{:#}", n3.status("site"));
    assert_eq!(fetches(n3), 1);
    f.wait_connected(3);
    // No second sync trails behind: a later push is the next one it syncs.
    let (commit, _) = f.push(2, "after the catch-up");
    f.wait_all_at(&commit);
    assert_eq!(syncs(f.node(3)), 2, "{}", f.node(3).logs());
}

#[test]
fn the_same_delivery_sent_to_two_nodes_is_synced_once_by_each_node() {
    let f = Fleet::start(Nats::single(), 3, 1);
    let before: Vec<u64> = (1..=3).map(|i| syncs(f.node(i))).collect();
    let old = f.remote.head();
    let commit = f.remote.advance("delivered twice");
    let (id, d) = github_main_push(SECRET, &f.remote.forms(), &old, &commit);
    // A forge retrying behind a load balancer: node 1, then node 2, the same delivery.
    f.node(1)
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    f.node(2)
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    f.wait_all_at(&commit);
    // A later push is synced after anything the duplicate could have caused (messages come in
    // stream order): each node's count then shows exactly two syncs.
    let (next, r) = f.push(3, "the next push");
    assert_eq!(r.status, 202);
    f.wait_all_at(&next);
    for i in 1..=3 {
        let d = f.node(i);
        d.wait_for("site", "at the next push", |s| s["commit"] == next.as_str());
        assert_eq!(syncs(d) - before[i - 1], 2, "node {i}: {}", d.logs());
    }
    // And node 1 still knows the delivery: sent again, it is a duplicate there.
    let again = f.node(1).deliver("/hooks/site", &d).expect(200);
    assert_eq!(again["duplicate"], true);
}

#[test]
fn a_replicated_stream_survives_one_of_three_nats_servers_dying_mid_burst() {
    let mut f = Fleet::start(Nats::cluster(), 3, 3);
    let mut leader = None;
    assert!(
        wait_until(FLEET_WAIT, || {
            leader = f.nats.servers[0].stream_leader("HOOKMIRROR");
            leader.is_some()
        }),
        "no stream leader\n{}",
        f.nats.logs()
    );
    let leader = leader.unwrap();
    let victim = f
        .nats
        .servers
        .iter()
        .position(|s| s.name == leader)
        .unwrap();
    let mut last = String::new();
    for n in 0..12 {
        if n == 5 {
            // The stream's leader dies: stores fail until the other two elect a new one, and
            // the nodes connected to it (if any) move to another server.
            let clients = f.nats.servers[victim].connections();
            eprintln!("killing {leader}, the stream's leader, with {clients} client connection(s)");
            f.nats.servers[victim].kill();
        }
        let (commit, r) = f.push(1 + n % 3, &format!("burst {n}"));
        assert_eq!(r.status, 202, "push {n}: {}", r.text);
        last = commit;
    }
    f.wait_all_at(&last);
    // Two servers keep the fleet whole: every node is connected again.
    f.wait_connected(3);
    let (commit, r) = f.push(2, "after the failover");
    assert_eq!(r.status, 202);
    f.wait_all_at(&commit);
}

/// Kill-and-restart rounds of NATS in the outbox test: `HOOKMIRROR_FLEET_FAULT_ROUNDS` (CI
/// leaves it unset: 1 round; a soak sets e.g. 20).
fn fault_rounds() -> usize {
    std::env::var("HOOKMIRROR_FLEET_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[test]
fn nats_dying_and_coming_back_while_pushes_continue_loses_nothing_accepted() {
    let mut f = Fleet::start(Nats::single(), 3, 1);
    for n in 0..3 {
        let (commit, r) = f.push(1 + n % 3, &format!("before {n}"));
        assert_eq!(r.status, 202);
        f.wait_all_at(&commit);
    }
    for round in 0..fault_rounds() {
        f.nats.servers[0].kill();
        // Degraded: each node still takes pushes, syncs them itself and says so.
        for (i, d) in f.running() {
            let mut last = Value::Null;
            let ok = wait_until(FLEET_WAIT, || {
                last = fleet(d);
                last["state"] == "degraded"
            });
            assert!(ok, "round {round}, node {i}: {last:#}");
        }
        let mut accepted = Vec::new();
        for n in 0..3 {
            let (commit, r) = f.push(1 + n, &format!("round {round}: while NATS is down {n}"));
            assert_eq!(r.status, 202, "{}", r.text);
            // The node that took it has it at once, NATS or not.
            f.node(1 + n).wait_head("site", &f.dir(1 + n), &commit);
            accepted.push(commit);
        }
        let last = accepted.last().unwrap().clone();
        assert_eq!(
            fleet(f.node(3))["outbox"],
            1,
            "node 3 keeps its push for the fleet"
        );
        // NATS comes back (same store): the outboxes are sent, and without any further push
        // every node ends at the last accepted commit.
        f.nats.servers[0].start();
        f.nats.servers[0].wait_ready();
        f.wait_all_at(&last);
        f.wait_connected(3);
        for (i, d) in f.running() {
            let mut v = Value::Null;
            let sent = wait_until(FLEET_WAIT, || {
                v = fleet(d);
                v["outbox"] == 0
            });
            assert!(sent, "round {round}, node {i}: {v:#}");
        }
        let (commit, r) = f.push(2, &format!("round {round}: after NATS came back"));
        assert_eq!(r.status, 202);
        f.wait_all_at(&commit);
    }
}

#[test]
fn a_push_accepted_while_nats_is_down_survives_its_node_dying_in_the_outbox_folder() {
    let outbox = |w: &Path| w.join("outbox-1");
    let extra = move |i: usize, w: &Path| match i {
        1 => format!("  outbox: '{}'\n", outbox(w).display()),
        _ => String::new(),
    };
    let mut f = Fleet::start_with(Nats::single(), 3, 1, extra);
    let old = f.remote.head();
    f.nats.servers[0].kill();
    let v = fleet(f.node(1));
    let degraded = wait_until(FLEET_WAIT, || fleet(f.node(1))["state"] == "degraded");
    assert!(degraded, "{v:#}");
    let (commit, r) = f.push(1, "accepted by node 1 alone");
    assert_eq!(r.status, 202, "{}", r.text);
    f.node(1).wait_head("site", &f.dir(1), &commit);
    let files: Vec<_> = std::fs::read_dir(outbox(f.work.path())).unwrap().collect();
    assert_eq!(files.len(), 1, "one request waits on disk");
    // Node 1 dies (SIGKILL) before NATS is back; NATS comes back; nobody else has the push.
    drop(f.nodes[0].take());
    f.nats.servers[0].start();
    f.nats.servers[0].wait_ready();
    f.wait_connected(2);
    for i in 2..=3 {
        assert_eq!(
            head_of(&f.dir(i)).as_deref(),
            Some(old.as_str()),
            "node {i}"
        );
    }
    // Node 1 comes back: its outbox folder is read and sent; every node gets the push.
    f.nodes[0] = Some(f.launch(1, 1, &extra(1, f.work.path())));
    f.wait_all_at(&commit);
    let sent = wait_until(FLEET_WAIT, || {
        std::fs::read_dir(outbox(f.work.path())).unwrap().count() == 0
    });
    assert!(
        sent,
        "the outbox file is removed once stored\n{}",
        f.node(1).logs()
    );
}

#[test]
fn a_node_whose_nats_is_down_at_start_runs_on_its_own_and_joins_later() {
    let nats = Nats::single();
    let remote = Remote::new();
    let work = scratch("fleet");
    let dir = work.path().join("site");
    let port = support::free_port();
    let d = Daemon::builder()
        .top(&top(&format!("[nats://127.0.0.1:{port}]"), "lonely", 1, ""))
        .token(TOKEN)
        .repo(repo_yaml("site", &remote.url(), &dir, &repo_keys()))
        .start();
    d.wait_head("site", &dir, &remote.head());
    let v = fleet(&d);
    assert_eq!(v["state"], "degraded", "{v:#}");
    assert!(v["error"].as_str().is_some(), "{v:#}");
    // Degraded but serving: ready (it syncs on its own), and it says so; the page too.
    let ready = d.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json()["fleet"], "degraded", "{}", ready.text);
    let page = d.get_auth("/", TOKEN).text;
    assert!(
        page.contains("<span class=\"badge unready\">degraded</span>"),
        "{page}"
    );
    let before = remote.head();
    let after = remote.advance("pushed while alone");
    let (_, delivery) = github_main_push(SECRET, &remote.forms(), &before, &after);
    assert_eq!(d.deliver("/hooks/site", &delivery).status, 202);
    d.wait_head("site", &dir, &after);
    // A reload pointing it at a running server reconnects it; its outbox goes there.
    d.replace_config(&config_text(
        &top(&nats.urls_yaml(), "lonely", 1, ""),
        &[repo_yaml("site", &remote.url(), &dir, &repo_keys())],
    ));
    let mut last = Value::Null;
    let ok = wait_until(FLEET_WAIT, || {
        last = fleet(&d);
        last["state"] == "connected" && last["outbox"] == 0
    });
    assert!(ok, "{last:#}\n{}", d.logs());
    assert_eq!(last["nodes"][0]["node"], "lonely");
    assert_eq!(d.get("/readyz").json()["fleet"], "connected");
}

#[test]
fn a_token_protected_nats_is_reached_with_token_file_and_the_token_is_never_logged() {
    let token = "nats-token-7f3e91c2d4";
    let nats = Nats::single_with_token(token);
    let remote = Remote::new();
    let work = scratch("fleet");
    let dirs: Vec<PathBuf> = (1..=2)
        .map(|i| work.path().join(format!("site-{i}")))
        .collect();
    let nodes: Vec<Daemon> = (1..=2)
        .map(|i| {
            Daemon::builder()
                .file("nats.token", &format!("{token}\n"))
                .top(&top(
                    &nats.urls_yaml(),
                    &format!("n{i}"),
                    1,
                    "  token_file: nats.token\n",
                ))
                .token(TOKEN)
                .repo(repo_yaml("site", &remote.url(), &dirs[i - 1], &repo_keys()))
                .start()
        })
        .collect();
    for d in &nodes {
        let mut last = Value::Null;
        let ok = wait_until(FLEET_WAIT, || {
            last = fleet(d);
            last["state"] == "connected"
        });
        assert!(ok, "{last:#}\n{}", d.logs());
    }
    let before = remote.head();
    let after = remote.advance("through an authenticated NATS");
    let (_, delivery) = github_main_push(SECRET, &remote.forms(), &before, &after);
    assert_eq!(nodes[0].deliver("/hooks/site", &delivery).status, 202);
    for (d, dir) in nodes.iter().zip(&dirs) {
        d.wait_head("site", dir, &after);
        d.assert_clean_logs(&[token, SECRET, TOKEN]);
    }
    // A wrong token: the node runs on its own and says why; the file rotated to the right
    // token, the node reconnects by itself (the file is watched like the config).
    let dir3 = work.path().join("site-3");
    let wrong = Daemon::builder()
        .file("nats.token", "not-the-token\n")
        .top(&top(
            &nats.urls_yaml(),
            "n3",
            1,
            "  token_file: nats.token\n",
        ))
        .token(TOKEN)
        .repo(repo_yaml("site", &remote.url(), &dir3, &repo_keys()))
        .start();
    wrong.wait_head("site", &dir3, &after);
    assert_eq!(fleet(&wrong)["state"], "degraded");
    let refused = wait_until(FLEET_WAIT, || {
        wrong.logs().contains("authorization violation")
    });
    assert!(refused, "{}", wrong.logs());
    let tmp = wrong.conf().join("nats.token.new");
    std::fs::write(&tmp, format!("{token}\n")).unwrap();
    std::fs::rename(&tmp, wrong.conf().join("nats.token")).unwrap();
    let mut last = Value::Null;
    let ok = wait_until(FLEET_WAIT, || {
        last = fleet(&wrong);
        last["state"] == "connected"
    });
    assert!(ok, "{last:#}\n{}", wrong.logs());
    wrong.assert_clean_logs(&[token]);
}

#[test]
fn tls_urls_speak_tls_to_a_server_whose_ca_is_in_ssl_cert_file() {
    let (nats, ca) = Nats::single_with_tls();
    let url = format!("[tls://127.0.0.1:{}]", nats.servers[0].port);
    let remote = Remote::new();
    let work = scratch("fleet");
    let dirs: Vec<PathBuf> = (1..=2)
        .map(|i| work.path().join(format!("site-{i}")))
        .collect();
    let start = |i: usize, trust: bool| {
        let mut b = Daemon::builder()
            .top(&top(&url, &format!("n{i}"), 1, ""))
            .token(TOKEN)
            .repo(repo_yaml("site", &remote.url(), &dirs[i - 1], &repo_keys()));
        if trust {
            b = b.env("SSL_CERT_FILE", &ca.display().to_string());
        }
        b.start()
    };
    let (trusting, other) = (start(1, true), start(2, false));
    let mut last = Value::Null;
    let ok = wait_until(FLEET_WAIT, || {
        last = fleet(&trusting);
        last["state"] == "connected"
    });
    assert!(ok, "{last:#}\n{}", trusting.logs());
    let before = remote.head();
    let after = remote.advance("over TLS");
    let (_, delivery) = github_main_push(SECRET, &remote.forms(), &before, &after);
    assert_eq!(trusting.deliver("/hooks/site", &delivery).status, 202);
    trusting.wait_head("site", &dirs[0], &after);
    assert_eq!(
        fleet(&trusting)["outbox"],
        0,
        "stored in the fleet over TLS"
    );
    // A node that does not trust the CA never connects: it runs on its own, and says why.
    other.wait_head("site", &dirs[1], &before);
    assert_eq!(fleet(&other)["state"], "degraded");
    assert!(
        other.logs().contains("the connection to NATS fails"),
        "{}",
        other.logs()
    );
}

#[test]
fn check_names_each_fleet_problem_with_its_line() {
    let dir = scratch("fleet-check");
    let conf = dir.path().join("hookmirror.yaml");
    let text = format!(
        "fleet:\n  nats:\n    - nats://127.0.0.1:4222\n    - https://127.0.0.1:4222\n  credentials_file: missing.creds\nrepos:\n  - name: site\n    url: /srv/o.git\n    directory: {}\n    secret: s\n",
        dir.path().join("site").display()
    );
    std::fs::write(&conf, &text).unwrap();
    let (code, stdout) = check(dir.path(), &conf);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{}:4: `fleet.nats`: `https://127.0.0.1:4222` is not a nats:// or tls:// URL",
            conf.display()
        )),
        "{stdout}"
    );
    // The URL fixed, the missing credentials file is named.
    std::fs::write(&conf, text.replace("https://", "tls://")).unwrap();
    let (code, stdout) = check(dir.path(), &conf);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{}:5: `fleet.credentials_file`: cannot read",
            conf.display()
        )) && stdout.contains("missing.creds"),
        "{stdout}"
    );
    std::fs::write(dir.path().join("missing.creds"), "creds\n").unwrap();
    let (code, stdout) = check(dir.path(), &conf);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("fleet: node"), "{stdout}");
}

/// `hookmirror check`: its exit code, and stdout followed by stderr.
fn check(home: &Path, conf: &Path) -> (Option<i32>, String) {
    let out = hookmirror_command(home)
        .arg("check")
        .arg("--config")
        .arg(conf)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// A status entry dated an hour ahead (a node with a wrong clock, or an entry written by
/// anyone who may write to the bucket) names no live node: `?wait=fleet` answers once the live
/// nodes have the commit instead of waiting its 60 s for a node that is gone, and the fleet view
/// shows it as not live. Such an entry used to stay live until its date (up to the bucket's
/// 24 h).
#[test]
fn a_status_entry_dated_in_the_future_is_not_waited_for() {
    let f = Fleet::start(Nats::single(), 1, 1);
    let ahead = chrono::Utc::now() + chrono::Duration::hours(1);
    let ghost = serde_json::json!({
        "v": 1, "node": "ghost", "at": ahead, "stopped": false,
        "repos": [{"name": "site", "commit": null, "state": "idle", "last_success": null, "error": null}],
    });
    let url = f.nats.servers[0].url();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value("HOOKMIRROR_status").await.unwrap();
        kv.put("ghost", serde_json::to_vec(&ghost).unwrap().into())
            .await
            .unwrap();
    });
    let listed = |v: &Value| {
        v["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["node"] == "ghost").cloned())
    };
    let mut view = Value::Null;
    assert!(
        wait_until(FLEET_WAIT, || {
            view = fleet(f.node(1));
            listed(&view).is_some()
        }),
        "{view:#}"
    );

    let newer = f.remote.advance("while a ghost is listed");
    let t0 = std::time::Instant::now();
    let r = f
        .node(1)
        .post_auth("/api/repos/site/sync?wait=fleet", Some(TOKEN));
    let took = t0.elapsed();
    let v = r.expect(200);
    assert_eq!(v["commit"], newer.as_str(), "{v:#}");
    assert_eq!(v["nodes"], serde_json::json!(["n1"]), "{v:#}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(listed(&fleet(f.node(1))).unwrap()["live"], false);
}
