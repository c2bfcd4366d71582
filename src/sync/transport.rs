//! What hookmirror's own transports (`git://`, and any other registered in `init_libgit2`) know
//! about the fetch they serve, which libgit2's transport interface cannot pass: the repository
//! (its credentials and connection settings) and the fetch's time limits. The engine installs a
//! [`FetchContext`] for the thread around `Remote::fetch` and around its own negotiation
//! (`negotiate`, which opens the transports' streams itself) ([`scope`]); libgit2 runs a
//! transport on the thread that called fetch, so the transport finds it with [`current`].
//!
//! The limits: a sync has an overall deadline (`sync_timeout`), and a transfer that receives less
//! than [`LOW_SPEED_BYTES`] within `stall_timeout` is stalled (git's `http.lowSpeedLimit`/`Time`
//! idea, applied to every transport), so neither a silent remote nor one that trickles a byte at
//! a time can hold a worker past its limits. Our transports check every read with a [`Watch`].
//! libgit2's built-in ones (ssh, https) allow less: its transfer-progress callback fires once per
//! 100 KiB received (`NETWORK_XFER_THRESHOLD` in smart_protocol.c) and the sideband one per
//! progress message, and there [`Limits::check`] ends a fetch past its deadline; a silent socket
//! fails after libgit2's one process-wide timeout (`IO_TIMEOUT_MS`). A remote that trickles
//! below 100 KiB per `stall_timeout` over those transports is not caught (our own transports
//! for them lift that).
//!
//! What the remote may send (`limits.max_*`, [`FetchLimits`]) travels with the time limits: our
//! transports count every read with a [`Meter`](super::budget::Meter), libgit2's fetch is
//! checked in its progress callback ([`Limits::check_progress`]: the pack's declared object
//! count as soon as its header arrives, then the bytes received).
//!
//! libgit2 keeps only the text of a transport's error, so a limit that trips is also recorded
//! for the thread ([`take_limit_hit`]): the engine reports it as a timeout (or, for a size, as
//! too large) by that record, not by the words.

use std::cell::RefCell;
use std::io;
use std::time::{Duration, Instant};

use super::budget::Exceeded;
use crate::config::{FetchLimits, Repo};
use crate::url::Scheme;

/// What a fetch past its deadline fails with.
const DEADLINE: &str = "the sync ran past its sync_timeout";

/// A transfer slower than this many bytes per `stall_timeout` is stalled.
pub const LOW_SPEED_BYTES: u64 = 1024;

/// The limits of one fetch: its time, and what the remote may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// When the whole sync must be over.
    pub deadline: Instant,
    /// How long a transfer may go without receiving [`LOW_SPEED_BYTES`]; also how long
    /// connecting (TCP, TLS, SSH's banner, key exchange and login) may take.
    pub stall: Duration,
    /// What the remote may send.
    pub sizes: FetchLimits,
}

impl Limits {
    /// Limits for a sync that starts now, with the default sizes.
    pub fn starting_now(sync_timeout: Duration, stall: Duration) -> Limits {
        Limits {
            deadline: Instant::now() + sync_timeout,
            stall,
            sizes: FetchLimits::default(),
        }
    }

    /// The limits of the fetch running on this thread, or the default ones (a fetch outside the
    /// engine, e.g. a submodule's or a test's).
    pub fn current_or_default() -> Limits {
        current().map(|c| c.limits).unwrap_or_else(|| {
            let d = crate::config::Timeouts::default();
            Limits::starting_now(d.sync, d.stall)
        })
    }

    /// The limits of a sync of `repo` that starts now (its `sync_timeout`, `stall_timeout`).
    pub fn for_repo(repo: &Repo) -> Limits {
        Limits {
            sizes: repo.limits,
            ..Limits::starting_now(repo.timeouts.sync, repo.timeouts.stall)
        }
    }

    /// How long connecting, a TLS handshake, an SSH banner, key exchange or login may take: a
    /// whole `stall_timeout` (a remote that says nothing that long is gone), never past the
    /// deadline. An error when the deadline has passed.
    pub fn connect_timeout(&self) -> io::Result<Duration> {
        Ok(self.stall.min(self.remaining()?))
    }

