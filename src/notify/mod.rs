//! Outbound notifications: sync events POSTed to the configured receivers, signed per Standard
//! Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`, by
//! [`crate::webhook::sign_standard`]). What a sync is announced as is decided in `event`
//! (pure); the [`Notifier`] here delivers off the sync path: a bounded queue, a few sender
//! threads (blocking HTTP with ureq), [`MAX_ATTEMPTS`] attempts with backoff, each within
//! [`ATTEMPT_TIMEOUT`], and a shutdown that waits at most the limit it is given.

mod event;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;

pub use event::{SyncEvent, body, events_for};

use crate::config::{NotifyEvent, NotifyTarget};
use crate::metrics::{Metrics, NotifyResult};

/// Attempts per notification, the first included.
pub const MAX_ATTEMPTS: u32 = 5;
/// One attempt (connect, send, answer) may take this long; a hung receiver is given up on.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the second attempt; doubled before each further one (1, 2, 4, 8 s).
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Notifications waiting at most; past it new ones are dropped (and counted): a dead receiver
/// must not grow memory without bound.
pub const QUEUE_CAPACITY: usize = 1000;
/// Sender threads: a hung receiver holds one for [`ATTEMPT_TIMEOUT`]; the others go on.
const SENDERS: usize = 4;

/// One notification on its way.
struct Job {
    due: Instant,
    seq: u64,
    attempt: u32,
    target: Arc<NotifyTarget>,
    /// The `webhook-id`: the same for every attempt, so receivers can dedupe.
    id: String,
    event: NotifyEvent,
    body: String,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct State {
    /// Soonest due first.
    jobs: BinaryHeap<Reverse<Job>>,
    in_flight: usize,
    next_seq: u64,
    stopping: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when a job is queued, finishes, or shutdown begins.
    changed: Condvar,
    metrics: Arc<Metrics>,
    agent: ureq::Agent,
    /// The sender threads start with the first notification (most configs have none).
    started: std::sync::Once,
}

/// The notification sender; clones share it.
#[derive(Clone)]
pub struct Notifier(Arc<Inner>);

impl Notifier {
    pub fn new(metrics: Arc<Metrics>) -> Notifier {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(ATTEMPT_TIMEOUT))
            // Any non-2xx answer is a failed attempt; the status is read, not an error.
            .http_status_as_error(false)
            // A receiver that moved must be reconfigured: a signed POST is not replayed elsewhere.
            .max_redirects(0)
            .user_agent(concat!("hookmirror/", env!("CARGO_PKG_VERSION")))
            // The OpenSSL git2 links already, with the system's CA store (SSL_CERT_FILE too).
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .build(),
            )
            .build();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            metrics,
            agent: ureq::Agent::new_with_config(config),
            started: std::sync::Once::new(),
        });
        Notifier(inner)
    }

    fn start_senders(&self) {
        self.0.started.call_once(|| {
            for n in 0..SENDERS {
                let inner = self.0.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("hookmirror-notify-{n}"))
                    .spawn(move || sender(&inner));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a notification sender thread");
                }
            }
        });
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event` for every target that wants it. Never blocks: past [`QUEUE_CAPACITY`] (or
    /// after shutdown) the notification is dropped, counted and logged.
    pub fn announce(&self, targets: &[&NotifyTarget], event: NotifyEvent, data: &SyncEvent) {
        let wanted: Vec<&NotifyTarget> = targets
            .iter()
            .copied()
            .filter(|t| t.events.contains(&event))
            .collect();
        if wanted.is_empty() {
            return;
        }
        self.start_senders();
        let body = body(event, Utc::now(), data);
        let mut state = self.state();
        for target in wanted {
            if state.stopping || state.jobs.len() >= QUEUE_CAPACITY {
                self.0.metrics.notification(NotifyResult::Dropped);
                tracing::warn!(url = %crate::url::redact_endpoint(&target.url), event = event.as_str(), repo = %data.repo, "notification dropped: the queue is full or shutting down");
                continue;
            }
            state.next_seq += 1;
            let seq = state.next_seq;
            state.jobs.push(Reverse(Job {
                due: Instant::now(),
                seq,
                attempt: 1,
                target: Arc::new(target.clone()),
                id: message_id(seq),
                event,
                body: body.clone(),
            }));
        }
        drop(state);
        self.0.changed.notify_all();
    }

    /// Notifications queued or being sent.
    pub fn outstanding(&self) -> usize {
        let s = self.state();
        s.jobs.len() + s.in_flight
    }

    /// Stops taking notifications and waits, at most `limit`, for those queued to be delivered
    /// (retries that fall due within it are made). What is left is dropped and counted; an
    /// attempt still hanging is abandoned with the process.
    pub fn shutdown(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut state = self.state();
        state.stopping = true;
        self.0.changed.notify_all();
        while !(state.jobs.is_empty() && state.in_flight == 0) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = match self.0.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
        let left = state.jobs.len() + state.in_flight;
        for _ in 0..state.jobs.len() {
            self.0.metrics.notification(NotifyResult::Dropped);
        }
        state.jobs.clear();
        drop(state);
        self.0.changed.notify_all();
        if left > 0 {
            tracing::warn!(left, "notifications not delivered before shutdown");
        }
    }
}

/// A `webhook-id` unique to this process run: time, sequence and randomness.
fn message_id(seq: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("msg_{nanos:x}{seq:x}{:08x}", fastrand::u32(..))
}

/// The delay before attempt `attempt + 1`.
fn backoff(attempt: u32) -> Duration {
    FIRST_RETRY_DELAY * 2u32.saturating_pow(attempt.saturating_sub(1))
}

/// One sender thread: takes the soonest due job, sends it, schedules a retry or counts it.
fn sender(inner: &Inner) {
    loop {
        let job = {
            let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let now = Instant::now();
                let wait = match state.jobs.peek() {
                    Some(Reverse(j)) if j.due <= now => None,
                    Some(Reverse(j)) => Some(j.due - now),
                    None if state.stopping => return,
                    None => Some(Duration::from_secs(3600)),
                };
                match wait {
                    None => break,
                    Some(w) => {
                        state = match inner.changed.wait_timeout(state, w) {
                            Ok((s, _)) => s,
                            Err(p) => p.into_inner().0,
                        };
                    }
                }
            }
            let Some(Reverse(job)) = state.jobs.pop() else {
                continue;
            };
            state.in_flight += 1;
            job
        };
        let result = attempt(inner, &job);
        let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight -= 1;
        // A receiver's path and query may be its secret (Slack-style): never logged.
        let url = crate::url::redact_endpoint(&job.target.url);
        match result {
            Ok(()) => {
                inner.metrics.notification(NotifyResult::Delivered);
                tracing::debug!(%url, event = job.event.as_str(), id = %job.id, attempt = job.attempt, "notification delivered");
            }
            Err(why) if job.attempt < MAX_ATTEMPTS => {
                inner.metrics.notification(NotifyResult::Retried);
                let delay = backoff(job.attempt);
                tracing::info!(%url, event = job.event.as_str(), attempt = job.attempt, error = %why, retry_in = ?delay, "notification not delivered; retrying");
                state.jobs.push(Reverse(Job {
                    due: Instant::now() + delay,
                    attempt: job.attempt + 1,
                    ..job
                }));
            }
            Err(why) => {
                inner.metrics.notification(NotifyResult::Failed);
                tracing::warn!(%url, event = job.event.as_str(), attempts = job.attempt, error = %why, "notification not delivered; giving up");
            }
        }
        drop(state);
        inner.changed.notify_all();
    }
}

/// One POST, signed now (the timestamp is the attempt's, so receivers' tolerance holds on a
/// late retry). Errors name the status or the transport failure, never a header value.
fn attempt(inner: &Inner, job: &Job) -> Result<(), String> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let signature = crate::webhook::sign_standard(
        job.target.secret.value.expose(),
        &job.id,
        &timestamp,
        job.body.as_bytes(),
    )
    .ok_or("the signing secret is not usable")?;
    let mut req = inner
        .agent
        .post(&job.target.url)
        .header("webhook-id", &job.id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", &signature)
        .content_type("application/json");
    for (name, value) in &job.target.headers {
        req = req.header(name.as_str(), value.expose());
    }
    match req.send(job.body.as_bytes()) {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the receiver answered {}", r.status())),
        // ureq's error text may quote the URL: shown redacted, path and query too.
        Err(e) => Err(redact_target(&e.to_string(), &job.target.url)),
    }
}

/// `text` (an error) with `url`, its path-and-query part and any credentials redacted.
fn redact_target(text: &str, url: &str) -> String {
    let shown = crate::url::redact_endpoint(url);
    let mut text = text.replace(url, &shown);
    let path = url
        .split_once("://")
        .map(|(_, rest)| rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]))
        .unwrap_or("");
    if path.len() > 1 {
        text = text.replace(path, "/***");
    }
    crate::url::redact_in_text(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_eight_seconds() {
        let waits: Vec<u64> = (1..MAX_ATTEMPTS).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8]);
    }

    #[test]
    fn an_error_quoting_the_receiver_url_shows_its_origin_only() {
        let url = "https://u:pw@hooks.example.com/services/T0/SECRET?token=Q";
        let text = format!("bad uri {url}; also /services/T0/SECRET?token=Q");
        let shown = redact_target(&text, url);
        assert!(!shown.contains("SECRET") && !shown.contains("token=Q") && !shown.contains("pw"));
        assert!(
            shown.contains("https://u:***@hooks.example.com/***"),
            "{shown}"
        );
    }

    #[test]
    fn message_ids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..1000).map(message_id).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|i| i.starts_with("msg_")));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::new(true));
        let n = Notifier::new(metrics.clone());
        n.shutdown(Duration::ZERO);
        let target = NotifyTarget {
            url: "http://127.0.0.1:9/x".into(),
            secret: crate::config::Credential::inline("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            events: vec![NotifyEvent::Failed],
            headers: vec![],
        };
        let data = SyncEvent {
            repo: "site".into(),
            git_ref: None,
            old: None,
            new: None,
            duration_ms: 1,
            trigger: "api".into(),
            delivery: None,
            error: Some("x".into()),
        };
        // Not wanted by the target: nothing at all.
        n.announce(&[&target], NotifyEvent::Succeeded, &data);
        n.announce(&[&target], NotifyEvent::Failed, &data);
        assert_eq!(n.outstanding(), 0);
        assert!(
            metrics
                .encode(false)
                .contains(r#"hookmirror_notifications_total{result="dropped"} 1"#)
        );
    }
}
