//! Hot reload of `hookmirror serve`, through the real binary against real git remotes: the file
//! watcher (a file renamed over the config as editors do, and a plain in-place rewrite), SIGHUP,
//! refused invalid configs (the old config keeps serving), a changed `listen`, a rotated
//! `secret_file`, a changed branch, a changed `workers`, and schedules (`interval`, cron with a
//! time zone) running in the daemon with `next_run` in the API.
//!
//! The tests under "Found while testing reload" guard against defects found that way and fixed
//! since; each doc comment says what used to go wrong.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::daemon::*;
use support::forge::*;
use support::{Origin, read_file_lossy, rev_parse, wait_until};

const API_TOKEN: &str = "reload-test-api-token";

// ---------------------------------------------------------------------------------------------
// Config text and deliveries
// ---------------------------------------------------------------------------------------------

/// Top-level keys every test uses, `workers` as given.
fn top(workers: usize) -> String {
    format!("workers: {workers}\nlog: {{level: debug}}\napi: {{token: {API_TOKEN}}}\n")
}

/// One entry of `repos:` with the secret `secret-NAME`; `extra` lines are indented 4.
fn repo(name: &str, url: &str, dir: &Path, extra: &str) -> String {
    repo_yaml(
        name,
        url,
        dir,
        &format!("    secret: secret-{name}\n{extra}"),
    )
}

/// The config (without `listen`) with two workers and `repos`.
fn config(repos: &[String]) -> String {
    config_text(&top(2), repos)
}

/// A daemon with `body` as its config, calling the API with the token.
fn daemon(body: &str) -> DaemonBuilder {
    Daemon::builder().config(body).token(API_TOKEN)
}

/// A daemon with [`top`]`(2)` and the repos given to it, calling the API with the token.
fn daemon_with(repos: &[String]) -> DaemonBuilder {
    Daemon::builder().top(&top(2)).repos(repos).token(API_TOKEN)
}

/// `remote` and a daemon with repo `name` on it ([`repo`] with `extra`, first in the config;
/// `daemon` may add other repos, files, a symlink) that has synced once.
fn mirror_on(remote: Remote, name: &str, extra: &str, daemon: DaemonBuilder) -> Mirror {
    Mirror::on(remote)
        .name(name)
        .keys(&format!("    secret: secret-{name}\n{extra}"))
        .daemon(daemon)
        .start()
}

/// An origin reached by its path, and a daemon with repo `a` on it ([`repo`] with `extra`) that
/// has synced once.
fn mirror(extra: &str) -> Mirror {
    mirror_on(Remote::local(), "a", extra, daemon_with(&[]))
}

/// A GitHub push of `refs/heads/BRANCH` to `after`, naming the repository `url`, signed with
/// `secret`, with a fresh delivery id.
fn github_push_to(secret: &str, url: &str, branch: &str, after: &str) -> Delivery {
    github_push_naming(
        secret,
        &new_id(),
        url,
        &format!("refs/heads/{branch}"),
        after,
    )
}

// ---------------------------------------------------------------------------------------------
// Adding and removing repositories
// ---------------------------------------------------------------------------------------------

