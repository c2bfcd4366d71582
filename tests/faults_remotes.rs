//! Fault suite, remotes: a refused, a hung (accepts, never answers) and a trickling (a byte every
//! few hundred ms) remote beside a healthy one, against the real `hookmirror serve` with
//! `workers: 1` and `workers: 2`. The healthy repo syncs promptly throughout; the bad ones report
//! `timeout` (saying which limit) or `transient`, and while they wait to retry they hold no
//! worker. Then the limits themselves in the engine: `sync_timeout` against a remote that is
//! fast enough never to stall but never finishes, and `stall_timeout` over libgit2's own HTTP
//! transport, whose pack download slows to a trickle halfway.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use hookmirror::sync::{ErrorKind, SyncOptions, sync_once};
use serde_json::Value;
use support::daemon::*;
use support::faults::{BadRemote, Behaviour, Throttle};
use support::forge::github_main_push;
use support::{GitHttp, Origin};

const SECRET: &str = "faults-remotes-secret";
/// The bad repos' `stall_timeout`: short, so the test is quick.
const STALL: Duration = Duration::from_secs(2);

/// Keys of the bad repos: short limits, and retries that go on all test long with waits (4-8 s)
/// long enough to see that the waiting repos hold no worker.
fn bad_keys() -> String {
    format!(
        "    provider: github\n    secret: {SECRET}\n    stall_timeout: 2s\n    sync_timeout: 5s\n    retry: {{attempts: 100, initial_delay: 8s, max_delay: 8s}}\n"
    )
}

fn state(server: &Daemon, name: &str) -> Value {
    server.status(name)
}

/// The error a bad repo shows: while it waits to retry, `retry.error`; after its last attempt,
/// `last_error`.
fn error_of(s: &Value) -> Option<(String, String)> {
    let e = if s["retry"].is_object() {
        &s["retry"]["error"]
    } else {
        &s["last_error"]
    };
    Some((e["kind"].as_str()?.into(), e["message"].as_str()?.into()))
}

