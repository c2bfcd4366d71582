//! The intake load generator: `concurrency` keep-alive connections, each sending the same signed
//! delivery (fresh delivery id per request) back to back until `total` requests were sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Conn, Delivery, webhook_request};

pub struct LoadResult {
    pub requests: u64,
    pub elapsed: Duration,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
    /// Per-request latency, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// A sample answer body.
    pub sample: String,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }
}

pub async fn run(
    addr: SocketAddr,
    path: &str,
    delivery: &Delivery,
    total: u64,
    concurrency: usize,
) -> LoadResult {
    // Connect everyone first so connection set-up is not timed.
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(Conn::connect(addr).await.expect("connect"));
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let next = next.clone();
        let d = delivery.clone();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let host = conn.host();
            let mut lat = Vec::with_capacity((total as usize / concurrency) + 16);
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut errors = 0u64;
            let mut sample = String::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let req = webhook_request(&host, &path, &d);
                let t = Instant::now();
                match conn.send(req).await {
                    Ok((status, body)) => {
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        *statuses.entry(status.as_u16()).or_default() += 1;
                        if sample.is_empty() {
                            sample = String::from_utf8_lossy(&body).into_owned();
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, statuses, errors, sample)
        }));
    }
    let mut r = LoadResult {
        requests: 0,
        elapsed: Duration::ZERO,
        statuses: BTreeMap::new(),
        errors: 0,
        latencies_us: Vec::new(),
        sample: String::new(),
    };
    for t in tasks {
        let (lat, statuses, errors, sample) = t.await.expect("load task");
        r.latencies_us.extend(lat);
        for (k, v) in statuses {
            *r.statuses.entry(k).or_default() += v;
        }
        r.errors += errors;
        if r.sample.is_empty() {
            r.sample = sample;
        }
    }
    r.elapsed = start.elapsed();
    r.requests = r.statuses.values().sum::<u64>() + r.errors;
    r.latencies_us.sort_unstable();
    r
}
