//! Syncing one repository: libgit2's setup, the sync engine's modules, and retries around them.
//!
//! [`git`] fetches and checks out, with the callbacks in `credentials`, the directory recovery in
//! `recovery` and the `git://` transport of [`git_proto`]; `error` says why a sync failed
//! ([`SyncError`]). Retries wait per [`backoff`]; on a change, [`actions`] run. Everything here
//! blocks; the daemon runs it on blocking threads.

pub mod actions;
pub mod backoff;
mod credentials;
mod error;
mod filters;
pub mod git;
pub mod git_proto;
mod http;
mod http_agent;
pub mod known_hosts;
mod proxy;
mod recovery;
mod ssh;
pub mod ssh_pool;
pub mod transport;

use std::time::Duration;

pub use error::{ErrorKind, SyncError};
pub use git::{SyncOptions, Synced, sync_once};

use crate::config::Repo;

/// The outcome of a sync request: the git result after retries, and what the actions did.
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
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.result.is_ok()
            && self.touch_error.is_none()
            && self
                .command
                .as_ref()
                .is_none_or(|c| c.as_ref().is_ok_and(|r| r.success()))
    }
}

/// Syncs `repo`, retrying transient failures with exponential backoff and jitter up to
/// `repo.retry.attempts`; `sleep` waits between attempts (and may return false to give up, e.g.
/// on shutdown). On a change, runs the post-sync actions.
pub fn sync_with_retry(
    repo: &Repo,
    opts: &SyncOptions,
    mut sleep: impl FnMut(Duration) -> bool,
) -> Outcome {
    let start = std::time::Instant::now();
    let mut attempts = 1;
    let result = loop {
        let r = sync_once(repo, opts);
        match &r {
            Err(e) if e.kind.is_transient() && attempts < repo.retry.attempts => {
                let d = backoff::delay(
                    attempts,
                    repo.retry.initial_delay,
                    repo.retry.max_delay,
                    fastrand::f64(),
                );
                tracing::warn!(repo = %repo.name, attempt = attempts, error = %e, retry_in = ?d, "sync failed, retrying");
                if !sleep(d) {
                    break r;
                }
                attempts += 1;
            }
            _ => break r,
        }
    };
    let mut outcome = Outcome {
        result,
        attempts,
        duration: start.elapsed(),
        command: None,
        touch_error: None,
    };
    if let Ok(s) = outcome.result.clone()
        && s.changed()
    {
        run_actions(repo, &s, &mut outcome);
    }
    outcome
}

/// How long connecting to a remote may take before the attempt fails (and is retried).
pub const CONNECT_TIMEOUT_MS: i32 = 15_000;
/// How long a remote may stay silent mid-transfer before the attempt fails. Without it a remote
/// that accepts the connection and then hangs would block its repository forever.
pub const IO_TIMEOUT_MS: i32 = 60_000;
/// libgit2's pack window size (git's `core.packedGitWindowSize` idea).
pub const MWINDOW_SIZE: usize = 8 << 20;
/// Pack windows mapped at once, in bytes: keeps a clone's RSS within tens of MiB of idle
/// whatever the pack's size.
pub const MWINDOW_MAPPED_LIMIT: usize = 32 << 20;
/// How long one sync may take in all, retries aside, unless the repository sets `sync_timeout`.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(600);

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

fn run_actions(repo: &Repo, s: &Synced, outcome: &mut Outcome) {
    if let Some(path) = &repo.on_success.touch
        && let Err(e) = actions::touch(path)
    {
        outcome.touch_error = Some(format!("cannot touch {}: {e}", path.display()));
    }
    if !repo.on_success.command.is_empty() {
        let env = [
            ("HOOKMIRROR_REPO", repo.name.clone()),
            ("HOOKMIRROR_REF", s.remote_ref.clone()),
            ("HOOKMIRROR_OLD", s.old.clone().unwrap_or_default()),
            ("HOOKMIRROR_NEW", s.new.clone()),
            ("HOOKMIRROR_DIR", repo.directory.display().to_string()),
        ];
        let r = actions::run_command(
            &repo.on_success.command,
            &env,
            &repo.directory,
            repo.on_success.timeout,
        )
        .map_err(|e| format!("cannot run {}: {e}", repo.on_success.command[0]));
        match &r {
            Ok(c) if c.success() => {
                tracing::info!(repo = %repo.name, stdout = %c.stdout.trim_end(), stderr = %c.stderr.trim_end(), truncated = c.truncated, "on_success command done")
            }
            Ok(c) => {
                tracing::warn!(repo = %repo.name, code = ?c.code, timed_out = c.timed_out, stdout = %c.stdout.trim_end(), stderr = %c.stderr.trim_end(), truncated = c.truncated, "on_success command failed")
            }
            Err(e) => tracing::warn!(repo = %repo.name, error = %e, "on_success command failed"),
        }
        outcome.command = Some(r);
    }
}
