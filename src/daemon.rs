//! The daemon: shared state behind a cheap-to-clone handle, the sync queue's workers (one task
//! per busy repository, `workers` syncs at once), status, start-up and graceful shutdown.
//! `run(config, listener, shutdown)` wires it to the HTTP server so tests start it on port 0.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::config::{Config, Repo};
use crate::queue::{Action, Coalescer, Dedupe, Delivery, Started, State};
use crate::sync::{self, ErrorKind, Outcome, SyncOptions};

/// How long shutdown waits for running syncs before exiting anyway (systemd's default stop
/// timeout is 90 s; a fetch that takes longer is retried after the restart).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
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

/// A failed sync as status shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
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
    /// Syncs that fetched from the remote (the rest were answered from the checkout).
    pub fetches: u64,
    /// When the schedule next enqueues a sync (before jitter).
    pub next_run: Option<DateTime<Utc>>,
    #[serde(skip)]
    lag_retries: u32,
}

/// Someone waiting for the sync that covers request number `seq`.
enum Waiter {
    Delivery(String),
    Report(oneshot::Sender<SyncReport>),
}

struct Book {
    queue: Coalescer,
    status: HashMap<String, RepoStatus>,
    waiters: HashMap<String, Vec<(u64, Waiter)>>,
    dedupe: Dedupe,
    triggers: HashMap<String, String>,
    reload: ReloadStatus,
    /// Running schedule loops: the schedule and the sender that stops its loop.
    schedules: HashMap<String, (crate::config::Schedule, tokio::sync::watch::Sender<bool>)>,
}

/// Config reloads, as status shows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub failures: u64,
    pub last_reload: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// The listen address changed: the caller binds the new one and retires the old.
    pub listen_changed: bool,
}

struct Shared {
    config: RwLock<Arc<Config>>,
    book: Mutex<Book>,
    workers: Arc<Semaphore>,
    /// False once shutdown began: webhooks and the API answer 503.
    intake: AtomicBool,
    /// Set at shutdown: retry back-off sleeps end early.
    stopping: AtomicBool,
    active: AtomicUsize,
    idle: Notify,
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

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Daemon {
    pub fn new(config: Config) -> Daemon {
        let book = Book {
            queue: Coalescer::default(),
            status: HashMap::new(),
            waiters: HashMap::new(),
            dedupe: Dedupe::new(DEDUPE_CAPACITY),
            triggers: HashMap::new(),
            reload: ReloadStatus::default(),
            schedules: HashMap::new(),
        };
        Daemon(Arc::new(Shared {
            workers: Arc::new(Semaphore::new(config.workers)),
            config: RwLock::new(Arc::new(config)),
            book: Mutex::new(book),
            intake: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        }))
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        match self.0.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.0.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn intake_open(&self) -> bool {
        self.0.intake.load(Ordering::SeqCst)
    }

    /// Reads each checkout's current commit so status shows it before the first sync.
    pub async fn load_commits(&self) {
        let dirs: Vec<(String, std::path::PathBuf)> = self
            .config()
            .repos
            .iter()
            .map(|r| (r.name.clone(), r.directory.clone()))
            .collect();
        let found = tokio::task::spawn_blocking(move || {
            dirs.into_iter()
                .map(|(n, d)| (n, sync::git::current_commit(&d)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut book = self.book();
        for (name, commit) in found {
            book.status.entry(name).or_default().commit = commit;
        }
    }

    /// Admits a webhook delivery id; `Some` when it was seen before (and did not fail).
    pub fn admit_delivery(&self, id: &str) -> Option<Delivery> {
        self.book().dedupe.admit(id)
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
        if !self.intake_open() {
            return Err(RequestError::ShuttingDown);
        }
        if self.config().repo(name).is_none() {
            return Err(RequestError::UnknownRepo);
        }
        let mut book = self.book();
        let (action, seq) = book.queue.request(name, hint);
        let waiters = book.waiters.entry(name.to_string()).or_default();
        if let Trigger::Webhook { delivery: Some(id) } = &trigger {
            waiters.push((seq, Waiter::Delivery(id.clone())));
        }
        let rx = report.then(|| {
            let (tx, rx) = oneshot::channel();
            waiters.push((seq, Waiter::Report(tx)));
            rx
        });
        book.triggers.insert(name.to_string(), trigger.to_string());
        drop(book);
        tracing::debug!(repo = name, %trigger, seq, coalesced = (action == Action::Coalesced), "sync requested");
        if action == Action::Start {
            let d = self.clone();
            let name = name.to_string();
            d.0.active.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                d.worker(&name).await;
                if d.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
                    d.0.idle.notify_waiters();
                }
            });
        }
        Ok(rx)
    }

    /// Runs syncs of `name` until no request is pending.
    async fn worker(&self, name: &str) {
        loop {
            let Ok(permit) = self.0.workers.clone().acquire_owned().await else {
                return;
            };
            let Some(Started { hints, covers }) = self.book().queue.start(name) else {
                return;
            };
            let Some(repo) = self.config().repo(name).cloned() else {
                self.book().queue.remove(name);
                return;
            };
            let trigger = self.book().triggers.get(name).cloned().unwrap_or_default();
            self.book()
                .status
                .entry(name.to_string())
                .or_default()
                .last_attempt = Some(now());
            let shared = self.0.clone();
            let opts = SyncOptions { hints };
            let repo2 = repo.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                sync::sync_with_retry(&repo2, &opts, |d| interruptible_sleep(&shared.stopping, d))
            })
            .await;
            drop(permit);
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => Outcome {
                    result: Err(sync::SyncError {
                        kind: ErrorKind::Other,
                        message: format!("sync task failed: {e}"),
                    }),
                    attempts: 1,
                    duration: Duration::ZERO,
                    command: None,
                    touch_error: None,
                },
            };
            self.record(&repo, &trigger, covers, &outcome);
            if !self.book().queue.finish(name) {
                return;
            }
        }
    }