#[test]
fn added_repos_are_cloned_and_removed_repos_stop_receiving_webhooks() {
    let m = mirror("");
    let (d, a, da) = (&m.daemon, &m.remote.origin, &m.dir);
    let (b, c) = (Origin::new(), Origin::new());
    let (db, dc) = (m.work.path().join("b"), m.work.path().join("c"));
    let ra = repo("a", &a.url(), da, "");
    let rb = repo("b", &b.url(), &db, "");
    let rc = repo("c", &c.url(), &dc, "");
    assert_eq!(d.names(), ["a"]);

    // An editor's save: a new file renamed over the config.
    d.replace_config(&config(&[ra.clone(), rb.clone()]));
    d.wait_head("b", &db, &b.head("main"));
    assert_eq!(d.names(), ["a", "b"]);
    assert_eq!(d.status("b")["last_trigger"], "reload", "{}", d.logs());

    // A plain in-place rewrite of the same file.
    d.rewrite_config(&config(&[ra.clone(), rb.clone(), rc.clone()]));
    d.wait_head("c", &dc, &c.head("main"));
    assert_eq!(d.names(), ["a", "b", "c"]);

    // Remove b.
    let b_head = b.head("main");
    d.replace_config(&config(&[ra.clone(), rc.clone()]));
    d.wait_repos("b to leave the API", |v| {
        v["repos"].as_array().unwrap().len() == 2
    });
    assert_eq!(d.names(), ["a", "c"]);
    let status = d.api_get("/api/repos/b").status;
    assert_eq!(status, 404, "a removed repo has no status");
    let newer = b.commit("after-removal.txt", "x\n");
    assert_eq!(
        d.deliver(
            "/hooks/b",
            &github_push_to("secret-b", &b.url(), "main", &newer)
        )
        .status,
        404,
        "a removed repo's webhook path is gone"
    );
    assert_eq!(
        rev_parse(&db, "HEAD").as_deref(),
        Some(b_head.as_str()),
        "a removed repo's checkout stays on disk, untouched"
    );
    assert!(db.join("README").is_file());

    // The repos that stayed still take webhooks.
    let c_new = c.commit("more.txt", "more\n");
    assert_eq!(
        d.deliver(
            "/hooks/c",
            &github_push_to("secret-c", &c.url(), "main", &c_new)
        )
        .status,
        202
    );
    d.wait_head("c", &dc, &c_new);

    let reload = d.reload_status();
    assert_eq!(reload["reloads"], 3, "{reload:#}\n{}", d.logs());
    assert_eq!(reload["failures"], 0, "{reload:#}");
    assert!(reload["last_reload"].is_string(), "{reload:#}");
    assert!(reload["last_error"].is_null(), "{reload:#}");
}

// ---------------------------------------------------------------------------------------------
// Invalid configs
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_configs_are_refused_and_the_running_config_keeps_serving() {
    let m = mirror("");
    let (d, a, da) = (&m.daemon, &m.remote.origin, &m.dir);
    let b = Origin::new();
    let db = m.work.path().join("b");
    let ra = repo("a", &a.url(), da, "");
    let good = config(std::slice::from_ref(&ra));
    let path = d.config.display().to_string();

    // 1. A YAML syntax error ("mapping values are not allowed"), saved in place.
    let broken = format!("{good}  - name: b\n    url: x: y\n");
    let line = with_listen(d.port, &broken).lines().count(); // the last line
    d.rewrite_config(&broken);
    let reload = d.wait_repos("the broken config to be refused", |v| {
        v["reload"]["failures"] == 1
    })["reload"]
        .clone();
    let error = reload["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("{path}:{line}:")),
        "last_error names the file and line {line}: {reload:#}"
    );
    assert_eq!(reload["reloads"], 0, "{reload:#}");
    assert_eq!(d.names(), ["a"]);

    // Webhooks keep working with the old config.
    let next = a.commit("one.txt", "1\n");
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push_to("secret-a", &a.url(), "main", &next)
        )
        .status,
        202,
        "{}",
        d.logs()
    );
    d.wait_head("a", da, &next);

    // 2. An unknown key (a typo), saved by rename.
    let typo = config(&[repo("a", &a.url(), da, "    brnach: dev\n")]);
    let line = with_listen(d.port, &typo)
        .lines()
        .position(|l| l.contains("brnach"))
        .unwrap()
        + 1;
    d.replace_config(&typo);
    let reload =
        d.wait_repos("the typo to be refused", |v| v["reload"]["failures"] == 2)["reload"].clone();
    let error = reload["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("{path}:{line}:")) && error.contains("brnach"),
        "last_error names the file, line {line} and the key: {reload:#}"
    );
    assert_eq!(reload["reloads"], 0, "{reload:#}");
    let next = a.commit("two.txt", "2\n");
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push_to("secret-a", &a.url(), "main", &next)
        )
        .status,
        202
    );
    d.wait_head("a", da, &next);
    assert!(
        d.logs().contains("config reload refused"),
        "the refusal is logged:\n{}",
        d.logs()
    );

    // 3. The fix is applied (and adds a repo, to show it took effect).
    d.replace_config(&config(&[ra, repo("b", &b.url(), &db, "")]));
    let reload = d.wait_reloads(1);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    assert_eq!(reload["failures"], 2, "{reload:#}");
    d.wait_head("b", &db, &b.head("main"));
    assert_eq!(d.names(), ["a", "b"]);
}

// ---------------------------------------------------------------------------------------------
// listen
// ---------------------------------------------------------------------------------------------

