//! Syncing one repository: libgit2's setup, the sync engine's modules, one attempt with its
//! actions, and retries around attempts.
//!
//! [`git`] runs a sync under the checkout's lock: `recovery` first (stale locks, temp packs,
//! damage), then `fetch` (with the callbacks in `credentials` and the `git://` transport of
//! [`git_proto`], limited per [`transport`]) and `publish` (tree first, HEAD last). `error` says
//! why a sync failed ([`SyncError`]). [`attempt`] adds the [`actions`] on a change; retries follow
//! [`backoff`]. Everything here blocks; the daemon runs it on blocking threads.

pub mod actions;
mod atomic;
pub mod backoff;
mod budget;
mod credentials;
mod error;
mod fetch;
mod filters;
pub mod git;
pub mod git_proto;
mod http;
mod http_agent;
mod http_error;
pub mod known_hosts;
mod mirror;
mod negotiate;
mod pkt;
mod pre_publish;
mod proxy;
mod publish;
mod recovery;
mod ssh;
pub mod ssh_pool;
pub mod transport;
mod verify;

use std::time::{Duration, Instant};

pub use error::{ErrorKind, SyncError};
pub use git::{SyncOptions, Synced};
pub use recovery::Recovery;

use crate::config::{Publish, Repo, RepoMode};

/// One attempt at a sync: the git result, what recovery did on the way (also when it failed),
/// and on a change what the actions did.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: Result<Synced, SyncError>,
    pub recovered: Vec<Recovery>,
    /// The post-sync command's result, when one ran.
    pub command: Option<Result<actions::CommandResult, String>>,
    /// Set when touching the trigger file failed.
    pub touch_error: Option<String>,
}

/// The outcome of a sync request: the last attempt's result and actions, after retries.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<Synced, SyncError>,
    /// Attempts made (1 when the first succeeded or failed for good).
    pub attempts: u32,
    pub duration: Duration,
    /// The post-sync command's result, when one ran.
    pub command: Option<Result<actions::CommandResult, String>>,
    /// Set when touching the trigger file failed.
    pub touch_error: Option<String>,
    /// What recovery did, over all attempts.
    pub recovered: Vec<Recovery>,
}

impl Outcome {
    /// The outcome whose last attempt was `last`, `recovered` holding the earlier attempts'
    /// recovery actions.
    pub fn new(
        last: Attempt,
        attempts: u32,
        duration: Duration,
        mut recovered: Vec<Recovery>,
    ) -> Outcome {
        recovered.extend(last.recovered);
        Outcome {
            result: last.result,
            attempts,
            duration,
            command: last.command,
            touch_error: last.touch_error,
            recovered,
        }
    }

    pub fn ok(&self) -> bool {
        self.result.is_ok()
            && self.touch_error.is_none()
            && self
                .command
                .as_ref()
                .is_none_or(|c| c.as_ref().is_ok_and(|r| r.success()))
    }
}

/// Syncs `repo` once and, when the checkout changed, runs the post-sync actions — all under the
/// checkout's lock, and only then is the publish recorded as complete, so actions cut short by
/// a kill run again on the next sync.
pub fn attempt(repo: &Repo, opts: &SyncOptions) -> Attempt {
    let mut recovered = Vec::new();
    let limits = transport::Limits::for_repo(repo);
    let sync_locked = match (repo.deploy.mode, repo.deploy.publish) {
        (RepoMode::Mirror, _) => mirror::sync_locked,
        (RepoMode::Checkout, Publish::Atomic) => atomic::sync_locked,
        (RepoMode::Checkout, Publish::InPlace) => git::sync_locked,
    };
    let locked = match sync_locked(repo, opts, limits, &mut recovered) {
        Ok(l) => l,
        Err(e) => {
            return Attempt {
                result: Err(e),
                recovered,
                command: None,
                touch_error: None,
            };
        }
    };
    let synced = locked.synced.clone();
    let (command, touch_error) = if synced.changed() {
        run_actions(repo, &synced)
    } else {
        (None, None)
    };
    if let Err(e) = locked.finish() {
        tracing::warn!(repo = %repo.name, error = %e, "the next sync will run the actions again");
    }
    Attempt {
        result: Ok(synced),
        recovered,
        command,
        touch_error,
    }
}

/// [`attempt`]'s git result alone (its actions run too).
pub fn sync_once(repo: &Repo, opts: &SyncOptions) -> Result<Synced, SyncError> {
    attempt(repo, opts).result
}

/// Syncs `repo`, retrying per [`backoff::next`] (transient failures with exponential backoff and
/// jitter, up to `repo.retry.attempts`); `sleep` waits between attempts (and may return false to
/// give up, e.g. on shutdown). The one-shot CLI's loop; the daemon has its own, which lets go of
/// its worker while it waits.
pub fn sync_with_retry(
    repo: &Repo,
    opts: &SyncOptions,
    mut sleep: impl FnMut(Duration) -> bool,
) -> Outcome {
    let start = Instant::now();
    let mut attempts = 1;
    let mut recovered = Vec::new();
    let mut busy_since = None;
    loop {
        let a = attempt(repo, opts);
        let Err(e) = &a.result else {
            return Outcome::new(a, attempts, start.elapsed(), recovered);
        };
        let busy_for = match e.kind {
            ErrorKind::Busy => busy_since.get_or_insert_with(Instant::now).elapsed(),
            _ => Duration::ZERO,
        };
        match backoff::next(e.kind, attempts, busy_for, repo, fastrand::f64()) {
            backoff::Next::Retry { after, counts } => {
                if counts {
                    tracing::warn!(repo = %repo.name, attempt = attempts, kind = e.kind.as_str(), error = %e, retry_in = ?after, "sync failed, retrying");
                }
                if !sleep(after) {
                    return Outcome::new(a, attempts, start.elapsed(), recovered);
                }
                attempts += u32::from(counts);
                recovered.extend(a.recovered);
            }
            backoff::Next::GiveUp => return Outcome::new(a, attempts, start.elapsed(), recovered),
        }
    }
}

