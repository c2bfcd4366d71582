//! The sync workers: one task per busy repository runs its syncs one after another on a
//! blocking thread (at most `workers` at once across repositories), then records each outcome:
//! status, the sync log line, waiters and dedupe, and a re-fetch when a forge replica lags.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;

use super::status::outcome_error;
use super::{Daemon, LAG_DELAY, LAG_RETRIES, SyncReport, Trigger, Waiter};
use crate::config::Repo;
use crate::queue::Started;
use crate::sync::{self, ErrorKind, Outcome, SyncOptions};

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
            let Some(Started {
                hints,
                covers,
                force,
            }) = self.book().queue.start(name)
            else {
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
                .last_attempt = Some(Utc::now());
            let shared = self.0.clone();
            let opts = SyncOptions { hints, force };
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
            st.last_success = Some(Utc::now());
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
