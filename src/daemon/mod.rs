//! The domain: the [`Daemon`] handle over shared state, and what happens to a sync request from
//! the moment it is made until its outcome is recorded. Its parts:
//! - the book (`book.rs`): the state that changes as requests come and syncs finish, one entry
//!   per repository;
//! - [`deliver`](Daemon::deliver) (`deliver.rs`): a verified, parsed push → which repositories are
//!   queued, which ignored and why, or a duplicate;
//! - the workers (`worker.rs`): one task per busy repository, `workers` syncs at once, recording
//!   the outcome;
//! - status views (`status.rs`) for the API and systemd;
//! - `apply` (`apply.rs`): reload a config and reconcile queues, schedules and the pool;
//! - `relay` (`relay.rs`): the port a fleet of nodes plugs into, and the intake paths through it.
//!
//! The process lifecycle (listener, watcher, signals, shutdown) lives above it in [`crate::run`].

mod apply;
mod book;
mod deliver;
mod observe;
mod relay;
mod status;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, oneshot};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::queue::Action;
use book::{Book, RepoEntry};

pub use apply::ReloadSummary;
pub use deliver::{Delivered, wanted};
pub use observe::{DELIVERIES, DeliveryRecord, HISTORY, SyncRecord, Unready};
pub use relay::{BoxFuture, FleetWait, Handed, Relay, Relayed};
pub use status::{
    ErrorInfo, RecoveryAction, RecoveryInfo, ReloadStatus, RepoStatus, RepoView, RetryInfo,
    SyncReport,
};

/// Delivery ids remembered for dedupe.
pub const DEDUPE_CAPACITY: usize = 4096;
/// When a fetched tip lacks a webhook's `after` (a forge replica lagging), fetch again after
/// this delay, doubled each time, at most [`LAG_RETRIES`] times.
pub const LAG_DELAY: Duration = Duration::from_millis(500);
pub const LAG_RETRIES: u32 = 3;

/// What caused a sync request; shown in logs and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Webhook {
        delivery: Option<String>,
    },
    Api,
    Startup,
    Schedule,
    /// A re-fetch because the forge's replica had not caught up with its webhook.
    Lag,
    /// The repo was added, or its URL or ref changed, by a config reload.
    Reload,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Webhook { delivery: Some(id) } => write!(f, "webhook {id}"),
            Trigger::Webhook { delivery: None } => f.write_str("webhook"),
            Trigger::Api => f.write_str("api"),
            Trigger::Startup => f.write_str("startup"),
            Trigger::Schedule => f.write_str("schedule"),
            Trigger::Lag => f.write_str("replica-lag retry"),
            Trigger::Reload => f.write_str("reload"),
        }
    }
}

/// Someone waiting for the sync that covers request number `seq`.
enum Waiter {
    Delivery(String),
    Report(oneshot::Sender<SyncReport>),
}

struct Shared {
    config: RwLock<Arc<Config>>,
    book: Mutex<Book>,
    /// The status page's list of webhook requests: its own lock, so recording one (every
    /// request) never waits for the book.
    deliveries: Mutex<VecDeque<DeliveryRecord>>,
    workers: Arc<Semaphore>,
    /// False once shutdown began: webhooks and the API answer 503.
    intake: AtomicBool,
    /// Set at shutdown: waits for a retry end early.
    stop: tokio::sync::watch::Sender<bool>,
    active: AtomicUsize,
    idle: Notify,
    /// Where `POST /api/reload` asks for a reload (the run loop's channel, as SIGHUP does).
    reload_requests: Mutex<Option<tokio::sync::mpsc::Sender<&'static str>>>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    /// The fleet this node belongs to, set by `run` (see `relay.rs`).
    relay: RwLock<Option<Arc<dyn Relay>>>,
    /// Counts recorded sync outcomes; see [`Daemon::sync_events`].
    synced: tokio::sync::watch::Sender<u64>,
}

/// Why a sync request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    UnknownRepo,
    ShuttingDown,
}

/// A handle on the running daemon; clones share it.
#[derive(Clone)]
pub struct Daemon(Arc<Shared>);

impl Daemon {
    pub fn new(config: Config) -> Daemon {
        Daemon::with_metrics(config, Arc::new(Metrics::new(true)))
    }

