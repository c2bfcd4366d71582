//! The Prometheus metrics registry: what the daemon records about syncs, reloads and
//! notifications, what the server records about webhook requests, and the exposition in the
//! Prometheus text format or OpenMetrics. Below `daemon` and `server`, so both record into it
//! without importing each other; the `process_*` metrics are read from /proc at scrape time
//! (`process`).
//!
//! Labels are bounded: repository names come from the config (and a removed repository's series
//! are dropped by [`Metrics::forget_repo`]), triggers, results and providers are fixed sets.

mod process;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the Prometheus text format (0.0.4), the default.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of OpenMetrics, sent when the scraper asks for it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets of `hookmirror_sync_duration_seconds`: a sync answered from the checkout takes a few
/// milliseconds, a fetch tens to hundreds, a clone or a retrying sync seconds to minutes.
const SYNC_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Buckets of `hookmirror_push_to_synced_seconds`: users expect well under a second; a push that
/// waited for a busy worker, a replica-lag retry or a failing remote takes longer.
const PUSH_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// What caused a sync, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerKind {
    Webhook,
    Api,
    Startup,
    Schedule,
    Lag,
    Reload,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 6] = [
        TriggerKind::Webhook,
        TriggerKind::Api,
        TriggerKind::Startup,
        TriggerKind::Schedule,
        TriggerKind::Lag,
        TriggerKind::Reload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Webhook => "webhook",
            TriggerKind::Api => "api",
            TriggerKind::Startup => "startup",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Lag => "lag",
            TriggerKind::Reload => "reload",
        }
    }
}

/// How a sync ended, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncResult {
    /// The checkout moved to another commit.
    Updated,
    /// The checkout was already at the tip.
    Unchanged,
    Failed,
}

impl SyncResult {
    pub const ALL: [SyncResult; 3] = [
        SyncResult::Updated,
        SyncResult::Unchanged,
        SyncResult::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncResult::Updated => "updated",
            SyncResult::Unchanged => "unchanged",
            SyncResult::Failed => "failed",
        }
    }
}

/// What became of a webhook request, as a label (and on the status page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookResult {
    Queued,
    Ignored,
    Duplicate,
    Ping,
    Unauthorized,
    BadRequest,
    TooLarge,
    NotFound,
}

impl WebhookResult {
    pub const ALL: [WebhookResult; 8] = [
        WebhookResult::Queued,
        WebhookResult::Ignored,
        WebhookResult::Duplicate,
        WebhookResult::Ping,
        WebhookResult::Unauthorized,
        WebhookResult::BadRequest,
        WebhookResult::TooLarge,
        WebhookResult::NotFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Queued => "queued",
            WebhookResult::Ignored => "ignored",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::Ping => "ping",
            WebhookResult::Unauthorized => "unauthorized",
            WebhookResult::BadRequest => "bad_request",
            WebhookResult::TooLarge => "too_large",
            WebhookResult::NotFound => "not_found",
        }
    }
}

/// The `provider` label values: the forges `webhook::Provider` names, then `unknown` for a
/// request no forge header identifies.
pub const PROVIDERS: [&str; 6] = [
    "github",
    "gitlab",
    "gitea",
    "bitbucket",
    "standard",
    "unknown",
];

/// What became of an outbound notification, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyResult {
    /// The receiver answered 2xx.
    Delivered,
    /// An attempt failed and another one is scheduled.
    Retried,
    /// Every attempt failed.
    Failed,
    /// Never sent: the queue was full, or shutdown came first.
    Dropped,
}

