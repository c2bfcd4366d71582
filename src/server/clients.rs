//! Per-client connection limits against slow and abusive clients: at most
//! `limits.max_connections_per_ip` connections from one address (an IPv6 client: its /64), and
//! when `limits.max_connections` are open, the connection whose request has been arriving the
//! longest — headers or body not yet complete, or idle between requests — is shed to make room,
//! instead of stalling `accept` until some slot frees. A forge sends a whole delivery at network
//! speed, so its request is never the oldest unfinished one while slowloris connections trickle.
//!
//! The decisions ([`Registry`]) are pure and tested below; the accept loop in `mod.rs` applies
//! them. The request path touches only its own connection's atomic ([`Track`]), never the lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How often, at most, shed and refused connections are summarised in the log (an attack would
/// otherwise write a line per connection).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Whom a per-client limit counts: an IPv4 address, or the /64 prefix of an IPv6 one (the
/// smallest block a host is given, so one client holds all of it). IPv4-mapped IPv6 addresses
/// count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    V4(u32),
    V6Prefix(u64),
}

impl Client {
    pub fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.into()),
                None => Client::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One connection's state, shared between its task, its requests and the registry.
#[derive(Debug)]
pub struct Track {
    client: Client,
    /// Microseconds since the registry's epoch, plus one, at which the request now arriving
    /// began to arrive (the connection opened, or the previous answer was given); 0 while a
    /// completely received request is handled, when the connection is not sheddable.
    unfinished_since: AtomicU64,
    /// Notified when the connection is shed: its task drops it.
    pub shed: Notify,
}

impl Track {
    /// The request is complete (headers and body read): it is not shed while it is handled.
    pub fn received(&self) {
        self.unfinished_since.store(0, Ordering::Relaxed);
    }

    /// The answer was given: the connection waits for its next request from now on.
    pub fn answered(&self, epoch: Instant) {
        self.unfinished_since
            .store(stamp(epoch, Instant::now()), Ordering::Relaxed);
    }

    fn since(&self) -> Option<u64> {
        match self.unfinished_since.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
}

/// `now` as a [`Track::unfinished_since`] value (never 0).
fn stamp(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_micros())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// What the accept loop does with a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Serve it (connections may have been shed to make room).
    Admit { track: Arc<Track>, id: u64 },
    /// Its client holds `max_connections_per_ip` already: close it at once.
    OverClientLimit,
    /// Every slot holds a completely received request: wait until one frees.
    Full,
}

/// The open connections: per client, and in all.
#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Arc<Track>>,
    per_client: HashMap<Client, usize>,
    /// Since the last report.
    shed: u64,
    refused: u64,
    last_report: Option<Instant>,
}

impl Registry {
    fn admit(
        &mut self,
        client: Client,
        max: usize,
        per_client: usize,
        epoch: Instant,
        now: Instant,
    ) -> Admission {
        if self.per_client.get(&client).copied().unwrap_or(0) >= per_client {
            self.refused += 1;
            return Admission::OverClientLimit;
        }
        while self.conns.len() >= max {
            // The oldest unfinished request: the slowest sender, or the longest idle.
            let victim = self
                .conns
                .iter()
                .filter_map(|(id, t)| t.since().map(|since| (since, *id)))
                .min();
            let Some((_, id)) = victim else {
                return Admission::Full;
            };
            if let Some(t) = self.remove(id) {
                t.shed.notify_one();
                self.shed += 1;
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        let track = Arc::new(Track {
            client,
            unfinished_since: AtomicU64::new(stamp(epoch, now)),
            shed: Notify::new(),
        });
        self.conns.insert(id, track.clone());
        *self.per_client.entry(client).or_default() += 1;
        Admission::Admit { track, id }
    }

    /// Forgets connection `id` (closed, or shed); `None` when it is gone already.
    fn remove(&mut self, id: u64) -> Option<Arc<Track>> {
        let t = self.conns.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&t.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&t.client);
            }
        }
        Some(t)
    }

    /// Counts to log now (shed, refused), at most every [`REPORT_EVERY`].
    fn report(&mut self, now: Instant) -> Option<(u64, u64)> {
        if self.shed + self.refused == 0
            || self
                .last_report
                .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
        {
            return None;
        }
        self.last_report = Some(now);
        Some((
            std::mem::take(&mut self.shed),
            std::mem::take(&mut self.refused),
        ))
    }
}

