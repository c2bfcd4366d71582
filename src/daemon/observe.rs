//! What a finished sync tells the outside, beside status: the metrics, the per-repository
//! history the status page and `/api/repos/{name}/history` show, push → synced times, the
//! failure streak `/readyz` reads, and the notifications it sets off. Also the log of recent
//! webhook deliveries the server records, and readiness.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::status::{ErrorInfo, RepoStatus};
use super::{Daemon, SyncReport, Trigger};
use crate::config::{NotifyTarget, Repo};
use crate::metrics::{SyncResult, SyncSample, TriggerKind, WebhookResult};
use crate::notify::{SyncEvent, events_for};
use crate::queue::State;
use crate::sync::Outcome;

/// Syncs kept per repository for the history (the status page charts them all).
pub const HISTORY: usize = 50;
/// Webhook deliveries kept for the status page.
pub const DELIVERIES: usize = 100;
/// Delivery ids come from the request: longer ones are cut on the status page.
const MAX_DELIVERY_ID: usize = 100;

/// One finished sync, as the history shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SyncRecord {
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `updated`, `unchanged` or `failed`.
    pub result: &'static str,
    pub trigger: &'static str,
    pub commit: Option<String>,
    pub error: Option<ErrorInfo>,
}

/// One request to a webhook path, as the status page lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeliveryRecord {
    pub at: DateTime<Utc>,
    /// The forge, or `unknown`.
    pub forge: &'static str,
    pub delivery: Option<String>,
    pub result: &'static str,
}

/// A repository that keeps `/readyz` red, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unready {
    pub name: String,
    /// `failing` (past `health.max_consecutive_failures`) or `never_synced`.
    pub reason: &'static str,
    pub consecutive_failures: u64,
    pub last_error: Option<ErrorInfo>,
}

impl Trigger {
    pub fn kind(&self) -> TriggerKind {
        match self {
            Trigger::Webhook { .. } => TriggerKind::Webhook,
            Trigger::Api => TriggerKind::Api,
            Trigger::Startup => TriggerKind::Startup,
            Trigger::Schedule => TriggerKind::Schedule,
            Trigger::Lag => TriggerKind::Lag,
            Trigger::Reload => TriggerKind::Reload,
        }
    }
}

