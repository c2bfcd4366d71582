//! What the daemon tells about itself: per-repository status, the report of one sync, reload
//! history, and the views the API and systemd's STATUS= line are built from.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Daemon, RepoEntry};
use crate::config::Repo;
use crate::queue::State;
use crate::sync::{Outcome, SyncError};

/// A failed sync as status shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
}

pub(super) fn error_info(e: &SyncError) -> ErrorInfo {
    ErrorInfo {
        kind: e.kind.as_str().into(),
        message: e.message.clone(),
    }
}

/// One thing recovery did to a checkout (see [`crate::sync::Recovery`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecoveryAction {
    /// `lock_removed`, `temp_files_removed`, `moved_aside`, `recloned`, `publish_repaired`,
    /// `actions_resumed`.
    pub kind: String,
    pub message: String,
}

/// The last time a sync had to repair a checkout, and what it did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecoveryInfo {
    pub at: DateTime<Utc>,
    pub actions: Vec<RecoveryAction>,
}

/// A sync in backoff: the attempt that failed, when the next starts, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RetryInfo {
    pub attempt: u32,
    pub next_attempt: DateTime<Utc>,
    pub error: ErrorInfo,
}

/// The result of one sync, as the API's `?wait=true` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub name: String,
    pub ok: bool,
    pub changed: bool,
    pub old: Option<String>,
    pub commit: Option<String>,
    pub fetched: bool,
    pub attempts: u32,
    pub duration_ms: u64,
    pub error: Option<ErrorInfo>,
}

/// What is known about one repository.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoStatus {
    /// The checked-out commit.
    pub commit: Option<String>,
    /// The remote ref last followed (`refs/heads/main`).
    pub remote_ref: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<ErrorInfo>,
    pub last_duration_ms: Option<u64>,
    pub last_trigger: Option<String>,
    pub syncs: u64,
    pub failures: u64,
    /// Syncs that failed in a row (0 after a success).
    pub consecutive_failures: u64,
    /// Syncs that fetched from the remote (the rest were answered from the checkout).
    pub fetches: u64,
    /// When the schedule next enqueues a sync (before jitter).
    pub next_run: Option<DateTime<Utc>>,
    /// While the sync waits to try again (state `backoff`): why and when.
    pub retry: Option<RetryInfo>,
    /// Recovery actions taken so far (stale locks, temp packs, a checkout moved aside and
    /// cloned again, an interrupted publish repaired), and the last ones.
    pub recoveries: u64,
    pub last_recovery: Option<RecoveryInfo>,
    #[serde(skip)]
    pub(super) lag_retries: u32,
}

/// Config reloads, as status shows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub failures: u64,
    pub last_reload: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// A repository as the API shows it. Holds no credential: the URL is redacted.
#[derive(Debug, Clone, Serialize)]
pub struct RepoView {
    pub name: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub target: String,
    pub directory: String,
    pub path: String,
    pub state: State,
    pub pending: bool,
    #[serde(flatten)]
    pub status: RepoStatus,
}

fn view(repo: &Repo, entry: Option<&RepoEntry>) -> RepoView {
    RepoView {
        name: repo.name.clone(),
        url: repo.url.redacted().to_string(),
        target: repo.target.to_string(),
        directory: repo.directory.display().to_string(),
        path: repo.path.clone(),
        state: entry.map(|e| e.queue.state()).unwrap_or_default(),
        pending: entry.is_some_and(|e| e.queue.pending()),
        status: entry.map(|e| e.status.clone()).unwrap_or_default(),
    }
}

/// What status shows as a sync's error: git's, else the post-sync actions'.
pub(super) fn outcome_error(o: &Outcome) -> Option<ErrorInfo> {
    match (&o.result, &o.touch_error, &o.command) {
        (Err(e), _, _) => Some(error_info(e)),
        (Ok(_), Some(t), _) => Some(ErrorInfo {
            kind: "on_success".into(),
            message: t.clone(),
        }),
        (Ok(_), None, Some(Err(e))) => Some(ErrorInfo {
            kind: "on_success".into(),
            message: e.clone(),
        }),
        (Ok(_), None, Some(Ok(c))) if !c.success() => Some(ErrorInfo {
            kind: "on_success".into(),
            message: if c.timed_out {
                format!("on_success command timed out after {:?}", c.duration)
            } else {
                format!("on_success command exited with {:?}", c.code)
            },
        }),
        _ => None,
    }
}

impl Daemon {
    /// Status of every repository in config order, for the API.
    pub fn statuses(&self) -> Vec<RepoView> {
        let config = self.config();
        let book = self.book();
        config
            .repos
            .iter()
            .map(|r| view(r, book.repo(&r.name)))
            .collect()
    }

    pub fn status(&self, name: &str) -> Option<RepoView> {
        let config = self.config();
        let repo = config.repo(name)?;
        Some(view(repo, self.book().repo(name)))
    }

    /// Reload history, for status.
    pub fn reload_status(&self) -> ReloadStatus {
        self.book().reload.clone()
    }

    /// A one-line summary for systemd's STATUS=.
    pub fn summary_line(&self) -> String {
        let views = self.statuses();
        let failing = views
            .iter()
            .filter(|v| v.status.last_error.is_some())
            .count();
        let syncing = views.iter().filter(|v| v.state == State::Syncing).count();
        let retrying = views.iter().filter(|v| v.state == State::Backoff).count();
        let line = format!(
            "{} repos, {syncing} syncing, {retrying} retrying, {failing} failing",
            views.len()
        );
        match self.relay() {
            Some(fleet) => format!("{line}; fleet {}", fleet.summary()),
            None => line,
        }
    }
}
