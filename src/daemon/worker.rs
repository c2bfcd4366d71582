//! The sync workers: one task per busy repository runs its syncs one after another, each attempt
//! on a blocking thread holding one of the `workers` slots, and lets go of the slot while a
//! failed attempt waits for its retry (requests arriving meanwhile ride along with it). Then it
//! records each outcome: status, the sync log line, recovery actions, waiters and dedupe, and a
//! re-fetch when a forge replica lags.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::OwnedSemaphorePermit;

use super::status::{
    RecoveryAction, RecoveryInfo, RepoStatus, RetryInfo, error_info, outcome_error,
};
use super::{Daemon, LAG_DELAY, LAG_RETRIES, SyncReport, Trigger, Waiter};
use crate::config::Repo;
use crate::queue::Started;
use crate::sync::backoff::{self, Next};
use crate::sync::{self, Attempt, ErrorKind, Outcome, Recovery, SyncError, SyncOptions};

impl Daemon {
    /// Starts the task that works through `name`'s requests; counted for [`Daemon::drain`].
    pub(super) fn spawn_worker(&self, name: &str) {
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

    /// Runs syncs of `name` until no request is pending.
    async fn worker(&self, name: &str) {
        loop {
            let Ok(permit) = self.0.workers.clone().acquire_owned().await else {
                return;
            };
            let Some((started, trigger)) = self.start(name) else {
                return;
            };
            // `None`: the repository left the config, and its entry with it.
            let Some((repo, covers, outcome)) = self.sync(name, started, permit).await else {
                return;
            };
            self.record(&repo, trigger.as_ref(), covers, &outcome);
            let more = self.book().repo_mut(name).is_some_and(|e| e.queue.finish());
            if !more {
                return;
            }
        }
    }

    /// Takes `name`'s pending requests for a sync that starts now, and what caused the newest;
    /// `None` when nothing is pending (or the repository left the config).
    fn start(&self, name: &str) -> Option<(Started, Option<Trigger>)> {
        let mut book = self.book();
        let entry = book.repo_mut(name)?;
        let started = entry.queue.start()?;
        Some((started, entry.trigger.clone()))
    }

    /// Runs attempts at `name`'s sync until one succeeds or [`backoff::next`] gives up. Each
    /// attempt holds `permit` (a worker slot, taken again for every retry); the wait between
    /// attempts holds none. Each attempt uses the config in force when it starts. Returns the
    /// repo as last synced, the request number the sync answers, and the outcome; `None` when
    /// the repository left the config.
    async fn sync(
        &self,
        name: &str,
        mut started: Started,
        permit: OwnedSemaphorePermit,
    ) -> Option<(Repo, u64, Outcome)> {
        let start = Instant::now();
        let mut permit = Some(permit);
        let mut attempts = 1;
        let mut busy_since: Option<Instant> = None;
        loop {
            let repo = self.config().repo(name).cloned()?;
            self.note_attempt(name);
            let opts = SyncOptions {
                hints: started.hints.clone(),
                force: started.force,
                no_wait: true,
            };
            let a = run_attempt(&repo, opts).await;
            drop(permit.take());
            self.note_recovery(name, &a.recovered);
            let done = |a: Attempt, attempts| {
                let outcome = Outcome::new(a, attempts, start.elapsed(), Vec::new());
                Some((repo.clone(), started.covers, outcome))
            };
            let Err(e) = &a.result else {
                return done(a, attempts);
            };
            let busy_for = match e.kind {
                ErrorKind::Busy => busy_since.get_or_insert_with(Instant::now).elapsed(),
                _ => Duration::ZERO,
            };
            let Next::Retry { after, counts } =
                backoff::next(e.kind, attempts, busy_for, &repo, fastrand::f64())
            else {
                return done(a, attempts);
            };
            if counts {
                tracing::warn!(repo = %name, attempt = attempts, kind = e.kind.as_str(), error = %e.message, retry_in = ?after, "sync failed, retrying; the worker is free meanwhile");
            } else {
                tracing::debug!(repo = %name, error = %e.message, retry_in = ?after, "checkout locked by another process; trying again");
            }
            self.back_off(name, attempts, after, e);
            if !self.pause(after).await {
                return done(a, attempts);
            }
            let Ok(p) = self.0.workers.clone().acquire_owned().await else {
                return done(a, attempts);
            };
            permit = Some(p);
            self.resume(name, &mut started);
            attempts += u32::from(counts);
        }
    }

    /// Shows in `name`'s status when its sync's attempt started.
    fn note_attempt(&self, name: &str) {
        if let Some(entry) = self.book().repo_mut(name) {
            entry.status.last_attempt = Some(Utc::now());
        }
    }

    /// `name`'s sync in backoff tries again: requests that arrived meanwhile ride along in
    /// `started`.
    fn resume(&self, name: &str, started: &mut Started) {
        if let Some(entry) = self.book().repo_mut(name) {
            entry.queue.retry(started);
            entry.status.retry = None;
        }
    }

    /// Shows that `name`'s sync failed attempt number `attempt` and waits `after` for the next.
    fn back_off(&self, name: &str, attempt: u32, after: Duration, e: &SyncError) {
        let mut book = self.book();
        let Some(entry) = book.repo_mut(name) else {
            return;
        };
        entry.queue.back_off();
        let next = Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
        entry.status.retry = Some(RetryInfo {
            attempt,
            next_attempt: next,
            error: error_info(e),
        });
    }

    /// Waits `d`; false as soon as shutdown begins.
    async fn pause(&self, d: Duration) -> bool {
        let mut stop = self.0.stop.subscribe();
        if *stop.borrow_and_update() {
            return false;
        }
        let stopped = tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        !stopped && !*self.0.stop.borrow()
    }

    /// Shows what recovery did to `name`'s checkout: a WARN line, in status a count and the last
    /// actions, and `hookmirror_recovery_actions_total`.
    fn note_recovery(&self, name: &str, done: &[Recovery]) {
        if done.is_empty() {
            return;
        }
        let actions: Vec<String> = done.iter().map(|r| r.to_string()).collect();
        let kinds: Vec<&str> = done.iter().map(|r| r.kind()).collect();
        tracing::warn!(repo = %name, kinds = %kinds.join(","), actions = %actions.join("; "), "recovered the checkout");
        self.0.metrics.recovered(name, done.len() as u64);
        let mut book = self.book();
        let Some(entry) = book.repo_mut(name) else {
            return;
        };
        let st = &mut entry.status;
        st.recoveries += done.len() as u64;
        st.last_recovery = Some(RecoveryInfo {
            at: Utc::now(),
            actions: done
                .iter()
                .zip(actions)
                .map(|(r, message)| RecoveryAction {
                    kind: r.kind().to_string(),
                    message,
                })
                .collect(),
        });
    }

    /// Updates status, logs the sync line, answers waiters and schedules a replica-lag retry.
    fn record(&self, repo: &Repo, cause: Option<&Trigger>, covers: u64, o: &Outcome) {
        let trigger = cause.map(Trigger::to_string).unwrap_or_default();
        let trigger = trigger.as_str();
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
        let mut book = self.book();
        // A repository that left the config while it synced has no entry: nothing to record.
        let (lag_retry, answered) = match book.repo_mut(&repo.name) {
            Some(entry) => (
                note_outcome(&mut entry.status, o, &report, trigger, ms),
                entry.answered(covers),
            ),
            None => (None, Vec::new()),
        };
        for w in answered {
            match w {
                Waiter::Delivery(id) => book.dedupe.settle(&id, report.ok),
                Waiter::Report(tx) => {
                    let _ = tx.send(report.clone());
                }
            }
        }
        drop(book);
        self.observe(repo, cause, covers, o, &report, lag_retry.is_some());
        self.0.synced.send_modify(|n| *n += 1);
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
}

/// Puts a finished sync into its repository's status. Returns the replica-lag retry to schedule
/// (its number and the missing commit), if the fetched tip lacked a pushed commit.
fn note_outcome(
    st: &mut RepoStatus,
    o: &Outcome,
    report: &SyncReport,
    trigger: &str,
    ms: u64,
) -> Option<(u32, String)> {
    let mut lag_retry = None;
    st.syncs += 1;
    st.retry = None;
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
        st.last_success = Some(Utc::now());
        st.last_error = None;
    } else {
        st.failures += 1;
        st.last_error = report.error.clone();
    }
    lag_retry
}

/// One attempt of `repo`'s sync on a blocking thread.
async fn run_attempt(repo: &Repo, opts: SyncOptions) -> Attempt {
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || sync::attempt(&repo, &opts))
        .await
        .unwrap_or_else(|e| Attempt {
            result: Err(SyncError {
                kind: ErrorKind::Other,
                message: format!("sync task failed: {e}"),
            }),
            recovered: Vec::new(),
            command: None,
            touch_error: None,
        })
}