    /// A daemon recording into `metrics`.
    pub fn with_metrics(config: Config, metrics: Arc<Metrics>) -> Daemon {
        crate::sync::configure(&config);
        let book = Book::new(config.repos.iter().map(|r| r.name.as_str()));
        Daemon(Arc::new(Shared {
            workers: Arc::new(Semaphore::new(config.workers)),
            config: RwLock::new(Arc::new(config)),
            book: Mutex::new(book),
            deliveries: Mutex::new(VecDeque::with_capacity(DELIVERIES)),
            intake: AtomicBool::new(true),
            stop: tokio::sync::watch::Sender::new(false),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            reload_requests: Mutex::new(None),
            notifier: Notifier::new(metrics.clone()),
            metrics,
            relay: RwLock::new(None),
            synced: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        match self.0.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `config` in force (one write; readers hold the old `Arc` until they are done).
    fn set_config(&self, config: Config) {
        match self.0.config.write() {
            Ok(mut c) => *c = Arc::new(config),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.0.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn intake_open(&self) -> bool {
        self.0.intake.load(Ordering::SeqCst)
    }

    /// Reads each checkout's current commit so status shows it before the first sync, and a
    /// sync cut short while it wrote a tree (as `last_error` of kind `interrupted`: the files
    /// are not HEAD's until the next sync repairs them).
    pub async fn load_commits(&self) {
        let dirs: Vec<(String, std::path::PathBuf)> = self
            .config()
            .repos
            .iter()
            .map(|r| (r.name.clone(), r.directory.clone()))
            .collect();
        let found = tokio::task::spawn_blocking(move || {
            dirs.into_iter()
                .map(|(n, d)| (n, crate::sync::git::checkout_state(&d)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut book = self.book();
        for (name, state) in found {
            let Some(entry) = book.repo_mut(&name) else {
                continue; // left the config meanwhile
            };
            let st = &mut entry.status;
            st.commit = state.commit;
            if let Some(message) = state.interrupted {
                tracing::warn!(repo = %name, "{message}");
                st.last_error = Some(ErrorInfo {
                    kind: "interrupted".into(),
                    message,
                });
            }
        }
    }

    /// Queues a sync of `name`. `hint` is a commit the remote should have (a webhook's
    /// `after`). With `report`, the returned receiver gets the outcome of the sync that covers
    /// this request.
    pub fn request_sync(
        &self,
        name: &str,
        trigger: Trigger,
        hint: Option<&str>,
        report: bool,
    ) -> Result<Option<oneshot::Receiver<SyncReport>>, RequestError> {
        self.enqueue(name, trigger, hint, report, false)
    }

    /// Queues a forced sync of `name`: fetch, and rewrite the tree even when HEAD is at the tip
    /// (the repair path). Coalesces like any request, but the sync that covers it is forced.
    pub fn request_forced_sync(
        &self,
        name: &str,
        trigger: Trigger,
        report: bool,
    ) -> Result<Option<oneshot::Receiver<SyncReport>>, RequestError> {
        self.enqueue(name, trigger, None, report, true)
    }

    fn enqueue(
        &self,
        name: &str,
        trigger: Trigger,
        hint: Option<&str>,
        report: bool,
        force: bool,
    ) -> Result<Option<oneshot::Receiver<SyncReport>>, RequestError> {
        if !self.intake_open() {
            return Err(RequestError::ShuttingDown);
        }
        if self.config().repo(name).is_none() {
            return Err(RequestError::UnknownRepo);
        }
        let mut book = self.book();
        let seq = book.next_request();
        let Some(entry) = book.repo_mut(name) else {
            return Err(RequestError::UnknownRepo);
        };
        let action = entry.queue.request(seq, hint);
        if force {
            entry.queue.force();
        }
        if let Trigger::Webhook { delivery } = &trigger {
            if let Some(id) = delivery {
                entry.waiters.push((seq, Waiter::Delivery(id.clone())));
            }
            entry.note_push(seq, std::time::Instant::now());
        }
        let rx = report.then(|| {
            let (tx, rx) = oneshot::channel();
            entry.waiters.push((seq, Waiter::Report(tx)));
            rx
        });
        entry.trigger = Some(trigger.clone());
        drop(book);
        tracing::debug!(repo = name, %trigger, seq, force, coalesced = (action == Action::Coalesced), "sync requested");
        if action == Action::Start {
            self.spawn_worker(name);
        }
        Ok(rx)
    }

    /// The remote ref last followed, for matching pushes to a repo that tracks the default branch.
    pub fn remote_ref(&self, name: &str) -> Option<String> {
        self.book()
            .repo(name)
            .and_then(|e| e.status.remote_ref.clone())
    }

    /// Where [`Daemon::request_reload`] sends: the run loop's reload channel.
    pub fn set_reload_channel(&self, tx: tokio::sync::mpsc::Sender<&'static str>) {
        *self
            .0
            .reload_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Asks the run loop to reload the config (as SIGHUP does). False when nothing listens.
    pub fn request_reload(&self) -> bool {
        let tx = self
            .0
            .reload_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tx.is_some_and(|tx| tx.try_send("api").is_ok())
    }

    /// Stops intake (webhooks and the API answer 503) and ends retry back-off early.
    pub fn close_intake(&self) {
        self.0.intake.store(false, Ordering::SeqCst);
        self.0.stop.send_replace(true);
        for entry in self.book().entries_mut() {
            if let Some(schedule) = entry.schedule.take() {
                schedule.stop();
            }
        }
    }

    /// Waits until no sync runs, at most `limit`. Returns true when all finished.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.0.idle.notified();
            if self.0.active.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.0.active.load(Ordering::SeqCst) == 0;
            }
        }
    }
}