/// How long connecting to a remote may take on libgit2's own transports (one process-wide
/// setting), and the HTTP agents' default; hookmirror's transports connect within each
/// repository's `stall_timeout` (never past its `sync_timeout`) instead.
pub const CONNECT_TIMEOUT_MS: i32 = 15_000;
/// How long a remote may stay silent mid-transfer on libgit2's own transports (ssh, https)
/// before the attempt fails: libgit2 has one such timeout for the whole process, set once at
/// start, so it is the default `stall_timeout`. hookmirror's own transports and the
/// transfer-progress check apply each repository's `stall_timeout` and `sync_timeout`.
pub const IO_TIMEOUT_MS: i32 = 60_000;
/// libgit2's pack window size (git's `core.packedGitWindowSize` idea).
pub const MWINDOW_SIZE: usize = 8 << 20;
/// Pack windows mapped at once, in bytes: keeps a clone's RSS within tens of MiB of idle
/// whatever the pack's size.
pub const MWINDOW_MAPPED_LIMIT: usize = 32 << 20;

/// A transport factory as `git2::transport::register` takes it.
type Factory = fn(&git2::Remote<'_>) -> Result<git2::transport::Transport, git2::Error>;

/// Sets libgit2's global network timeouts and registers hookmirror's transports ([`git_proto`],
/// [`http`], [`ssh`]) under their private schemes (see [`transport::fetch_url`]). Call once at start, before any other thread exists; later calls do nothing.
#[allow(unsafe_code)]
pub fn init_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: git2 documents these as unsafe because they write C globals without
        // synchronisation; this runs at the top of `main` (and test setup) before any thread
        // uses libgit2, and `Once` keeps it to one run.
        // Objects read back from the object database are not hashed again: the indexer computed
        // every id from the content it received, and zlib's checksum catches damage on disk, as
        // for git, which does not re-hash on read either. Re-hashing with libgit2's
        // collision-detecting SHA-1 made a first checkout of 20,000 files ~15-30 % slower.
        git2::opts::strict_hash_verification(false);
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
            let _ = git2::opts::set_server_timeout_in_milliseconds(IO_TIMEOUT_MS);
            // Pack windows mapped at once: libgit2's default (8 GiB on 64-bit) lets a clone map
            // its whole pack, so RSS grows by the pack's size; git reads packs through windows
            // too. Measured by `cargo bench --bench transports` (part 3).
            let _ = git2::opts::set_mwindow_size(MWINDOW_SIZE);
            let _ = git2::opts::set_mwindow_mapped_limit(MWINDOW_MAPPED_LIMIT);
            let own: [(&str, Factory); 4] = [
                (git_proto::SCHEME, git_proto::factory),
                (http::SCHEMES[0], http::factory),
                (http::SCHEMES[1], http::factory),
                (ssh::SCHEME, ssh::factory),
            ];
            for (scheme, factory) in own {
                if let Err(e) = git2::transport::register(scheme, factory) {
                    tracing::error!(scheme, error = %e, "cannot register a transport of hookmirror's");
                }
            }
        }
    });
}

/// Puts the settings of hookmirror's transports that are not per repository in force (at start
/// and on every reload).
pub fn configure(config: &crate::config::Config) {
    ssh_pool::set_idle_timeout(config.ssh.idle_timeout);
}

/// Touches the trigger file and runs the command of `repo`'s `on_success`, for the change `s`.
fn run_actions(
    repo: &Repo,
    s: &Synced,
) -> (
    Option<Result<actions::CommandResult, String>>,
    Option<String>,
) {
    let mut touch_error = None;
    if let Some(path) = &repo.on_success.touch
        && let Err(e) = actions::touch(path)
    {
        touch_error = Some(format!("cannot touch {}: {e}", path.display()));
    }
    if !repo.on_success.command.is_empty() {
        let old = s.old.clone().unwrap_or_default();
        let env = actions::env(repo, &s.remote_ref, &old, &s.new, &repo.directory);
        let r = actions::run_command(
            &repo.on_success.command,
            &env,
            &repo.directory,
            repo.on_success.timeout,
        )
        .map_err(|e| format!("cannot run {}: {e}", repo.on_success.command[0]));
        if let Ok(c) = &r
            && c.leftovers_killed
        {
            tracing::warn!(repo = %repo.name, timeout = ?repo.on_success.timeout, "on_success command exited, but processes it started held its output until the timeout; its process group was killed");
        }
        match &r {
            Ok(c) if c.success() => {
                tracing::info!(repo = %repo.name, stdout = %c.stdout.trim_end(), stderr = %c.stderr.trim_end(), truncated = c.truncated, "on_success command done")
            }
            Ok(c) => {
                tracing::warn!(repo = %repo.name, code = ?c.code, timed_out = c.timed_out, stdout = %c.stdout.trim_end(), stderr = %c.stderr.trim_end(), truncated = c.truncated, "on_success command failed")
            }
            Err(e) => tracing::warn!(repo = %repo.name, error = %e, "on_success command failed"),
        }
        return (Some(r), touch_error);
    }
    (None, touch_error)
}