#[test]
fn a_changed_listen_moves_the_daemon_to_the_new_port() {
    let mut m = mirror("");
    let a = &m.remote.origin;
    let body = config(&[repo("a", &a.url(), &m.dir, "")]);
    let old = m.daemon.port;
    let new = other_port(&[old]);
    m.daemon.replace_config_text(&with_listen(new, &body));

    // `/api/repos` on `port`, when it answers 200 with JSON.
    let answers = |d: &Daemon, port: u16| {
        d.try_get_on(port, "/api/repos")
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_str::<Value>(&r.text).ok())
    };
    let mut on_new = None;
    assert!(
        wait_until(WAIT, || {
            on_new = answers(&m.daemon, new);
            on_new.is_some()
        }),
        "the daemon never answered on the new port {new}\n{}",
        m.daemon.logs()
    );
    let on_new = on_new.unwrap();
    assert_eq!(on_new["reload"]["reloads"], 1, "{on_new:#}");
    assert_eq!(on_new["repos"][0]["name"], "a");
    // The old port is released once the switch is done.
    assert!(
        wait_until(Duration::from_secs(10), || refused(old)),
        "the old port {old} still accepts connections\n{}",
        m.daemon.logs()
    );
    assert!(answers(&m.daemon, old).is_none());
    // Webhooks arrive on the new port.
    m.daemon.port = new;
    let next = a.commit("moved.txt", "x\n");
    let delivery = github_push_to("secret-a", &a.url(), "main", &next);
    assert_eq!(m.daemon.deliver("/hooks/a", &delivery).status, 202);
    assert!(
        wait_until(WAIT, || rev_parse(&m.dir, "HEAD").as_deref()
            == Some(next.as_str())),
        "{}",
        m.daemon.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// Secret files
// ---------------------------------------------------------------------------------------------

#[test]
fn a_rotated_secret_file_takes_effect_without_touching_the_config() {
    // No `secret`: the repo's secret is in a file beside the config.
    let m = Mirror::on(Remote::local())
        .name("a")
        .keys("    branch: main\n    secret_file: hook.secret\n")
        .daemon(daemon_with(&[]).file("hook.secret", "old-secret\n"))
        .start();
    let (d, a, da) = (&m.daemon, &m.remote.origin, &m.dir);
    let push = |secret: &str| {
        let head = a.head("main");
        d.deliver("/hooks/a", &github_push_to(secret, &a.url(), "main", &head))
            .status
    };
    assert_eq!(push("old-secret"), 202, "{}", d.logs());
    assert_eq!(push("new-secret"), 401);
    let config_before = std::fs::read(&d.config).unwrap();
    let mtime_before = std::fs::metadata(&d.config).unwrap().modified().unwrap();

    // Rotate: only the secret file changes.
    std::fs::write(d.conf().join("hook.secret"), "new-secret\n").unwrap();
    let rotated = Instant::now();
    assert!(
        wait_until(WAIT, || push("new-secret") == 202),
        "the new secret was never accepted\n{}",
        d.logs()
    );
    assert!(
        rotated.elapsed() >= Duration::from_millis(250),
        "applied before the debounce ended ({:?})",
        rotated.elapsed()
    );
    assert_eq!(push("old-secret"), 401, "the old secret is refused");
    let reload = d.reload_status();
    assert_eq!(reload["reloads"], 1, "{reload:#}");
    assert_eq!(std::fs::read(&d.config).unwrap(), config_before);
    assert_eq!(
        std::fs::metadata(&d.config).unwrap().modified().unwrap(),
        mtime_before,
        "the config file itself was not touched"
    );
    // And the new secret syncs.
    let next = a.commit("rotated.txt", "x\n");
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push_to("new-secret", &a.url(), "main", &next)
        )
        .status,
        202
    );
    d.wait_head("a", da, &next);
}

// ---------------------------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------------------------

#[test]
fn sighup_reloads_without_the_watcher() {
    // The config is a symlink to a file in a folder nobody watches, so only SIGHUP can tell the
    // daemon that the file changed.
    let m = mirror_on(Remote::local(), "a", "", daemon_with(&[]).symlink(true));
    let (d, a, da) = (&m.daemon, &m.remote.origin, &m.dir);
    let b = Origin::new();
    let db = m.work.path().join("b");
    let ra = repo("a", &a.url(), da, "");
    assert_eq!(d.reload_status()["reloads"], 0);

    // An unchanged file: SIGHUP alone reloads.
    d.sighup();
    let reload = d.wait_reloads(1);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        d.reload_status()["reloads"],
        1,
        "one SIGHUP, one reload\n{}",
        d.logs()
    );
    assert!(
        d.logs().contains("cause=\"SIGHUP\"") || d.logs().contains("cause=SIGHUP"),
        "the log names the cause:\n{}",
        d.logs()
    );

    // Change the file, then SIGHUP: the change is applied.
    std::fs::write(
        &d.target,
        with_listen(d.port, &config(&[ra, repo("b", &b.url(), &db, "")])),
    )
    .unwrap();
    d.sighup();
    d.wait_reloads(2);
    d.wait_head("b", &db, &b.head("main"));
    assert_eq!(d.names(), ["a", "b"]);
}