fn bad_remotes_beside_a_healthy_one(workers: usize) {
    let hung = BadRemote::start(Behaviour::Hang);
    let trickle = BadRemote::start(Behaviour::Trickle(Duration::from_millis(300)));
    let refused = format!("git://127.0.0.1:{}/x.git", support::free_port());
    let work = scratch("work");
    let bad = [
        ("hung", hung.url()),
        ("trickle", trickle.url()),
        ("refused", refused),
    ];
    let m = Mirror::on(Remote::new())
        .keys(&format!(
            "    branch: main\n    provider: github\n    secret: {SECRET}\n"
        ))
        .daemon(
            Daemon::builder()
                .top(&format!(
                    "workers: {workers}\nlog: {{level: info, output: stdout}}\n"
                ))
                .repos(
                    &bad.iter()
                        .map(|(n, url)| repo_yaml(n, url, &work.path().join(n), &bad_keys()))
                        .collect::<Vec<_>>(),
                ),
        )
        .start();
    let (server, remote) = (&m.daemon, &m.remote);

    // Each bad repo has failed at least once, for the reason it should.
    for (name, want, words) in [
        ("hung", "timeout", "stall_timeout"),
        ("trickle", "timeout", "stall_timeout"),
        ("refused", "transient", "refused"),
    ] {
        let s = server.wait_for(name, "a failed attempt", |s| error_of(s).is_some());
        let (kind, message) = error_of(&s).unwrap();
        assert_eq!(kind, want, "{name}: {s:#}");
        assert!(message.contains(words), "{name}: {message}");
        assert!(
            !message.contains("temporarily unavailable"),
            "{name}: {message}"
        );
    }
    let hung_message = error_of(&state(server, "hung")).unwrap().1;
    assert!(
        hung_message.contains(&hung.url()),
        "names the remote: {hung_message}"
    );
    assert!(hung.connections() >= 1 && trickle.connections() >= 1);

    // Pushes to the healthy repo while the bad ones keep failing: each is on disk within the
    // time the bad attempts already running can take (each ends at `stall_timeout`), never
    // after a bad repo's retries.
    let bound = STALL * 3 + Duration::from_secs(4);
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let before = remote.head();
        let new = remote.advance(&format!("healthy {i}"));
        let (_, d) = github_main_push(SECRET, &remote.forms(), &before, &new);
        let t = Instant::now();
        assert_eq!(server.deliver("/hooks/site", &d).status, 202);
        let ok = support::wait_until(bound, || state(server, "site")["commit"] == new.as_str());
        let took = t.elapsed();
        assert!(
            ok,
            "push {i} not synced within {bound:?} (workers {workers}); repos: {:#}\nlogs:\n{}",
            server.repos(),
            server.logs()
        );
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(700));
    }
    eprintln!("workers {workers}: slowest healthy push {slowest:?} (bound {bound:?})");

    // While every bad repo waits for its retry, no worker is held: a push syncs before any of
    // them tries again.
    let all_waiting = |r: &Value| {
        r["repos"].as_array().unwrap().iter().all(|s| {
            s["name"] == "site"
                || (s["state"] == "backoff"
                    && s["retry"]["next_attempt"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| {
                            t.signed_duration_since(chrono::Utc::now())
                                > chrono::Duration::seconds(2)
                        }))
        })
    };
    let waiting = server.wait_repos("every bad repo in backoff", all_waiting);
    let attempts = |r: &Value, name: &str| -> Value {
        r["repos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["retry"]["attempt"]
            .clone()
    };
    let before = remote.head();
    let new = remote.advance("while the others wait");
    let (_, d) = github_main_push(SECRET, &remote.forms(), &before, &new);
    assert_eq!(server.deliver("/hooks/site", &d).status, 202);
    server.wait_for("site", "the push", |s| s["commit"] == new.as_str());
    let after = server.repos();
    for (name, _) in &bad {
        assert_eq!(
            attempts(&after, name),
            attempts(&waiting, name),
            "{name} tried again before the healthy push was synced: {after:#}"
        );
    }
    let s = server.status("site");
    assert_eq!(s["failures"], 0, "{s:#}");
    assert_eq!(head_of(&m.dir).as_deref(), Some(new.as_str()));
    server.assert_clean_logs(&[SECRET]);
}

#[test]
fn bad_remotes_hold_no_worker_with_one_worker() {
    bad_remotes_beside_a_healthy_one(1);
}

#[test]
fn bad_remotes_hold_no_worker_with_two_workers() {
    bad_remotes_beside_a_healthy_one(2);
}

