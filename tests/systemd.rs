//! `hookmirror serve` under a pretend systemd: the sd_notify protocol over `NOTIFY_SOCKET`
//! (READY=1 with STATUS= once the port answers, WATCHDOG=1 at half of `WATCHDOG_USEC`,
//! RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 and exit 0 on SIGTERM), socket
//! activation through `systemd-socket-activate` (`LISTEN_FDS`), and the shipped unit files
//! through `systemd/verify`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use support::daemon::*;
use support::{Origin, free_port, wait_until};

/// A config (without `listen`) with one local repo, checked out in `work/site`.
fn config(origin: &Origin, work: &Path) -> String {
    format!(
        "workers: 2\nlog: {{level: debug}}\nrepos:\n  - name: site\n    url: '{}'\n    directory: '{}'\n    secret: systemd-test-secret\n",
        origin.url(),
        work.join("site").display()
    )
}

// ---------------------------------------------------------------------------------------------
// sd_notify
// ---------------------------------------------------------------------------------------------

#[test]
fn notifies_ready_after_binding_then_watchdog_reload_and_stopping() {
    let origin = Origin::new();
    let work = scratch("work");
    let mut notify = Notify::new();
    let port = free_port();
    // Not waiting for /healthz: READY=1 must come once the port answers, by itself.
    let daemon = Daemon::builder()
        .config(&config(&origin, work.path()))
        .port(port)
        .notify_socket(&notify)
        // 400 ms: WATCHDOG=1 every 200 ms. No WATCHDOG_PID: the daemon's pid is not known
        // before it is spawned, and a missing WATCHDOG_PID means "you".
        .env("WATCHDOG_USEC", "400000")
        .spawn();

    // READY=1, and when it arrives the port already answers.
    let ready = notify.until(WAIT, |m| m.has("READY=1"));
    let Some(ready) = ready else {
        panic!(
            "no READY=1; got:\n{}\nlogs:\n{}",
            notify.transcript(),
            daemon.logs()
        );
    };
    let health = daemon.try_get("/healthz");
    assert_eq!(
        health.as_ref().map(|h| h.status),
        Some(200),
        "READY=1 came before the port answered"
    );
    let status = notify.seen[ready].status().unwrap_or_default().to_string();
    assert!(
        status.contains(&format!("127.0.0.1:{port}")) && status.contains("1 repos"),
        "READY=1 carries a STATUS= line naming the address and the repos: {status:?}"
    );
    assert!(
        notify.seen[..ready]
            .iter()
            .all(|m| !m.has("WATCHDOG=1") && !m.has("STOPPING=1")),
        "nothing but READY first:\n{}",
        notify.transcript()
    );
    let ready_at = notify.seen[ready].at;

    // WATCHDOG=1 every ~200 ms: at least two within 1.5 s.
    let start = notify.seen.len();
    notify.until(Duration::from_millis(1500), |_| false);
    let pings: Vec<Instant> = notify.seen[start..]
        .iter()
        .filter(|m| m.has("WATCHDOG=1"))
        .map(|m| m.at)
        .collect();
    assert!(
        pings.len() >= 2,
        "{} WATCHDOG=1 in 1.5 s after READY:\n{}",
        pings.len(),
        notify.transcript()
    );
    assert!(pings[0].duration_since(ready_at) < Duration::from_millis(400));
    assert!(
        notify.seen[start..]
            .iter()
            .any(|m| m.status().is_some_and(|s| s.contains("1 repos"))),
        "STATUS= is refreshed with the watchdog:\n{}",
        notify.transcript()
    );

    // SIGHUP (its handler is installed before READY=1): RELOADING=1, then READY=1 again.
    let before = notify.seen.len();
    daemon.signal(Signal::SIGHUP);
    let reloading = notify.until(WAIT, |m| m.has("RELOADING=1"));
    assert!(
        reloading.is_some(),
        "no RELOADING=1 after SIGHUP:\n{}\n{}",
        notify.transcript(),
        daemon.logs()
    );
    let ready_again = notify.until(WAIT, |m| m.has("READY=1"));
    assert!(
        ready_again.is_some(),
        "no READY=1 after the reload:\n{}",
        notify.transcript()
    );
    assert!(notify.seen[before..].iter().all(|m| !m.has("STOPPING=1")));
    let v = daemon.try_get("/api/repos").unwrap().expect(200);
    assert_eq!(v["reload"]["reloads"], 1, "{v:#}");

    // SIGTERM: STOPPING=1 and a clean exit.
    daemon.sigterm();
    let stopping = notify.until(WAIT, |m| m.has("STOPPING=1"));
    assert!(
        stopping.is_some(),
        "no STOPPING=1 after SIGTERM:\n{}\n{}",
        notify.transcript(),
        daemon.logs()
    );
    let status = daemon.wait_exit(WAIT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}\n{}",
        daemon.logs()
    );
    assert!(refused(port));
}