// ---------------------------------------------------------------------------------------------
// Branch and workers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_changed_branch_resyncs_to_the_new_branch_head() {
    let remote = Remote::new();
    let origin = &remote.origin;
    let main = origin.head("main");
    let dev = origin.commit_on("dev", "dev.txt", "on dev\n");
    origin.checkout("main");
    let url = remote.url();
    let m = mirror_on(remote, "site", "    branch: main\n", daemon_with(&[]));
    let (d, origin, dir) = (&m.daemon, &m.remote.origin, &m.dir);
    assert_eq!(m.first["commit"], main.as_str());
    assert_eq!(d.status("site")["ref"], "branch main");

    d.replace_config(&config(&[repo("site", &url, dir, "    branch: dev\n")]));
    d.wait_head("site", dir, &dev);
    let s = d.status("site");
    assert_eq!(s["ref"], "branch dev", "{s:#}");
    assert_eq!(s["remote_ref"], "refs/heads/dev", "{s:#}");
    assert_eq!(s["last_trigger"], "reload", "{s:#}");
    assert!(dir.join("dev.txt").is_file());

    // Webhooks now follow dev, not main.
    let dev2 = origin.commit_on("dev", "dev2.txt", "2\n");
    assert_eq!(
        d.deliver(
            "/hooks/site",
            &github_push_to("secret-site", &url, "dev", &dev2)
        )
        .status,
        202
    );
    d.wait_head("site", dir, &dev2);
}

/// The `[start, end]` times (ms since the epoch) the on_success command of each run wrote.
fn intervals(path: &Path) -> Vec<(u128, u128)> {
    read_file_lossy(path)
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_changed_workers_count_is_applied() {
    // Two repos whose on_success command takes 700 ms and records when it ran (the command runs
    // inside the sync, holding a worker). With one worker the two runs cannot overlap; with two
    // they do.
    let (a, b) = (Origin::new(), Origin::new());
    let work = scratch("work");
    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let log = work.path().join("runs.log");
    let hook = format!(
        "    on_success:\n      command: ['sh', '-c', 's=$(date +%s%3N); sleep 0.7; echo \"$s $(date +%s%3N)\" >> {}']\n",
        log.display()
    );
    let body = |workers: usize| {
        config_text(
            &top(workers),
            &[
                repo("a", &a.url(), &da, &hook),
                repo("b", &b.url(), &db, &hook),
            ],
        )
    };
    let d = daemon(&body(1)).start();
    d.wait_head("a", &da, &a.head("main"));
    d.wait_head("b", &db, &b.head("main"));

    // Both repos change; ask for both syncs at once; returns the two runs' intervals.
    let round = |n: usize| -> Vec<(u128, u128)> {
        std::fs::remove_file(&log).ok();
        a.commit(&format!("a{n}.txt"), "x\n");
        b.commit(&format!("b{n}.txt"), "x\n");
        std::thread::scope(|s| {
            let ja = s.spawn(|| d.api_sync("a").expect(200));
            let jb = s.spawn(|| d.api_sync("b").expect(200));
            for report in [ja.join().unwrap(), jb.join().unwrap()] {
                assert_eq!(report["ok"], true, "{report:#}");
                assert_eq!(report["changed"], true, "{report:#}");
            }
        });
        let runs = intervals(&log);
        assert_eq!(runs.len(), 2, "two on_success runs: {runs:?}\n{}", d.logs());
        runs
    };
    let overlap = |r: &[(u128, u128)]| r[0].0 < r[1].1 && r[1].0 < r[0].1;

    let runs = round(1);
    assert!(
        !overlap(&runs),
        "workers: 1 ran two syncs at once: {runs:?}"
    );

    d.replace_config(&body(2));
    let reload = d.wait_reloads(1);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    let runs = round(2);
    assert!(
        overlap(&runs),
        "workers: 2 did not run both at once: {runs:?}"
    );

    d.replace_config(&body(1));
    let reload = d.wait_reloads(2);
    assert!(reload["last_error"].is_null(), "{reload:#}");
    let runs = round(3);
    assert!(
        !overlap(&runs),
        "back to workers: 1, two syncs still ran at once: {runs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[test]
fn an_interval_schedule_syncs_without_webhooks() {
    let m = mirror("    interval: 1s\n    jitter: 0s\n");
    let (d, a, da) = (&m.daemon, &m.remote.origin, &m.dir);
    let start = d.status("a")["syncs"].as_u64().unwrap();
    let t0 = Instant::now();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = d.status("a");
            last["syncs"].as_u64().unwrap() >= start + 2
        }),
        "fewer than 2 scheduled syncs in {:?}: {last:#}",
        t0.elapsed()
    );
    assert_eq!(last["last_trigger"], "schedule", "{last:#}");

    // A new commit arrives without a webhook.
    let next = a.commit("scheduled.txt", "x\n");
    d.wait_head("a", da, &next);
    assert_eq!(d.status("a")["last_trigger"], "schedule");

    // next_run: within the coming interval.
    let now = chrono::Utc::now();
    let next_run = parse_time(&d.status("a")["next_run"]);
    assert!(
        next_run > now - chrono::Duration::milliseconds(200)
            && next_run <= now + chrono::Duration::milliseconds(1200),
        "next_run {next_run} is not within a second of {now}"
    );
}