#[test]
fn a_remote_too_slow_to_finish_runs_into_sync_timeout() {
    hookmirror::sync::init_libgit2();
    // 600 bytes every 250 ms never stalls (2,400 bytes a second), and never ends.
    let crawl = BadRemote::start(Behaviour::Crawl {
        n: 600,
        every: Duration::from_millis(250),
    });
    let tmp = tempfile::tempdir().unwrap();
    let r = support::plain_repo_config(
        &crawl.url(),
        &tmp.path().join("d"),
        "    stall_timeout: 1s\n    sync_timeout: 3s\n",
    );
    let t = Instant::now();
    let e = sync_once(&r, &SyncOptions::default()).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert!(e.message.contains("sync_timeout"), "{e:?}");
    assert!(e.message.contains(&crawl.url()), "{e:?}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[test]
fn a_slow_pack_download_over_http_runs_into_sync_timeout() {
    slow_pack_download("");
}

#[test]
fn a_slow_pack_download_over_libgit2s_http_runs_into_sync_timeout() {
    slow_pack_download("    transport: libgit2\n");
}

/// Both HTTP transports (hookmirror's own and libgit2's) end a crawling pack at `sync_timeout`.
fn slow_pack_download(transport: &str) {
    hookmirror::sync::init_libgit2();
    let origin = Origin::new();
    // 3 MB of random hex: a pack of about 1.5 MB.
    let mut bytes = vec![0u8; 3 * 1024 * 1024 / 2];
    fastrand::fill(&mut bytes);
    origin.commit("big.txt", &hex::encode(bytes));
    let http = GitHttp::start(origin.root.path(), "u", "t0ken");
    // The ref advertisement and the start of the pack pass; then 150 KB a second: the pack
    // would take ~10 s, and libgit2 reports progress every 100 KiB.
    let throttle = Throttle::start(http.port, 256 * 1024, 15 * 1024);
    let url = format!("http://u:t0ken@127.0.0.1:{}/origin.git", throttle.port);
    let tmp = tempfile::tempdir().unwrap();
    let r = support::plain_repo_config(
        &url,
        &tmp.path().join("d"),
        &format!("    stall_timeout: 2s\n    sync_timeout: 3s\n{transport}"),
    );
    let t = Instant::now();
    let e = sync_once(&r, &SyncOptions::default()).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert!(e.message.contains("sync_timeout"), "{e:?}");
    assert!(!e.message.contains("t0ken"), "{e:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    // The checkout shows nothing half-fetched: no commit, no files.
    assert!(support::rev_parse(&tmp.path().join("d"), "HEAD").is_none());
    // And without the throttle the same fetch works.
    let direct = support::plain_repo_config(
        &http.url_with_credentials("origin.git", "u", "t0ken"),
        &tmp.path().join("e"),
        &format!("    stall_timeout: 2s\n{transport}"),
    );
    sync_once(&direct, &SyncOptions::default()).unwrap();
}

#[test]
fn a_reloaded_stall_timeout_applies_from_the_next_attempt() {
    let hung = BadRemote::start(Behaviour::Hang);
    let work = scratch("reload");
    let body = |stall: &str| {
        let keys = format!(
            "    secret: {SECRET}\n    stall_timeout: {stall}\n    retry: {{attempts: 1}}\n"
        );
        config_text(
            "api: {token: tok}\n",
            &[repo_yaml(
                "hung",
                &hung.url(),
                &work.path().join("hung"),
                &keys,
            )],
        )
    };
    let server = Daemon::builder().config(&body("3s")).token("tok").start();
    let s = server.wait_for("hung", "a failed sync", |s| s["failures"] == 1 && idle(s));
    let message = s["last_error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("bytes in 3s (stall_timeout)"), "{message}");
    server.replace_config(&body("1s"));
    server.wait_reloads(1);
    let r = server.api_sync("hung");
    assert_eq!(r.status, 502, "{}", r.text);
    let s = server.status("hung");
    assert_eq!(s["last_error"]["kind"], "timeout", "{s:#}");
    let message = s["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("bytes in 1s (stall_timeout)"), "{message}");
}

#[test]
fn a_reload_can_raise_workers_past_the_pool_the_daemon_started_with() {
    // Twelve repos whose remote never answers: each attempt holds a worker for 10 s.
    let hung = BadRemote::start(Behaviour::Hang);
    let work = scratch("pool");
    let repos: Vec<String> = (0..12)
        .map(|i| {
            let url = format!("git://127.0.0.1:{}/h{i}.git", hung.port);
            let keys = format!(
                "    secret: {SECRET}\n    stall_timeout: 10s\n    retry: {{attempts: 1}}\n"
            );
            repo_yaml(
                &format!("h{i}"),
                &url,
                &work.path().join(format!("h{i}")),
                &keys,
            )
        })
        .collect();
    let body = |workers: usize| config_text(&format!("workers: {workers}\n"), &repos);
    let server = Daemon::builder().config(&body(1)).start();
    assert!(support::wait_until(WAIT, || hung.connections() >= 1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hung.connections(), 1, "workers: 1 runs one sync at a time");
    // Raised by a reload far past what the runtime's blocking pool was sized for at start
    // (workers + 8): all twelve run at once, long before the first attempt ends.
    server.replace_config(&body(12));
    server.wait_reloads(1);
    let all = support::wait_until(Duration::from_secs(8), || hung.connections() >= 12);
    assert!(
        all,
        "{} of 12 syncs started; repos: {:#}",
        hung.connections(),
        server.repos()
    );
}
