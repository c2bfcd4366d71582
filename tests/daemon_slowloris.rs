//! Slow and abusive clients against the real `hookmirror serve`: a 1,500-connection slowloris
//! (request heads sent a byte a second from 30 loopback addresses, 127.0.0.2 …, each connection
//! reopened a second after the daemon drops it) must not delay a forge's webhook from 127.0.0.1,
//! and one address cannot hold more than `limits.max_connections_per_ip` connections.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::daemon::*;
use support::forge::*;
use support::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sockets this test opens (attackers) plus what the daemon, a child, inherits: the default soft
/// limit of 1024 descriptors is too few, so it is raised to the hard limit.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// What the attackers saw.
#[derive(Default)]
struct Attack {
    stop: AtomicBool,
    /// Connections open now (connected, not yet dropped by the daemon).
    open: AtomicUsize,
    /// Connections the daemon closed.
    dropped: AtomicUsize,
}

/// One attacker: from `from`, open a connection to `to`, send a request head a byte a second
/// until the daemon drops it, wait a second, again.
async fn slowloris(from: Ipv4Addr, to: SocketAddr, attack: Arc<Attack>) {
    const HEAD: &[u8] = b"POST /hooks/site HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\nContent-Length: 7000\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    while !attack.stop.load(Ordering::Relaxed) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        if let Ok(stream) = socket.connect(to).await {
            attack.open.fetch_add(1, Ordering::Relaxed);
            let (mut rd, mut wr) = stream.into_split();
            let mut sink = [0u8; 256];
            for b in HEAD.iter().cycle() {
                if attack.stop.load(Ordering::Relaxed) || wr.write_all(&[*b]).await.is_err() {
                    break;
                }
                // A closed connection reads as EOF (or an error) at once.
                match tokio::time::timeout(Duration::from_secs(1), rd.read(&mut sink)).await {
                    Err(_) => {}
                    Ok(_) => break,
                }
            }
            attack.open.fetch_sub(1, Ordering::Relaxed);
            attack.dropped.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Starts `per_address` attackers on each of `addresses` (127.0.0.2 onwards).
fn start_attack(
    rt: &tokio::runtime::Runtime,
    port: u16,
    addresses: u8,
    per_address: usize,
) -> Arc<Attack> {
    let attack = Arc::new(Attack::default());
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    for a in 0..addresses {
        for _ in 0..per_address {
            let from = Ipv4Addr::new(127, 0, 0, 2 + a);
            rt.spawn(slowloris(from, to, attack.clone()));
        }
    }
    attack
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_webhook_is_answered_at_once_during_a_1500_connection_slowloris() {
    raise_fd_limit();
    let secret = "slowloris-secret-2a9d61";
    // Default limits: 512 connections, 64 per address, 10 s for the headers.
    let m = Mirror::on(Remote::new())
        .keys(&format!("    branch: main\n    secret: {secret}\n"))
        .start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let rt = runtime();
    let attack = start_attack(&rt, server.port, 30, 50);
    // The attack is on once every attacker connected and the daemon began to shed.
    assert!(
        wait_until(WAIT, || attack.open.load(Ordering::Relaxed)
            + attack.dropped.load(Ordering::Relaxed)
            >= 1500),
        "attackers could not connect"
    );
    assert!(wait_until(WAIT, || attack.dropped.load(Ordering::Relaxed) > 0));

    let mut before = remote.head();
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let after = remote.advance(&format!("during the attack {i}"));
        let (id, d) = github_main_push(secret, &remote.forms(), &before, &after);
        let t = Instant::now();
        server
            .deliver("/hooks/site", &d)
            .expect_queued(&["site"], &id);
        slowest = slowest.max(t.elapsed());
        server.wait_head("site", dir, &after);
        before = after;
    }
    eprintln!(
        "slowest webhook answer {slowest:?}; attackers open {}, dropped {}",
        attack.open.load(Ordering::Relaxed),
        attack.dropped.load(Ordering::Relaxed)
    );
    // Before per-client limits a webhook waited 8.5-9 s for a slot here (GitHub gives up at
    // 10 s); the bound leaves room for a loaded machine.
    assert!(
        slowest < Duration::from_secs(3),
        "a webhook took {slowest:?} during the slowloris"
    );
    attack.stop.store(true, Ordering::Relaxed);
    assert!(
        server
            .logs()
            .contains("connection limits: shed the oldest unfinished requests"),
        "{}",
        server.logs()
    );
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn one_address_holds_at_most_max_connections_per_ip() {
    raise_fd_limit();
    let secret = "per-ip-secret-61be0c";
    let m = Mirror::on(Remote::new())
        .keys(&format!("    branch: main\n    secret: {secret}\n"))
        .daemon(
            Daemon::builder().top("limits: {max_connections_per_ip: 20, header_timeout: 30s}\n"),
        )
        .start();
    let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
    let rt = runtime();
    // 200 slow connections from one address: 20 are served (they wait for their headers), the
    // other 180 are closed at once, and reopened a second later, and closed again.
    let attack = start_attack(&rt, server.port, 1, 200);
    assert!(
        wait_until(WAIT, || attack.dropped.load(Ordering::Relaxed) >= 360),
        "dropped only {}",
        attack.dropped.load(Ordering::Relaxed)
    );
    // The refused ones reconnect together each second and are closed again at once: between
    // those bursts only the 20 the daemon serves are open.
    assert!(
        wait_until(WAIT, || attack.open.load(Ordering::Relaxed) <= 20),
        "{} connections held open (limit 20)",
        attack.open.load(Ordering::Relaxed)
    );
    // Another address is served meanwhile.
    let (before, after) = (remote.head(), remote.advance("from another address"));
    let (id, d) = github_main_push(secret, &remote.forms(), &before, &after);
    server
        .deliver("/hooks/site", &d)
        .expect_queued(&["site"], &id);
    server.wait_head("site", dir, &after);
    attack.stop.store(true, Ordering::Relaxed);
    assert!(
        server
            .logs()
            .contains("refused clients over limits.max_connections_per_ip"),
        "{}",
        server.logs()
    );
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn every_limit_of_the_http_edge_works_at_its_bounds() {
    raise_fd_limit();
    let secret = "bounds-secret-0d93aa";
    for limits in [
        // The largest of each: nothing narrows them on the way (shutdown waits on the count).
        "limits: {max_connections: 65536, max_connections_per_ip: 65536, max_body: 1GiB, min_body_rate: 1, header_timeout: 24h, body_timeout: 24h}\n",
        // The smallest that still admit a delivery: one connection at a time.
        "limits: {max_connections: 1, max_connections_per_ip: 1, max_body: 64KiB, min_body_rate: 1GiB, header_timeout: 5s, body_timeout: 5s}\n",
    ] {
        let m = Mirror::on(Remote::new())
            .keys(&format!("    branch: main\n    secret: {secret}\n"))
            .daemon(Daemon::builder().top(limits))
            .start();
        let (server, remote, dir) = (&m.daemon, &m.remote, &m.dir);
        let (before, after) = (remote.head(), remote.advance(limits));
        let (id, d) = github_main_push(secret, &remote.forms(), &before, &after);
        server
            .deliver("/hooks/site", &d)
            .expect_queued(&["site"], &id);
        server.wait_head("site", dir, &after);
        server.sigterm();
        let exit = server.wait_exit(Duration::from_secs(20));
        assert!(
            exit.is_some_and(|s| s.success()),
            "{limits}: {exit:?}\n{}",
            server.logs()
        );
    }
}