#[test]
fn a_cron_schedule_shows_its_next_run() {
    use chrono::{Datelike, TimeZone, Timelike};
    let remote = Remote::local();
    let url = remote.url();
    let mirror = Mirror::on(remote)
        .name("every")
        .keys("    secret: secret-every\n    schedule: '* * * * *'\n");
    let daily = repo(
        "daily",
        &url,
        &mirror.work().join("daily"),
        "    schedule: '30 9 * * *'\n    timezone: America/New_York\n",
    );
    let m = mirror.daemon(daemon_with(&[daily])).start();
    let d = &m.daemon;

    // Every minute: the next whole minute (UTC and local agree on whole minutes).
    let minute = |t: chrono::DateTime<chrono::Utc>| {
        t.with_second(0).unwrap().with_nanosecond(0).unwrap() + chrono::Duration::minutes(1)
    };
    let before = chrono::Utc::now();
    let every = parse_time(&d.status("every")["next_run"]);
    let after = chrono::Utc::now();
    assert!(
        every == minute(before) || every == minute(after),
        "next_run {every}, want {}",
        minute(before)
    );

    // 09:30 in New York, as UTC.
    let ny = chrono_tz::America::New_York;
    let now = chrono::Utc::now().with_timezone(&ny);
    let mut want = ny
        .with_ymd_and_hms(now.year(), now.month(), now.day(), 9, 30, 0)
        .single()
        .unwrap();
    if want <= now {
        let tomorrow = now.date_naive() + chrono::Duration::days(1);
        want = ny
            .from_local_datetime(&tomorrow.and_hms_opt(9, 30, 0).unwrap())
            .single()
            .unwrap();
    }
    let daily = parse_time(&d.status("daily")["next_run"]);
    assert_eq!(daily, want.with_timezone(&chrono::Utc));
    assert!(daily > chrono::Utc::now());
}

// ---------------------------------------------------------------------------------------------
// Found while testing reload
// ---------------------------------------------------------------------------------------------