    /// The timeout error for `what` (e.g. "the SSH key exchange") having waited `waited` (the
    /// [`Limits::connect_timeout`] it was given) in vain, recorded with the limit that ended
    /// it: the deadline when it left less than a stall, else `stall_timeout`.
    pub fn connect_timed_out(&self, what: &str, waited: Duration) -> io::Error {
        if waited < self.stall || self.remaining().is_err() {
            return limit_hit(DEADLINE.into());
        }
        limit_hit(format!(
            "{what} did not finish within stall_timeout ({})",
            humantime::format_duration(self.stall)
        ))
    }

    /// For libgit2's transfer-progress callback: false (and the limit recorded) once the pack
    /// declares more than `max_objects` or more than `max_pack` bytes have arrived, or the
    /// deadline has passed.
    pub fn check_progress(&self, total_objects: usize, received_bytes: usize) -> bool {
        let sizes = &self.sizes;
        let exceeded = if total_objects as u64 > sizes.max_objects {
            Some(Exceeded::objects(total_objects as u64, sizes.max_objects))
        } else if received_bytes as u64 > sizes.max_pack {
            Some(Exceeded::pack(sizes.max_pack))
        } else {
            None
        };
        match exceeded {
            Some(e) => {
                too_large(e);
                false
            }
            None => self.check(),
        }
    }

    /// False (and the limit recorded) once the deadline has passed: for libgit2's callbacks,
    /// which cancel the fetch when they return false.
    pub fn check(&self) -> bool {
        self.remaining().is_ok()
    }

    /// What is left before the deadline, or the timeout error once it has passed.
    pub fn remaining(&self) -> io::Result<Duration> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(limit_hit(DEADLINE.into())),
        }
    }
}

/// A limit that tripped during a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// `sync_timeout` or `stall_timeout`, in words for the operator.
    Time(String),
    /// One of `limits.max_*`, in words that name the key to raise.
    Size(String),
}

thread_local! {
    /// The limit that tripped during this thread's current fetch, if one did.
    static LIMIT_HIT: RefCell<Option<LimitHit>> = const { RefCell::new(None) };
}