/// The registry shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub struct Clients {
    registry: Mutex<Registry>,
    /// Notified whenever a connection closes (the accept loop waiting for a slot, shutdown).
    pub freed: Notify,
    pub epoch: Instant,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            registry: Mutex::default(),
            freed: Notify::new(),
            epoch: Instant::now(),
        }
    }
}

impl Clients {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip` under these limits (see [`Admission`]).
    pub fn admit(&self, ip: IpAddr, max: usize, per_client: usize) -> Admission {
        let now = Instant::now();
        let mut registry = self.registry();
        let admission = registry.admit(Client::of(ip), max, per_client, self.epoch, now);
        if let Some((shed, refused)) = registry.report(now) {
            drop(registry);
            tracing::warn!(
                shed,
                refused,
                "connection limits: shed the oldest unfinished requests to make room (limits.max_connections), refused clients over limits.max_connections_per_ip"
            );
        }
        admission
    }

    /// Connection `id` closed.
    pub fn closed(&self, id: u64) {
        self.registry().remove(id);
        self.freed.notify_waiters();
    }

    pub fn open(&self) -> usize {
        self.registry().conns.len()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn admitted(a: Admission) -> (Arc<Track>, u64) {
        match a {
            Admission::Admit { track, id } => (track, id),
            other => panic!("not admitted: {other:?}"),
        }
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        let v4 = Client::of(ip("192.0.2.7"));
        assert_eq!(v4, Client::V4(u32::from(Ipv4Addr::new(192, 0, 2, 7))));
        assert_eq!(Client::of(ip("::ffff:192.0.2.7")), v4, "mapped");
        assert_ne!(Client::of(ip("192.0.2.8")), v4);
        let a = Client::of(ip("2001:db8:1:2::1"));
        assert_eq!(a, Client::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(a, Client::of(ip("2001:db8:1:3::1")));
        assert_eq!(
            Client::of(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Client::V6Prefix(0)
        );
    }

    #[test]
    fn a_client_over_its_limit_is_refused_and_others_are_not() {
        let (epoch, mut r) = (Instant::now(), Registry::default());
        let (a, b) = (Client::of(ip("10.0.0.1")), Client::of(ip("10.0.0.2")));
        let first = admitted(r.admit(a, 10, 2, epoch, epoch));
        admitted(r.admit(a, 10, 2, epoch, epoch));
        assert!(matches!(
            r.admit(a, 10, 2, epoch, epoch),
            Admission::OverClientLimit
        ));
        admitted(r.admit(b, 10, 2, epoch, epoch));
        // A closed connection gives its client the place back.
        r.remove(first.1);
        admitted(r.admit(a, 10, 2, epoch, epoch));
        assert_eq!(r.report(epoch), Some((0, 1)));
        assert_eq!(r.report(epoch), None, "counts were taken");
    }

    #[test]
    fn when_full_the_oldest_unfinished_request_is_shed() {
        let epoch = Instant::now();
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        let mut r = Registry::default();
        let c = |n: u8| Client::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)));
        let (slow, slow_id) = admitted(r.admit(c(1), 3, 9, epoch, at(0)));
        let (busy, _) = admitted(r.admit(c(2), 3, 9, epoch, at(1)));
        let (idle, _) = admitted(r.admit(c(3), 3, 9, epoch, at(2)));
        busy.received();
        // `idle` answered a request later than `slow` began: `slow` is the oldest unfinished.
        idle.answered(epoch);
        admitted(r.admit(c(4), 3, 9, epoch, at(3)));
        assert_eq!(r.shed, 1);
        assert!(!r.conns.contains_key(&slow_id));
        assert!(!r.per_client.contains_key(&c(1)), "its client's count fell");
        // Its task hears of it: a permit is stored for the next `notified()`.
        let mut notified = std::pin::pin!(slow.shed.notified());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(notified.as_mut().poll(&mut cx).is_ready());
        // Closing a shed connection again changes nothing.
        assert!(r.remove(slow_id).is_none());
        assert_eq!(r.conns.len(), 3);
        // Every request complete and being handled: nothing to shed, the caller waits.
        for t in r.conns.values() {
            t.received();
        }
        assert!(matches!(r.admit(c(5), 3, 9, epoch, at(4)), Admission::Full));
    }
}