/// Regression (src/sync/git.rs, the "hints already contained" shortcut, and src/daemon.rs): for
/// a repo that tracks the remote's default branch (no `branch` or `tag`), a webhook whose
/// `after` the checkout already had was answered without a fetch and reported
/// `remote_ref: "HEAD"`; that was stored as the repo's remote ref, and from then on every push's
/// ref was compared with "HEAD" (src/server/webhook.rs), so every later push to the default
/// branch was ignored (200 "refs/heads/main is not the tracked default branch") until a schedule
/// or API sync happened to fetch again.
#[test]
fn a_default_branch_repo_keeps_taking_webhooks_after_a_push_it_already_had() {
    let m = mirror("");
    let (d, a, da) = (&m.daemon, &m.remote.origin, &m.dir);
    let head = a.head("main");
    assert_eq!(d.status("a")["remote_ref"], "refs/heads/main");

    // A push the checkout already has (a redelivery under a new id, or a commit a scheduled
    // fetch brought in before its webhook arrived).
    assert_eq!(
        d.deliver(
            "/hooks/a",
            &github_push_to("secret-a", &a.url(), "main", &head)
        )
        .status,
        202
    );
    let mut s = Value::Null;
    wait_until(WAIT, || {
        s = d.status("a");
        s["syncs"] == 2 && s["state"] == "idle"
    });

    // The next real push must sync.
    let next = a.commit("next.txt", "x\n");
    let r = d.deliver(
        "/hooks/a",
        &github_push_to("secret-a", &a.url(), "main", &next),
    );
    assert_eq!(
        r.status,
        202,
        "a push to the default branch was not queued; status after the first push: {s:#}\n{}",
        d.logs()
    );
    d.wait_head("a", da, &next);
}

/// Regression (src/daemon.rs, a reload that changes `listen`): when the new `listen` could not be
/// bound, the error was only logged. The reload still counted as a success (`reload.reloads` + 1,
/// `last_error` null) and the config in force named the unbound address, so a later reload
/// (SIGHUP, once the port was free) saw no `listen` change and never bound it: the daemon stayed
/// on the old port for good while the API said all was well. Now it is a failed reload, and a
/// later one binds the address.
#[test]
fn a_listen_that_cannot_be_bound_is_reported_and_retried() {
    let m = mirror("");
    let (d, a) = (&m.daemon, &m.remote.origin);
    let body = config(&[repo("a", &a.url(), &m.dir, "")]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wanted = busy.local_addr().unwrap().port();
    d.replace_config_text(&with_listen(wanted, &body));
    // The new address is bound before the config is put in force, so the reload is counted
    // once, as the failure it is (it once showed `reloads: 1` first, then turned into one).
    let mut reload = Value::Null;
    wait_until(WAIT, || {
        reload = d.reload_status();
        reload["failures"] == 1
    });
    // The old port keeps serving.
    assert!(!refused(d.port));
    assert_eq!(
        reload["failures"],
        1,
        "a listen address that cannot be bound is not reported as a failed reload: {reload:#}\n{}",
        d.logs()
    );
    assert!(
        reload["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&wanted.to_string())),
        "{reload:#}"
    );
    // Once the port is free, a reload binds it.
    drop(busy);
    d.sighup();
    assert!(
        wait_until(WAIT, || !refused(wanted)),
        "the daemon never moved to {wanted}\n{}",
        d.logs()
    );
}

/// Regression (src/schedule.rs and src/daemon.rs): when a reload removed a repo's schedule, its
/// loop stopped but `next_run` kept the last planned time, so the API announced a sync that
/// would never happen.
#[test]
fn schedules_follow_reloads_and_next_run_goes_when_the_schedule_does() {
    let m = mirror("");
    let (d, a, da) = (&m.daemon, &m.remote.origin, &m.dir);
    assert!(d.status("a")["next_run"].is_null());

    // A schedule added by a reload starts running.
    d.replace_config(&config(&[repo(
        "a",
        &a.url(),
        da,
        "    interval: 1s\n    jitter: 0s\n",
    )]));
    d.wait_reloads(1);
    let syncs = d.status("a")["syncs"].as_u64().unwrap();
    let mut s = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            s = d.status("a");
            s["syncs"].as_u64().unwrap() >= syncs + 2 && s["next_run"].is_string()
        }),
        "the added schedule does not run: {s:#}"
    );

    // Removed: no more scheduled syncs, and no next run announced.
    d.replace_config(&config(&[repo("a", &a.url(), da, "")]));
    d.wait_reloads(2);
    std::thread::sleep(Duration::from_millis(300));
    let syncs = d.status("a")["syncs"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let s = d.status("a");
    assert_eq!(
        s["syncs"].as_u64().unwrap(),
        syncs,
        "scheduled syncs went on after the schedule was removed: {s:#}"
    );
    assert!(
        s["next_run"].is_null(),
        "next_run still announced after the schedule was removed: {s:#}"
    );
}