// ---------------------------------------------------------------------------------------------
// Socket activation
// ---------------------------------------------------------------------------------------------

/// `hookmirror serve` under `systemd-socket-activate` (see
/// [`DaemonBuilder::socket_activation`]), with one repo on `origin`; nothing connected yet.
fn socket_activated(origin: &Origin, work: &Path) -> Daemon {
    Daemon::builder()
        .config(&config(origin, work))
        .socket_activation()
        .start()
}

#[test]
fn socket_activation_serves_on_the_passed_socket_and_ignores_listen() {
    let origin = Origin::new();
    let work = scratch("work");
    let p = socket_activated(&origin, work.path());
    let (activated, configured) = (p.port, p.listen_port);
    assert_ne!(activated, configured);

    // The first connection starts hookmirror, which answers it on the passed socket.
    let mut health = None;
    assert!(
        wait_until(WAIT, || {
            health = p.try_get("/healthz");
            health.is_some()
        }),
        "nothing answered on the activated port\n{}",
        p.logs()
    );
    let health = health.unwrap();
    assert_eq!((health.status, health.text.as_str()), (200, "ok\n"));
    p.try_get("/api/repos/site").unwrap().expect(200);
    assert!(
        p.logs()
            .contains(&format!("hookmirror listening addr=127.0.0.1:{activated}")),
        "{}",
        p.logs()
    );
    assert!(
        refused(configured),
        "the config's own listen port {configured} is bound too"
    );
    // It syncs as usual.
    let site = work.path().join("site");
    assert!(wait_until(WAIT, || head_of(&site) == Some(origin.head("main"))));

    p.sigterm();
    assert_eq!(
        p.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        p.logs()
    );
}

/// Regression (src/daemon.rs, a reload that changes `listen`): under socket activation
/// hookmirror ignores `listen` (systemd/hookmirror.socket, src/commands.rs `serve`), but a
/// reload that changed `listen` used to bind the configured address and drop the socket systemd
/// passed. Under real systemd, the socket unit keeps its copy of that socket, so connections to
/// the advertised address were queued and never answered; here (systemd-socket-activate exec'd
/// into hookmirror) the port closed. Now the activated socket stays and the change of `listen`
/// is only logged.
#[test]
fn socket_activation_survives_a_reload_that_changes_listen() {
    let origin = Origin::new();
    let work = scratch("work");
    let p = socket_activated(&origin, work.path());
    let (activated, configured) = (p.port, p.listen_port);
    assert!(
        wait_until(WAIT, || p.try_get("/healthz").is_some()),
        "{}",
        p.logs()
    );
    let site = work.path().join("site");
    assert!(wait_until(WAIT, || site.join(".git").exists()));

    // Another `listen` in the config (as a reload would read after an edit).
    let other = other_port(&[activated, configured]);
    p.replace_config_text(&with_listen(other, &config(&origin, work.path())));
    assert!(
        wait_until(WAIT, || {
            p.try_get("/api/repos")
                .and_then(|r| serde_json::from_str::<Value>(&r.text).ok())
                .is_some_and(|v| v["reload"]["reloads"] == 1)
                || p.logs().contains("config reloaded")
        }),
        "the reload did not happen\n{}",
        p.logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        p.try_get("/healthz").is_some_and(|r| r.status == 200),
        "after a reload that changed `listen`, the socket systemd passed no longer answers\n{}",
        p.logs()
    );
    assert!(refused(other), "`listen` was not ignored");
}

// ---------------------------------------------------------------------------------------------
// Unit files
// ---------------------------------------------------------------------------------------------

#[test]
fn the_unit_files_pass_systemd_verify() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/verify");
    let out = Command::new("bash")
        .arg(&script)
        .arg(BIN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd/verify failed:\n{text}");
    assert!(text.contains("all good"), "{text}");
}