impl Daemon {
    /// Records a finished sync everywhere but status (which `record` did): history, failure
    /// streak, metrics, push → synced times, notifications. `lagging`: the fetched tip lacked a
    /// pushed commit, so those pushes are not synced yet.
    pub(super) fn observe(
        &self,
        repo: &Repo,
        trigger: Option<&Trigger>,
        covers: u64,
        o: &Outcome,
        report: &SyncReport,
        lagging: bool,
    ) {
        let kind = trigger.map_or(TriggerKind::Api, Trigger::kind);
        let result = if !report.ok {
            SyncResult::Failed
        } else if report.changed {
            SyncResult::Updated
        } else {
            SyncResult::Unchanged
        };
        let now = Utc::now();
        let mut book = self.book();
        // A repository that left the config while it synced has no entry: its sync still
        // counts in the metrics and is announced, as the first of a fresh streak.
        let (failures_before, synced_pushes) = match book.repo_mut(&repo.name) {
            Some(entry) => {
                let before = entry.status.consecutive_failures;
                entry.status.consecutive_failures = if report.ok { 0 } else { before + 1 };
                entry.remember(SyncRecord {
                    at: now,
                    duration_ms: report.duration_ms,
                    result: result.as_str(),
                    trigger: kind.as_str(),
                    commit: report.commit.clone(),
                    error: report.error.clone(),
                });
                let synced = if report.ok && !lagging {
                    entry.synced_pushes(covers)
                } else {
                    Vec::new()
                };
                (before, synced)
            }
            None => (0, Vec::new()),
        };
        drop(book);
        let consecutive_failures = if report.ok { 0 } else { failures_before + 1 };

        let metrics = &self.0.metrics;
        metrics.sync_finished(&SyncSample {
            repo: &repo.name,
            trigger: kind,
            result,
            duration: o.duration,
            success_unix: report.ok.then(|| now.timestamp_millis() as f64 / 1000.0),
            consecutive_failures,
        });
        for at in synced_pushes {
            metrics.push_synced(&repo.name, at.elapsed());
        }

        let config = self.config();
        let targets: Vec<&NotifyTarget> = config.notify.iter().chain(&repo.notify).collect();
        if targets.is_empty() {
            return;
        }
        let events = events_for(report.ok, report.changed, failures_before);
        if events.is_empty() {
            return;
        }
        let data = SyncEvent {
            repo: repo.name.clone(),
            git_ref: o
                .result
                .as_ref()
                .ok()
                .map(|s| s.remote_ref.clone())
                .or_else(|| repo.target.remote_ref()),
            old: report.old.clone(),
            new: report.commit.clone(),
            duration_ms: report.duration_ms,
            trigger: kind.as_str().to_string(),
            delivery: match trigger {
                Some(Trigger::Webhook { delivery }) => delivery.clone(),
                _ => None,
            },
            error: report
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.kind, e.message)),
        };
        for event in events {
            self.0.notifier.announce(&targets, event, &data);
        }
    }

    /// The last [`HISTORY`] syncs of `name`, oldest first; `None` for an unknown repository.
    pub fn history(&self, name: &str) -> Option<Vec<SyncRecord>> {
        self.config().repo(name)?;
        let book = self.book();
        Some(
            book.repo(name)
                .map(|e| e.history.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// Records a request to a webhook path: the metric (by forge and result, refusals too), and
    /// the status page's list for a delivery that `verified` (passed its signature check, or
    /// came to a repository configured without a secret). A refused one never enters the list:
    /// anyone could otherwise flush it with requests carrying ids of their choosing.
    pub fn record_delivery(
        &self,
        forge: &'static str,
        delivery: Option<&str>,
        result: WebhookResult,
        verified: bool,
    ) {
        self.0.metrics.webhook(forge, result);
        if !verified {
            return;
        }
        let delivery = delivery.map(|d| d.chars().take(MAX_DELIVERY_ID).collect());
        let record = DeliveryRecord {
            at: Utc::now(),
            forge,
            delivery,
            result: result.as_str(),
        };
        let mut list = self.delivery_list();
        if list.len() >= DELIVERIES {
            list.pop_front();
        }
        list.push_back(record);
    }

    fn delivery_list(&self) -> std::sync::MutexGuard<'_, VecDeque<DeliveryRecord>> {
        self.0.deliveries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last [`DELIVERIES`] webhook requests, newest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.delivery_list().iter().rev().cloned().collect()
    }

    /// The repositories that keep the daemon from being ready (empty: ready): those failing
    /// `health.max_consecutive_failures` syncs in a row or more, and those that never synced
    /// (with `initialise: false`, a checkout found at start-up counts as synced).
    pub fn unready(&self) -> Vec<Unready> {
        let config = self.config();
        let limit = config.health.max_consecutive_failures;
        let book = self.book();
        let mut out = Vec::new();
        let none = RepoStatus::default();
        for r in &config.repos {
            let st = book.repo(&r.name).map_or(&none, |e| &e.status);
            let reason = if st.consecutive_failures >= limit {
                "failing"
            } else if st.syncs == 0 && (config.initialise || st.commit.is_none()) {
                "never_synced"
            } else {
                continue;
            };
            out.push(Unready {
                name: r.name.clone(),
                reason,
                consecutive_failures: st.consecutive_failures,
                last_error: st.last_error.clone(),
            });
        }
        out
    }

    /// The metrics exposition, with the queue gauges read now.
    pub fn metrics_text(&self, openmetrics: bool) -> String {
        let (mut pending, mut running) = (0, 0);
        for entry in self.book().entries() {
            match entry.queue.state() {
                // Waiting for its turn, or for its retry: not holding a worker.
                State::Queued | State::Backoff => pending += 1,
                State::Syncing => running += 1,
                State::Idle => {}
            }
            pending += usize::from(entry.queue.pending());
        }
        self.0.metrics.set_queue(pending, running);
        self.0.metrics.encode(openmetrics)
    }

    pub fn metrics_enabled(&self) -> bool {
        self.0.metrics.enabled()
    }

    /// Waits (at most `limit`) for queued notifications to go out; called last at shutdown.
    pub fn finish_notifications(&self, limit: std::time::Duration) {
        self.0.notifier.shutdown(limit);
    }
}

/// A repository's last syncs, oldest first.
pub(super) type History = VecDeque<SyncRecord>;
