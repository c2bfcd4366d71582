//! Live SSH sessions kept between fetches, per (host, port, user, key): the SSH transport
//! ([`super::ssh`]) takes one for a fetch and gives it back when the fetch ended cleanly, so the
//! next fetch of that host skips the TCP connect, key exchange and authentication.
//!
//! A session serves one fetch at a time: libssh2 locks a session for every call, so channels of
//! concurrent fetches on one session would wait on each other's blocking reads. Concurrent
//! fetches of one host therefore use as many sessions, each with one channel — never more
//! channels than a server's `MaxSessions` (OpenSSH: 10) allows — and all of them come back to the
//! pool. Sessions unused for `ssh.idle_timeout` are closed (by a reaper thread, so an idle daemon
//! holds no connections), and a key file, passphrase or known_hosts file that changed makes a
//! new [`Key`]: the host's sessions made with the old ones are dropped at the next fetch.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use ssh2::Session;

/// A logged-in session and its socket (a second handle to the one libssh2 reads, for socket
/// options: see `ssh::quickack`).
pub struct Conn {
    pub session: Session,
    pub socket: TcpStream,
}

/// Where and as whom a session is logged in, and a digest of what it was made with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key_file: PathBuf,
    /// A hash of the key file's bytes, the passphrase and the known_hosts file's bytes.
    pub digest: u64,
}

impl Key {
    pub fn new(
        host: &str,
        port: u16,
        user: &str,
        key_file: &Path,
        passphrase: Option<&str>,
        known_hosts: &Path,
    ) -> Key {
        let mut h = DefaultHasher::new();
        std::fs::read(key_file).unwrap_or_default().hash(&mut h);
        passphrase.hash(&mut h);
        known_hosts.hash(&mut h);
        std::fs::read(known_hosts).unwrap_or_default().hash(&mut h);
        Key {
            host: host.to_string(),
            port,
            user: user.to_string(),
            key_file: key_file.to_path_buf(),
            digest: h.finish(),
        }
    }

    /// Same host, port, user and key file, whatever the digest.
    fn same_login(&self, other: &Key) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.user == other.user
            && self.key_file == other.key_file
    }
}

/// `ssh.idle_timeout` in force, in milliseconds.
static IDLE_MS: AtomicU64 = AtomicU64::new(300_000);

/// Sessions opened since start (for logs and tests of reuse).
static OPENED: AtomicUsize = AtomicUsize::new(0);

type Idle = Vec<(Conn, Instant)>;

static POOL: Mutex<Option<HashMap<Key, Idle>>> = Mutex::new(None);

/// Sets how long an unused session is kept (`ssh.idle_timeout`; applied at start and reload).
pub fn set_idle_timeout(d: Duration) {
    IDLE_MS.store(d.as_millis().max(1) as u64, Ordering::Relaxed);
}

fn idle_timeout() -> Duration {
    Duration::from_millis(IDLE_MS.load(Ordering::Relaxed))
}

/// Counts a newly opened session.
pub fn opened() {
    OPENED.fetch_add(1, Ordering::Relaxed);
}

/// Sessions opened since start.
pub fn opened_count() -> usize {
    OPENED.load(Ordering::Relaxed)
}

fn with_pool<R>(f: impl FnOnce(&mut HashMap<Key, Idle>) -> R) -> R {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    f(pool.get_or_insert_with(HashMap::new))
}

/// An idle session for `key`, the most recently used first. Sessions of the same login made
/// with another key file content, passphrase or known_hosts are dropped.
pub fn take(key: &Key) -> Option<Conn> {
    let (session, dropped) = with_pool(|pool| {
        let mut dropped = Vec::new();
        pool.retain(|k, idle| {
            let stale = k != key && k.same_login(key);
            if stale {
                dropped.append(idle);
            }
            !stale
        });
        let conn = pool
            .get_mut(key)
            .and_then(|idle| idle.pop())
            .map(|(c, _)| c);
        (conn, dropped)
    });
    // Closed outside the lock: a disconnect writes to the socket.
    for (c, _) in dropped {
        close(&c.session, "credentials or known_hosts changed");
    }
    session
}

/// Gives a session back after a fetch that ended cleanly.
pub fn give(key: Key, conn: Conn) {
    start_reaper();
    with_pool(|pool| pool.entry(key).or_default().push((conn, Instant::now())));
}

/// Closes sessions idle past the timeout; returns how many.
pub fn reap() -> usize {
    let limit = idle_timeout();
    let expired = with_pool(|pool| {
        let mut expired = Vec::new();
        for idle in pool.values_mut() {
            let (old, keep): (Idle, Idle) = idle
                .drain(..)
                .partition(|(_, since)| since.elapsed() >= limit);
            *idle = keep;
            expired.extend(old);
        }
        pool.retain(|_, idle| !idle.is_empty());
        expired
    });
    let n = expired.len();
    for (c, _) in expired {
        close(&c.session, "idle");
    }
    n
}

/// Idle sessions in the pool.
pub fn idle_count() -> usize {
    with_pool(|pool| pool.values().map(Vec::len).sum())
}

fn close(session: &Session, why: &str) {
    // Short: the server may be gone already.
    session.set_timeout(1000);
    let _ = session.disconnect(None, &format!("hookmirror: {why}"), None);
}

/// Starts the thread that closes idle sessions, once. It wakes a few times per idle timeout,
/// and at least every second, so a timeout shortened by a reload takes effect at once.
fn start_reaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("ssh-pool-reaper".into())
            .spawn(|| {
                loop {
                    let nap = (idle_timeout() / 4).clamp(Duration::from_millis(250), Duration::from_secs(1));
                    std::thread::sleep(nap);
                    let n = reap();
                    if n > 0 {
                        tracing::debug!(closed = n, "closed idle SSH sessions");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the SSH pool's reaper; idle sessions stay open");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_the_files_and_the_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let (k, kh) = (dir.path().join("id"), dir.path().join("kh"));
        std::fs::write(&k, "key one").unwrap();
        std::fs::write(&kh, "hosts").unwrap();
        let a = Key::new("h", 22, "git", &k, Some("p"), &kh);
        assert_eq!(a, Key::new("h", 22, "git", &k, Some("p"), &kh));
        assert_ne!(a, Key::new("h", 22, "git", &k, Some("q"), &kh));
        std::fs::write(&kh, "hosts, changed").unwrap();
        let b = Key::new("h", 22, "git", &k, Some("p"), &kh);
        assert_ne!(a, b);
        assert!(a.same_login(&b));
        assert!(!a.same_login(&Key::new("h", 2222, "git", &k, Some("p"), &kh)));
    }
}