/// Regression (src/reload.rs, the config watcher): a config reached through a symlink that is
/// swapped atomically — how Kubernetes ConfigMap and Secret volumes update (`config.yaml ->
/// ..data/config.yaml`, then `..data` is replaced by a rename) and how many deploy tools switch
/// releases — was never reloaded: the events name `..data`, which was not in the watched set.
#[test]
fn a_config_behind_a_swapped_symlink_is_reloaded() {
    let m = mirror("");
    let (d, a) = (&m.daemon, &m.remote.origin);
    let b = Origin::new();
    let db = m.work.path().join("b");
    let ra = repo("a", &a.url(), &m.dir, "");
    let folder = &d.conf();
    // Turn the config into the ConfigMap layout (this rename is seen: it names the config).
    let v1 = folder.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::copy(&d.config, v1.join("hookmirror.yaml")).unwrap();
    std::os::unix::fs::symlink("..v1", folder.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/hookmirror.yaml", folder.join("link.tmp")).unwrap();
    std::fs::rename(folder.join("link.tmp"), &d.config).unwrap();
    d.wait_reloads(1);

    // The update: a new folder, and `..data` swapped to it by rename.
    let v2 = folder.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("hookmirror.yaml"),
        with_listen(d.port, &config(&[ra, repo("b", &b.url(), &db, "")])),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v2", folder.join("..data_tmp")).unwrap();
    std::fs::rename(folder.join("..data_tmp"), folder.join("..data")).unwrap();
    let mut names = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            names = d.names();
            names.len() == 2
        }),
        "the swapped config was never reloaded (repos {names:?})\n{}",
        d.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// API token files
// ---------------------------------------------------------------------------------------------

/// A deleted `token_file` revokes its token at once (fail closed), and the rest of the reload
/// applies: the token gets 401, a token added in the same edit works, the reload counts as a
/// success, the status API and `check` say which token is disabled and why. A token file other
/// users can read is a `check` warning. It used to refuse the whole reload ("cannot read …"):
/// the old config, and with it the deleted token, stayed in force.
#[test]
fn a_deleted_token_file_disables_its_token_and_the_rest_of_the_reload_applies() {
    const OPS: &str = "hm-ops-from-file-5d1e";
    const CI: &str = "hm-ci-added-later-77aa";
    let api = |extra: &str| {
        format!(
            "workers: 2\nlog: {{level: info}}\napi:\n  tokens:\n\
             \x20   - {{name: ops, token_file: ops.token, scopes: [sync]}}\n\
             \x20   - {{name: keeper, token: {API_TOKEN}, scopes: [admin]}}\n{extra}"
        )
    };
    let m = mirror_on(
        Remote::local(),
        "a",
        "",
        Daemon::builder()
            .top(&api(""))
            .token(API_TOKEN)
            .file("ops.token", &format!("{OPS}\n")),
    );
    let d = &m.daemon;
    let token_file = d.conf().join("ops.token");
    let check = || {
        let out = hookmirror_command(d.conf().as_path())
            .args(["check", "--config", d.config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shown = check();
    assert!(
        shown.contains("warning:")
            && shown.contains("can be read or written by other users (mode 0644)"),
        "{shown}"
    );
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!check().contains("other users"), "{}", check());
    assert_eq!(d.post_auth("/api/repos/a/sync", Some(OPS)).status, 202);

    // One edit: the token file goes, another token comes.
    std::fs::remove_file(&token_file).unwrap();
    let body = config_text(
        &api(&format!(
            "    - {{name: ci, token: {CI}, scopes: [sync]}}\n"
        )),
        &[repo("a", &m.remote.url(), &m.dir, "")],
    );
    d.replace_config(&body);
    assert!(
        wait_until(WAIT, || d.post_auth("/api/repos/a/sync", Some(CI)).status
            == 202),
        "the token added with the deletion never worked:\n{}",
        d.logs()
    );
    assert_eq!(d.post_auth("/api/repos/a/sync", Some(OPS)).status, 401);
    let v = d.api_get("/api/repos").json();
    assert_eq!(v["reload"]["failures"], 0, "{v:#}");
    let disabled = v["tokens_disabled"].as_array().unwrap();
    assert_eq!(disabled.len(), 1, "{v:#}");
    assert_eq!(disabled[0]["name"], "ops");
    let reason = disabled[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot read") && reason.contains("ops.token"),
        "{reason}"
    );
    let logs = d.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("token `ops` is disabled")),
        "{logs}"
    );
    let shown = check();
    assert!(
        shown.contains("token `ops` is disabled") && shown.contains("DISABLED"),
        "{shown}"
    );
    d.assert_clean_logs(&[OPS, CI, API_TOKEN]);
}