    /// Updates status, logs the sync line, answers waiters and schedules a replica-lag retry.
    fn record(&self, repo: &Repo, trigger: &str, covers: u64, o: &Outcome) {
        let ms = o.duration.as_millis() as u64;
        let report = SyncReport {
            name: repo.name.clone(),
            ok: o.ok(),
            changed: o.result.as_ref().is_ok_and(|s| s.changed()),
            old: o.result.as_ref().ok().and_then(|s| s.old.clone()),
            commit: o.result.as_ref().ok().map(|s| s.new.clone()),
            fetched: o.result.as_ref().is_ok_and(|s| s.fetched),
            attempts: o.attempts,
            duration_ms: ms,
            error: outcome_error(o),
        };
        match &o.result {
            Ok(s) => tracing::info!(
                repo = %repo.name,
                r#ref = %s.remote_ref,
                old = %s.old.as_deref().unwrap_or("none"),
                new = %s.new,
                changed = s.changed(),
                fetched = s.fetched,
                duration_ms = ms,
                trigger,
                result = if o.ok() { "ok" } else { "action failed" },
                "sync"
            ),
            Err(e) => tracing::warn!(
                repo = %repo.name,
                r#ref = %repo.target,
                duration_ms = ms,
                attempts = o.attempts,
                trigger,
                result = "failed",
                kind = e.kind.as_str(),
                error = %e.message,
                "sync"
            ),
        }
        let mut lag_retry = None;
        let mut book = self.book();
        let st = book.status.entry(repo.name.clone()).or_default();
        st.syncs += 1;
        st.last_duration_ms = Some(ms);
        st.last_trigger = Some(trigger.to_string());
        if let Ok(s) = &o.result {
            st.commit = Some(s.new.clone());
            if s.fetched {
                st.remote_ref = Some(s.remote_ref.clone());
            }
            st.fetches += u64::from(s.fetched);
            if s.missing_hints.is_empty() {
                st.lag_retries = 0;
            } else if st.lag_retries < LAG_RETRIES {
                st.lag_retries += 1;
                lag_retry = Some((st.lag_retries, s.missing_hints[0].clone()));
            }
        }
        if o.ok() {
            st.last_success = Some(now());
            st.last_error = None;
        } else {
            st.failures += 1;
            st.last_error = report.error.clone();
        }
        let waiters = book.waiters.remove(&repo.name).unwrap_or_default();
        let (done, later): (Vec<_>, Vec<_>) =
            waiters.into_iter().partition(|(seq, _)| *seq <= covers);
        if !later.is_empty() {
            book.waiters.insert(repo.name.clone(), later);
        }
        for (_, w) in done {
            match w {
                Waiter::Delivery(id) => {
                    book.dedupe.settle(&id, report.ok);
                }
                Waiter::Report(tx) => {
                    let _ = tx.send(report.clone());
                }
            }
        }
        drop(book);
        if let Some((n, hint)) = lag_retry {
            let d = self.clone();
            let name = repo.name.clone();
            let delay = LAG_DELAY * 2u32.pow(n - 1);
            tracing::info!(repo = %name, missing = %hint, retry_in = ?delay, "fetched tip lacks the pushed commit (forge replica lagging?); fetching again");
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = d.request_sync(&name, Trigger::Lag, Some(&hint), false);
            });
        }
    }

    /// Status of every repository in config order, for the API.
    pub fn statuses(&self) -> Vec<RepoView> {
        let config = self.config();
        let book = self.book();
        config.repos.iter().map(|r| view(r, &book)).collect()
    }

    pub fn status(&self, name: &str) -> Option<RepoView> {
        let config = self.config();
        let repo = config.repo(name)?;
        Some(view(repo, &self.book()))
    }

    /// The remote ref last followed, for matching pushes to a repo that tracks the default branch.
    pub fn remote_ref(&self, name: &str) -> Option<String> {
        self.book()
            .status
            .get(name)
            .and_then(|s| s.remote_ref.clone())
    }

    /// Reload history, for status.
    pub fn reload_status(&self) -> ReloadStatus {
        self.book().reload.clone()
    }

    /// Starts, restarts or stops schedule loops so they match the config in force.
    pub fn sync_schedules(&self) {
        let config = self.config();
        let mut book = self.book();
        let wanted: HashMap<&str, &crate::config::Schedule> = config
            .repos
            .iter()
            .filter_map(|r| r.schedule.as_ref().map(|s| (r.name.as_str(), s)))
            .collect();
        let mut stopped = Vec::new();
        book.schedules.retain(|name, (schedule, stop)| {
            let keep = wanted.get(name.as_str()).is_some_and(|w| *w == schedule);
            if !keep {
                let _ = stop.send(true);
                stopped.push(name.clone());
            }
            keep
        });
        for name in stopped {
            if let Some(st) = book.status.get_mut(&name) {
                st.next_run = None;
            }
        }
        for (name, schedule) in wanted {
            if book.schedules.contains_key(name) {
                continue;
            }
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            book.schedules
                .insert(name.to_string(), (schedule.clone(), stop_tx));
            let (d1, d2, n1, n2) = (
                self.clone(),
                self.clone(),
                name.to_string(),
                name.to_string(),
            );
            tokio::spawn(crate::schedule::tick_loop(
                schedule.clone(),
                std::sync::Arc::new(crate::schedule::SystemClock),
                stop_rx,
                move |next| d1.book().status.entry(n1.clone()).or_default().next_run = next,
                move || {
                    if let Err(e) = d2.request_sync(&n2, Trigger::Schedule, None, false) {
                        tracing::debug!(repo = %n2, error = ?e, "scheduled sync not queued");
                    }
                },
            ));
        }
    }

    /// Re-reads the config file (and the secret files it names). An invalid config is logged
    /// with file and line, counted, and changes nothing.
    pub async fn reload(&self) -> Result<ReloadSummary, String> {
        let Some(path) = self.config().source.clone() else {
            return Err("the config was not loaded from a file".into());
        };
        let loaded = tokio::task::spawn_blocking(move || crate::config::load_file(&path)).await;
        let result = match loaded {
            Ok(Ok(new)) => Ok(self.apply(new)),
            Ok(Err(e)) => {
                for p in e.problems() {
                    tracing::error!(problem = %p, "config reload refused; the running config stays");
                }
                if e.problems().is_empty() {
                    tracing::error!(error = %e, "config reload refused; the running config stays");
                }
                Err(e.to_string())
            }
            Err(e) => Err(format!("reload task failed: {e}")),
        };
        let mut book = self.book();
        book.reload.last_reload = Some(now());
        match &result {
            Ok(_) => {
                book.reload.reloads += 1;
                book.reload.last_error = None;
            }
            Err(e) => {
                book.reload.failures += 1;
                book.reload.last_error = Some(e.clone());
            }
        }
        result
    }

    /// Puts `new` in force at once: removed repos stop receiving webhooks and ticks (their
    /// directories stay); added repos get an initial sync (with `initialise`); repos whose URL,
    /// ref, remote or directory changed resync; `workers` resizes the pool.
    pub fn apply(&self, new: Config) -> ReloadSummary {
        let old = self.config();
        let mut summary = ReloadSummary {
            listen_changed: old.listen != new.listen,
            ..Default::default()
        };
        let mut resync = Vec::new();
        for r in &new.repos {
            match old.repo(&r.name) {
                None => {
                    summary.added.push(r.name.clone());
                    if new.initialise {
                        resync.push(r.name.clone());
                    }
                }
                Some(o) if o != r => {
                    summary.changed.push(r.name.clone());
                    if o.url != r.url
                        || o.target != r.target
                        || o.remote != r.remote
                        || o.directory != r.directory
                    {
                        resync.push(r.name.clone());
                    }
                }
                Some(_) => {}
            }
        }
        summary.removed = old
            .repos
            .iter()
            .filter(|o| new.repo(&o.name).is_none())
            .map(|o| o.name.clone())
            .collect();
        if new.workers > old.workers {
            self.0.workers.add_permits(new.workers - old.workers);
        } else if new.workers < old.workers {
            // Take the surplus permits as they come free and drop them.
            let surplus = (old.workers - new.workers) as u32;
            let sem = self.0.workers.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        match self.0.config.write() {
            Ok(mut c) => *c = Arc::new(new),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
        }
        {
            let mut book = self.book();
            for name in &summary.removed {
                book.queue.remove(name);
                book.status.remove(name);
                book.waiters.remove(name);
            }
        }
        self.sync_schedules();
        for name in &resync {
            let _ = self.request_sync(name, Trigger::Reload, None, false);
        }
        tracing::info!(added = ?summary.added, removed = ?summary.removed, changed = ?summary.changed, listen_changed = summary.listen_changed, "config reloaded");
        summary
    }

    /// Puts `listen` back after the new address could not be bound, and counts the reload as
    /// failed, so the status says so and the next reload tries the new address again.
    pub fn restore_listen(&self, listen: crate::config::ListenAddr, why: String) {
        let mut config = (*self.config()).clone();
        config.listen = listen;
        match self.0.config.write() {
            Ok(mut c) => *c = Arc::new(config),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
        }
        let mut book = self.book();
        book.reload.reloads = book.reload.reloads.saturating_sub(1);
        book.reload.failures += 1;
        book.reload.last_error = Some(why);
    }

    /// A one-line summary for systemd's STATUS=.
    pub fn summary_line(&self) -> String {
        let views = self.statuses();
        let failing = views
            .iter()
            .filter(|v| v.status.last_error.is_some())
            .count();
        let syncing = views.iter().filter(|v| v.state == State::Syncing).count();
        format!(
            "{} repos, {syncing} syncing, {failing} failing",
            views.len()
        )
    }

    /// Stops intake (webhooks and the API answer 503) and ends retry back-off early.
    pub fn close_intake(&self) {
        self.0.intake.store(false, Ordering::SeqCst);
        self.0.stopping.store(true, Ordering::SeqCst);
        for (_, (_, stop)) in self.book().schedules.drain() {
            let _ = stop.send(true);
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

fn outcome_error(o: &Outcome) -> Option<ErrorInfo> {
    match (&o.result, &o.touch_error, &o.command) {
        (Err(e), _, _) => Some(ErrorInfo {
            kind: e.kind.as_str().into(),
            message: e.message.clone(),
        }),
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

fn view(repo: &Repo, book: &Book) -> RepoView {
    RepoView {
        name: repo.name.clone(),
        url: crate::url::redact(&repo.url),
        target: repo.target.to_string(),
        directory: repo.directory.display().to_string(),
        path: repo.path.clone(),
        state: book.queue.state(&repo.name),
        pending: book.queue.pending(&repo.name),
        status: book.status.get(&repo.name).cloned().unwrap_or_default(),
    }
}

/// Sleeps `d` in short steps; returns false as soon as shutdown began.
fn interruptible_sleep(stopping: &AtomicBool, d: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if stopping.load(Ordering::SeqCst) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !stopping.load(Ordering::SeqCst)
}

/// A running HTTP server on one listener.
struct Server {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    fn start(listener: tokio::net::TcpListener, daemon: &Daemon) -> Server {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(crate::server::serve(listener, daemon.clone(), stop_rx));
        Server { stop, task }
    }

    /// Stops accepting; requests in flight finish.
    async fn retire(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How long the config may keep changing before a reload happens (editors write in bursts).
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(300);

/// Runs the daemon on `listener` until `shutdown` resolves: start-up syncs (with `initialise`),
/// schedules, the HTTP server, hot reload (file watcher and SIGHUP), systemd notifications,
/// then a graceful stop — intake answers 503, running syncs get [`SHUTDOWN_GRACE`] to finish,
/// connections close.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_on(config, listener, false, shutdown).await
}

/// [`run`], where `socket_activated` says the listener came from systemd: then `listen` is
/// ignored, also when a reload changes it.
pub async fn run_on(
    config: Config,
    listener: tokio::net::TcpListener,
    socket_activated: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<&'static str>(16);
    crate::reload::on_sighup(reload_tx.clone());
    let daemon = Daemon::new(config);
    daemon.load_commits().await;
    let addr = listener.local_addr()?;
    let config = daemon.config();
    // Watching starts before anything is served or synced: an edit made once the daemon answers
    // (or once a start-up sync finished) is never missed.
    let mut watcher = crate::reload::Watcher::start(&config, reload_tx);
    let mut server = Server::start(listener, &daemon);
    tracing::info!(%addr, repos = config.repos.len(), workers = config.workers, "hookmirror listening");
    daemon.sync_schedules();
    if config.initialise {
        for r in &config.repos {
            let _ = daemon.request_sync(&r.name, Trigger::Startup, None, false);
        }
    }

    crate::systemd::ready(&format!("listening on {addr}; {}", daemon.summary_line()));
    let mut watchdog = crate::systemd::watchdog_interval().map(tokio::time::interval);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = async { match watchdog.as_mut() { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                crate::systemd::watchdog();
                crate::systemd::status(&daemon.summary_line());
            }
            Some(why) = reload_rx.recv() => {
                // Debounce: wait until the changes stop.
                while let Ok(Some(_)) = tokio::time::timeout(RELOAD_DEBOUNCE, reload_rx.recv()).await {}
                tracing::info!(cause = why, "reloading the config");
                crate::systemd::reloading();
                let before = daemon.config().listen.clone();
                if let Ok(summary) = daemon.reload().await {
                    let new = daemon.config();
                    if let Some(w) = watcher.as_mut() {
                        w.rewatch(&new);
                    }
                    if summary.listen_changed && socket_activated {
                        tracing::warn!(listen = %new.listen, "`listen` changed, but the socket comes from systemd (hookmirror.socket): change ListenStream= there");
                    } else if summary.listen_changed {
                        // Bind the new address before releasing the old one.
                        match tokio::net::TcpListener::bind((new.listen.host.as_str(), new.listen.port)).await {
                            Ok(l) => {
                                let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                                let old = std::mem::replace(&mut server, Server::start(l, &daemon));
                                old.retire().await;
                                tracing::info!(%addr, "now listening on the new address");
                            }
                            Err(e) => {
                                tracing::error!(listen = %new.listen, error = %e, "cannot bind the new listen address; still serving on the old one");
                                daemon.restore_listen(before, format!("cannot listen on {}: {e}", new.listen));
                            }
                        }
                    }
                }
                crate::systemd::reloaded(&daemon.summary_line());
            }
        }
    }
    tracing::info!("shutting down: intake closed, waiting for running syncs");
    crate::systemd::stopping();
    daemon.close_intake();
    if !daemon.drain(SHUTDOWN_GRACE).await {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "syncs still running at shutdown; exiting anyway");
    }
    server.retire().await;
    tracing::info!("stopped");
    Ok(())
}