/// Records that a time limit tripped (what it was, in words for the operator) and returns the
/// timeout error a transport's read fails with.
fn limit_hit(what: String) -> io::Error {
    LIMIT_HIT.with(|l| {
        let mut l = l.borrow_mut();
        // A size that tripped first is the cause; the time only ran out after it.
        if !matches!(*l, Some(LimitHit::Size(_))) {
            *l = Some(LimitHit::Time(what.clone()));
        }
    });
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// Records that the remote sent more than a limit allows and returns the error a transport's
/// read fails with (the first record stands: libgit2 may read on after it).
pub fn too_large(e: Exceeded) -> io::Error {
    LIMIT_HIT.with(|l| {
        let mut l = l.borrow_mut();
        if !matches!(*l, Some(LimitHit::Size(_))) {
            *l = Some(LimitHit::Size(e.0.clone()));
        }
    });
    io::Error::new(io::ErrorKind::FileTooLarge, e.0)
}

/// The limit that tripped during the fetch that just ended on this thread, if one did (and
/// forgets it). [`scope`] clears it when a fetch begins.
pub fn take_limit_hit() -> Option<LimitHit> {
    LIMIT_HIT.with(|l| l.borrow_mut().take())
}

/// Watches one connection's reads against [`Limits`]: call [`Watch::before_read`] for the
/// socket timeout of the next read and [`Watch::after_read`] with what it returned.
#[derive(Debug)]
pub struct Watch {
    limits: Limits,
    window_start: Instant,
    window_bytes: u64,
    /// The next read's timeout is the time left before the deadline (shorter than a stall).
    deadline_bound: bool,
}

impl Watch {
    pub fn new(limits: Limits) -> Watch {
        Watch {
            limits,
            window_start: Instant::now(),
            window_bytes: 0,
            deadline_bound: false,
        }
    }

    /// The limits watched.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How long the next read may block: a whole `stall_timeout` (a remote silent that long
    /// has stalled), but never past the deadline. An error when the deadline has passed, or the
    /// stall window that just closed brought too few bytes.
    pub fn before_read(&mut self) -> io::Result<Duration> {
        let left = self.limits.remaining()?;
        if self.window_start.elapsed() >= self.limits.stall {
            self.close_window()?;
        }
        self.deadline_bound = left < self.limits.stall;
        Ok(self.limits.stall.min(left))
    }

    /// Counts what a read returned; an error when a read timed out (the remote was silent for
    /// a whole `stall_timeout`, or until the deadline) or the window closed with too few bytes.
    pub fn after_read(&mut self, result: io::Result<usize>) -> io::Result<usize> {
        match result {
            Ok(n) => {
                self.window_bytes += n as u64;
                if self.window_start.elapsed() >= self.limits.stall {
                    self.close_window()?;
                }
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.limits.remaining()?;
                if self.deadline_bound {
                    return Err(limit_hit(DEADLINE.into()));
                }
                Err(self.stalled())
            }
            Err(e) => Err(e),
        }
    }

    /// Ends a stall window: fine if it brought enough bytes, else the stall error.
    fn close_window(&mut self) -> io::Result<()> {
        if self.window_bytes < LOW_SPEED_BYTES {
            return Err(self.stalled());
        }
        self.window_start = Instant::now();
        self.window_bytes = 0;
        Ok(())
    }

    fn stalled(&self) -> io::Error {
        limit_hit(stalled_message(self.limits.stall))
    }
}

fn stalled_message(stall: Duration) -> String {
    format!(
        "the remote stalled: less than {LOW_SPEED_BYTES} bytes in {} (stall_timeout)",
        humantime::format_duration(stall)
    )
}

/// The URL libgit2 is given for `repo`: for a repository on hookmirror's transports, its URL
/// under the private scheme that selects them (`hm-https://…`, `hm-http://…`, `hm-git://…`,
/// `hm-ssh://host[:port]`), else as configured. libgit2 registers transports per scheme for
/// the whole process; private schemes leave `https`, `ssh` and `git` to libgit2's own for
/// repositories with `transport: libgit2` (and for submodules). Never shown to users: errors
/// and `.git/config` carry the configured URL.
pub fn fetch_url(repo: &Repo) -> String {
    let url = repo.url.as_str();
    if repo.transport == crate::config::TransportChoice::Libgit2 {
        return url.to_string();
    }
    let parsed = repo.url.parsed();
    match parsed.scheme {
        Scheme::Https | Scheme::Http | Scheme::Git => format!("hm-{}", url.trim()),
        // The SSH transport takes user, path and key from the fetch context; the URL names the
        // host for libgit2's messages only.
        Scheme::Ssh => match parsed.port {
            Some(p) => format!("hm-ssh://{}:{p}/", bracketed(&parsed.host)),
            None => format!("hm-ssh://{}/", bracketed(&parsed.host)),
        },
        Scheme::File => url.to_string(),
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The fetch a transport serves.
#[derive(Debug, Clone)]
pub struct FetchContext {
    pub repo: Repo,
    pub limits: Limits,
}

thread_local! {
    static CURRENT: RefCell<Option<FetchContext>> = const { RefCell::new(None) };
}

/// Runs `f` with `ctx` as this thread's fetch context (restored afterwards, also on panic); a
/// limit recorded before is forgotten.
pub fn scope<R>(ctx: FetchContext, f: impl FnOnce() -> R) -> R {
    take_limit_hit();
    FAILURE.with(|f| f.borrow_mut().take());
    struct Restore(Option<FetchContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(ctx));
    let _restore = Restore(previous);
    f()
}

/// The fetch context of this thread, if a fetch is running on it.
pub fn current() -> Option<FetchContext> {
    CURRENT.with(|c| c.borrow().clone())
}

thread_local! {
    static FAILURE: RefCell<Option<(git2::ErrorCode, git2::ErrorClass, String)>> =
        const { RefCell::new(None) };
}

/// Turns a transport's error into the `io::Error` a stream read or write must return, keeping
/// its code and class for [`take_failure`]: git2 passes a stream's `io::Error` to libgit2 as
/// text only (class `Net`, no code), so a timeout or a refused login would otherwise lose its
/// kind on the way back to the engine.
pub fn fail(e: git2::Error) -> io::Error {
    let message = e.message().to_string();
    FAILURE.with(|f| *f.borrow_mut() = Some((e.code(), e.class(), message.clone())));
    io::Error::other(message)
}

/// The error a transport gave through [`fail`] on this thread, when `e` (what libgit2 reported)
/// is that error: the original with its code and class. Taken once.
pub fn take_failure(e: &git2::Error) -> Option<git2::Error> {
    let (code, class, message) = FAILURE.with(|f| f.borrow_mut().take())?;
    (e.class() == git2::ErrorClass::Net && e.message() == message)
        .then(|| git2::Error::new(code, class, message))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn limits(sync: u64, stall_ms: u64) -> Limits {
        Limits::starting_now(Duration::from_secs(sync), Duration::from_millis(stall_ms))
    }

    #[test]
    fn a_silent_remote_is_stalled_after_one_window() {
        let mut w = Watch::new(limits(60, 200));
        let t = w.before_read().unwrap();
        assert!(t <= Duration::from_millis(200) && t > Duration::from_millis(100));
        let e = w
            .after_read(Err(io::ErrorKind::WouldBlock.into()))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("stalled"), "{e}");
    }

    #[test]
    fn every_read_may_wait_a_whole_stall_and_a_busy_window_passes() {
        let mut w = Watch::new(limits(60, 40));
        assert_eq!(w.before_read().unwrap(), Duration::from_millis(40));
        w.after_read(Ok(2000)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        // Late in the window, the next read still gets a whole stall before it counts as one.
        assert_eq!(w.before_read().unwrap(), Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(
            w.before_read().unwrap(),
            Duration::from_millis(40),
            "window passed"
        );
    }

    #[test]
    fn a_read_cut_by_the_deadline_says_so() {
        let mut w = Watch::new(Limits {
            deadline: Instant::now() + Duration::from_millis(300),
            ..limits(0, 60_000)
        });
        assert!(w.before_read().unwrap() <= Duration::from_millis(300));
        let e = w
            .after_read(Err(io::ErrorKind::WouldBlock.into()))
            .unwrap_err();
        assert!(e.to_string().contains("sync_timeout"), "{e}");
    }

    #[test]
    fn a_trickle_is_stalled_when_its_window_closes() {
        let mut w = Watch::new(limits(60, 50));
        w.before_read().unwrap();
        w.after_read(Ok(1)).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(w.after_read(Ok(1)).is_err(), "2 bytes in a window");
    }

    #[test]
    fn a_steady_transfer_passes_window_after_window() {
        let mut w = Watch::new(limits(60, 30));
        for _ in 0..4 {
            w.before_read().unwrap();
            w.after_read(Ok(4096)).unwrap();
            std::thread::sleep(Duration::from_millis(35));
        }
    }

    #[test]
    fn the_deadline_caps_every_read() {
        let mut w = Watch::new(Limits {
            deadline: Instant::now() + Duration::from_millis(20),
            ..limits(0, 60_000)
        });
        assert!(w.before_read().unwrap() <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(25));
        let e = w.before_read().unwrap_err();
        assert!(e.to_string().contains("sync_timeout"), "{e}");
    }

    #[test]
    fn a_tripped_limit_is_recorded_for_the_thread() {
        take_limit_hit();
        let mut w = Watch::new(limits(60, 10));
        w.before_read().unwrap();
        w.after_read(Err(io::ErrorKind::WouldBlock.into()))
            .unwrap_err();
        let hit = take_limit_hit().unwrap();
        assert!(
            matches!(&hit, LimitHit::Time(w) if w.contains("stall_timeout")),
            "{hit:?}"
        );
        assert!(take_limit_hit().is_none(), "taken once");
        std::thread::spawn(|| assert!(take_limit_hit().is_none()))
            .join()
            .unwrap();
    }

    #[test]
    fn the_deadline_check_records_why() {
        take_limit_hit();
        assert!(limits(60, 1000).check());
        assert!(take_limit_hit().is_none());
        let past = Limits {
            deadline: Instant::now(),
            ..limits(0, 60_000)
        };
        assert!(!past.check());
        assert!(matches!(take_limit_hit(), Some(LimitHit::Time(w)) if w.contains("sync_timeout")));
    }

    #[test]
    fn connecting_may_take_a_stall_but_never_past_the_deadline() {
        assert_eq!(
            limits(60, 2000).connect_timeout().unwrap(),
            Duration::from_secs(2)
        );
        assert!(limits(1, 60_000).connect_timeout().unwrap() <= Duration::from_secs(1));
        take_limit_hit();
        let e = limits(60, 2000).connect_timed_out("the SSH key exchange", Duration::from_secs(2));
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let hit = take_limit_hit().unwrap();
        assert_eq!(
            hit,
            LimitHit::Time("the SSH key exchange did not finish within stall_timeout (2s)".into())
        );
        let past = Limits {
            deadline: Instant::now(),
            ..limits(0, 60_000)
        };
        assert!(past.connect_timeout().is_err());
        past.connect_timed_out("x", Duration::from_secs(60));
        assert!(matches!(take_limit_hit(), Some(LimitHit::Time(w)) if w.contains("sync_timeout")));
        // A wait the deadline cut short names the deadline, even if a hair of it is left.
        limits(60, 2000).connect_timed_out("x", Duration::from_millis(1999));
        assert!(matches!(take_limit_hit(), Some(LimitHit::Time(w)) if w.contains("sync_timeout")));
    }

    #[test]
    fn libgit2_s_progress_is_held_to_the_sizes() {
        let mut l = limits(60, 1000);
        l.sizes.max_objects = 10;
        l.sizes.max_pack = 1000;
        take_limit_hit();
        assert!(l.check_progress(10, 1000));
        assert!(take_limit_hit().is_none());
        assert!(!l.check_progress(11, 0));
        assert!(
            matches!(take_limit_hit(), Some(LimitHit::Size(w)) if w.contains("limits.max_objects (10)"))
        );
        assert!(!l.check_progress(0, 1001));
        assert!(
            matches!(take_limit_hit(), Some(LimitHit::Size(w)) if w.contains("limits.max_pack"))
        );
        // The first size that tripped stands; a later timeout does not hide it.
        too_large(Exceeded::pack(1));
        too_large(Exceeded::refs(2));
        limit_hit("late".into());
        assert!(matches!(take_limit_hit(), Some(LimitHit::Size(w)) if w.contains("max_pack")));
    }

    #[test]
    fn the_context_is_per_thread_and_scoped() {
        assert!(current().is_none());
        let repo = crate::config::tests_support::repo("r", "git://h/r.git");
        let ctx = FetchContext {
            repo,
            limits: limits(1, 1000),
        };
        scope(ctx, || {
            assert_eq!(current().unwrap().repo.name, "r");
            std::thread::spawn(|| assert!(current().is_none()))
                .join()
                .unwrap();
        });
        assert!(current().is_none());
    }

    #[test]
    fn own_transports_get_private_schemes_and_libgit2_keeps_the_url() {
        let cases = [
            ("https://u:t@h/r.git", "hm-https://u:t@h/r.git"),
            ("http://h:8080/r", "hm-http://h:8080/r"),
            ("git://h/r.git", "hm-git://h/r.git"),
            ("git@h:ns/r.git", "hm-ssh://h/"),
            ("ssh://git@h:2222/r.git", "hm-ssh://h:2222/"),
            ("ssh://[::1]:22/r.git", "hm-ssh://[::1]:22/"),
            ("file:///srv/r.git", "file:///srv/r.git"),
        ];
        for (url, want) in cases {
            let mut repo = crate::config::tests_support::repo("r", url);
            assert_eq!(fetch_url(&repo), want, "{url}");
            repo.transport = crate::config::TransportChoice::Libgit2;
            assert_eq!(fetch_url(&repo), url, "{url}");
        }
    }
}