impl NotifyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyResult::Delivered => "delivered",
            NotifyResult::Retried => "retried",
            NotifyResult::Failed => "failed",
            NotifyResult::Dropped => "dropped",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabel {
    repo: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    repo: String,
    trigger: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    provider: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

fn sync_histogram() -> Histogram {
    Histogram::new(SYNC_BUCKETS)
}

fn push_histogram() -> Histogram {
    Histogram::new(PUSH_BUCKETS)
}

type HistogramFamily = Family<RepoLabel, Histogram, fn() -> Histogram>;

/// Every metric hookmirror exports. Recording is a few atomic operations (and, for per-repo
/// series, one read-locked map lookup), cheap enough to be always on; `enabled: false` exists
/// for the overhead benchmark only (`HOOKMIRROR_METRICS=off`).
#[derive(Debug)]
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    syncs: Family<SyncLabels, Counter>,
    sync_duration: HistogramFamily,
    push_to_synced: HistogramFamily,
    last_success: Family<RepoLabel, Gauge<f64, AtomicU64>>,
    consecutive_failures: Family<RepoLabel, Gauge>,
    recoveries: Family<RepoLabel, Counter>,
    /// Indexed by provider (as in [`PROVIDERS`]), then by [`WebhookResult`]: the intake path
    /// increments an atomic without any lookup.
    webhooks: Vec<Vec<Counter>>,
    queue_pending: Gauge,
    syncs_running: Gauge,
    reloads: Family<ResultLabel, Counter>,
    notifications: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(true)
    }
}

impl Metrics {
    /// A registry with every metric registered (and zero series for the fixed label sets, so
    /// rates work from the first scrape).
    pub fn new(enabled: bool) -> Metrics {
        let mut registry = Registry::default();
        let syncs = Family::<SyncLabels, Counter>::default();
        registry.register(
            "hookmirror_syncs",
            "Syncs finished, by repository, what triggered them and how they ended",
            syncs.clone(),
        );
        let sync_duration: HistogramFamily = Family::new_with_constructor(sync_histogram);
        registry.register(
            "hookmirror_sync_duration_seconds",
            "How long a sync took (all attempts, post-sync actions included)",
            sync_duration.clone(),
        );
        let push_to_synced: HistogramFamily = Family::new_with_constructor(push_histogram);
        registry.register(
            "hookmirror_push_to_synced_seconds",
            "From a push webhook's arrival until the checkout is at the pushed commit",
            push_to_synced.clone(),
        );
        let last_success = Family::<RepoLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "hookmirror_last_success_timestamp_seconds",
            "Unix time of the repository's last successful sync",
            last_success.clone(),
        );
        let consecutive_failures = Family::<RepoLabel, Gauge>::default();
        registry.register(
            "hookmirror_consecutive_failures",
            "Syncs of the repository that failed in a row (0 after a success)",
            consecutive_failures.clone(),
        );
        let recoveries = Family::<RepoLabel, Counter>::default();
        registry.register(
            "hookmirror_recovery_actions",
            "Recovery actions taken on the checkout (stale locks removed, damaged repository moved aside, ...)",
            recoveries.clone(),
        );
        let webhook_family = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "hookmirror_webhook_requests",
            "Requests to webhook paths, by forge and what became of them",
            webhook_family.clone(),
        );
        let webhooks = PROVIDERS
            .iter()
            .map(|&provider| {
                WebhookResult::ALL
                    .iter()
                    .map(|r| {
                        webhook_family.get_or_create_owned(&WebhookLabels {
                            provider,
                            result: r.as_str(),
                        })
                    })
                    .collect()
            })
            .collect();
        let queue_pending = Gauge::default();
        registry.register(
            "hookmirror_queue_pending",
            "Repositories with a sync waiting to start (queued, or pending behind a running one)",
            queue_pending.clone(),
        );
        let syncs_running = Gauge::default();
        registry.register(
            "hookmirror_syncs_running",
            "Syncs running now",
            syncs_running.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "hookmirror_reloads",
            "Config reloads, by result (ok, failed)",
            reloads.clone(),
        );
        for result in ["ok", "failed"] {
            let _ = reloads.get_or_create(&ResultLabel { result });
        }
        let notifications = Family::<ResultLabel, Counter>::default();
        registry.register(
            "hookmirror_notifications",
            "Outbound notification attempts, by result (delivered, retried, failed, dropped)",
            notifications.clone(),
        );
        for r in [
            NotifyResult::Delivered,
            NotifyResult::Retried,
            NotifyResult::Failed,
            NotifyResult::Dropped,
        ] {
            let _ = notifications.get_or_create(&ResultLabel { result: r.as_str() });
        }
        let build_info = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "hookmirror_build_info",
            "Always 1; the running version as a label",
            build_info.clone(),
        );
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            enabled,
            registry,
            syncs,
            sync_duration,
            push_to_synced,
            last_success,
            consecutive_failures,
            recoveries,
            webhooks,
            queue_pending,
            syncs_running,
            reloads,
            notifications,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// One finished sync: its count, duration, the last-success time and the failure streak
    /// (`consecutive` after this sync).
    pub fn sync_finished(&self, s: &SyncSample<'_>) {
        if !self.enabled {
            return;
        }
        let repo = RepoLabel {
            repo: s.repo.to_string(),
        };
        self.syncs
            .get_or_create(&SyncLabels {
                repo: repo.repo.clone(),
                trigger: s.trigger.as_str(),
                result: s.result.as_str(),
            })
            .inc();
        self.sync_duration
            .get_or_create(&repo)
            .observe(s.duration.as_secs_f64());
        if let Some(at) = s.success_unix {
            self.last_success.get_or_create(&repo).set(at);
        }
        self.consecutive_failures
            .get_or_create(&repo)
            .set(i64::try_from(s.consecutive_failures).unwrap_or(i64::MAX));
        // Present (at 0) from the first sync on, so a rate over it has a start.
        let _ = self.recoveries.get_or_create(&repo);
    }

    /// Recovery took `n` actions on `repo`'s checkout (stale locks removed, a damaged checkout
    /// moved aside, an interrupted publish repaired, …).
    pub fn recovered(&self, repo: &str, n: u64) {
        if !self.enabled {
            return;
        }
        let label = RepoLabel {
            repo: repo.to_string(),
        };
        self.recoveries.get_or_create(&label).inc_by(n);
    }

    /// A push reached the checkout `waited` after its webhook arrived.
    pub fn push_synced(&self, repo: &str, waited: Duration) {
        if !self.enabled {
            return;
        }
        self.push_to_synced
            .get_or_create(&RepoLabel {
                repo: repo.to_string(),
            })
            .observe(waited.as_secs_f64());
    }

    /// One webhook request; `provider` is one of [`PROVIDERS`] (anything else counts as
    /// `unknown`).
    pub fn webhook(&self, provider: &str, result: WebhookResult) {
        if !self.enabled {
            return;
        }
        let p = PROVIDERS
            .iter()
            .position(|&p| p == provider)
            .unwrap_or(PROVIDERS.len() - 1);
        let r = WebhookResult::ALL
            .iter()
            .position(|&x| x == result)
            .unwrap_or(0);
        self.webhooks[p][r].inc();
    }

    pub fn reload(&self, ok: bool) {
        if !self.enabled {
            return;
        }
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn notification(&self, result: NotifyResult) {
        if !self.enabled {
            return;
        }
        self.notifications
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    /// The queue's gauges, set by the daemon just before a scrape is encoded.
    pub fn set_queue(&self, pending: usize, running: usize) {
        self.queue_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.syncs_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// Drops every series of a repository that left the config.
    pub fn forget_repo(&self, name: &str) {
        let repo = RepoLabel {
            repo: name.to_string(),
        };
        for trigger in TriggerKind::ALL {
            for result in SyncResult::ALL {
                self.syncs.remove(&SyncLabels {
                    repo: repo.repo.clone(),
                    trigger: trigger.as_str(),
                    result: result.as_str(),
                });
            }
        }
        self.sync_duration.remove(&repo);
        self.push_to_synced.remove(&repo);
        self.last_success.remove(&repo);
        self.consecutive_failures.remove(&repo);
        self.recoveries.remove(&repo);
    }

    /// The exposition: OpenMetrics when `openmetrics`, else the Prometheus text format.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a label value.
        let result = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends
/// `application/openmetrics-text;version=1.0.0,...;q=0.5,text/plain;version=0.0.4;q=0.4,...`).
pub fn wants_openmetrics(accept: &str) -> bool {
    accept
        .split(',')
        .any(|part| part.trim().starts_with("application/openmetrics-text"))
}

/// One finished sync, for [`Metrics::sync_finished`].
#[derive(Debug, Clone)]
pub struct SyncSample<'a> {
    pub repo: &'a str,
    pub trigger: TriggerKind,
    pub result: SyncResult,
    pub duration: Duration,
    /// Unix time (seconds) of the success, when it was one.
    pub success_unix: Option<f64>,
    pub consecutive_failures: u64,
}

#[cfg(test)]
mod tests;
