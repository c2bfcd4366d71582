//! A fleet of nodes on NATS JetStream: one push, every node. The edge between the daemon and
//! NATS; the daemon sees only its [`Relay`] port.
//!
//! - Intake: a verified push (or an API sync) is published to `hookmirror.push.<repo>` with a
//!   dedupe id (the forge's delivery id), and the webhook is answered once JetStream stored it.
//! - Every node, this one too, has a durable consumer and feeds what it receives into its own
//!   coalescing queue; a message is acked once a sync that covers it finished. The stream keeps
//!   the newest request per repository, so a node that was down catches up with one sync each.
//! - Each node writes its repositories' state to a key-value bucket (`GET /api/fleet`,
//!   `?wait=fleet`).
//! - When NATS cannot store a request in time, the node syncs it itself at once and keeps it in
//!   its outbox until NATS is back (degraded: see `summary` and `GET /api/fleet`).
//!
//! The parts: `message` (format and decisions) and `status` (status entries, liveness, the
//! view) are pure; `outbox` keeps what waits, `spool` also on disk (`fleet.outbox`); `link`
//! talks to NATS; `relay` is what the daemon asks of the fleet; this file runs the tasks.

mod link;
mod message;
mod outbox;
mod relay;
mod spool;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, kv};
use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Fleet as FleetConfig, valid_fleet_name};
use crate::daemon::{Daemon, Relay, RequestError, SyncReport, Trigger};
use message::{Answer, Decision, Message};
pub use outbox::Outbox;

/// How often `?wait=fleet` reads the status bucket.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// How often the consumer loop checks the connection and the outbox.
const TICK: Duration = Duration::from_millis(250);

/// Longest pause before setting up again after a failure (NATS down, no stream leader yet).
const MAX_SETUP_DELAY: Duration = Duration::from_secs(2);

/// How long stopping waits for the fleet's tasks and its last writes.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// This node's name from the host name: what NATS names cannot hold becomes `-`.
pub fn node_from_host(host: &str) -> String {
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if valid_fleet_name(&name) {
        name
    } else {
        "node".into()
    }
}

/// Where the link stands.
#[derive(Debug, Clone, Default)]
struct Health {
    /// Connected, with stream, bucket and consumer set up.
    ready: bool,
    /// Why not, when not.
    error: Option<String>,
}

struct Inner {
    node: String,
    cfg: FleetConfig,
    daemon: Daemon,
    client: async_nats::Client,
    js: jetstream::Context,
    health: Mutex<Health>,
    store: Mutex<Option<kv::Store>>,
    outbox: Mutex<Outbox>,
    /// The outbox's folder, when configured.
    spool: Option<spool::Spool>,
    /// API requests waiting for this node's sync of their message, by message id.
    waiters: Mutex<HashMap<String, oneshot::Sender<SyncReport>>>,
    /// Held while the outbox is being sent.
    flushing: tokio::sync::Mutex<()>,
    /// Nodes seen in the status bucket (see `link::read_status`).
    known_nodes: Mutex<std::collections::BTreeSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fleet link.
pub struct Fleet {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Connects (in the background) and starts the link's tasks; `outbox` holds requests a
    /// previous link could not send. Fails only on what the config cannot fix by waiting.
    async fn start(cfg: FleetConfig, daemon: &Daemon, outbox: Outbox) -> Result<Fleet, String> {
        let node = match &cfg.node {
            Some(n) => n.clone(),
            None => node_from_host(
                &nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        };
        let client = link::connect(&cfg, &node).await?;
        let mut outbox = outbox;
        let spool = match cfg.outbox.as_deref().map(spool::Spool::open) {
            Some(Ok(s)) => {
                for m in s.load() {
                    outbox.push(m);
                }
                Some(s)
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "fleet: the outbox is kept in memory only");
                None
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            js: link::jetstream(client.clone()),
            client,
            node,
            cfg,
            daemon: daemon.clone(),
            health: Mutex::new(Health {
                ready: false,
                error: Some("connecting to NATS".into()),
            }),
            store: Mutex::new(None),
            outbox: Mutex::new(outbox),
            spool,
            waiters: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            known_nodes: Mutex::new(Default::default()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(inner.clone().supervise(stop_rx.clone())),
            tokio::spawn(inner.clone().write_status_loop(stop_rx)),
        ];
        tracing::info!(node = %inner.node, servers = ?inner.cfg.servers, stream = %inner.cfg.stream, "fleet: starting");
        Ok(Fleet { inner, stop, tasks })
    }

    /// Stops the tasks, marks this node stopped in the status bucket, sends what the outbox
    /// holds if NATS is there, closes the connection; returns what could not be sent.
    async fn stop(self) -> Outbox {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(STOP_WAIT, t).await.is_err() {
                abort.abort();
            }
        }
        let inner = self.inner;
        let _ = tokio::time::timeout(STOP_WAIT, async {
            if link::connected(&inner.client) {
                inner.flush_outbox().await;
            }
            inner.write_status(true).await;
        })
        .await;
        let _ = tokio::time::timeout(STOP_WAIT, inner.client.drain()).await;
        std::mem::take(&mut *lock(&inner.outbox))
    }
}

/// The fleet link `run` keeps: started from the config, restarted when a reload changes the
/// `fleet` block, stopped at shutdown. Sets the daemon's relay each time.
#[derive(Default)]
pub struct Running {
    fleet: Option<Fleet>,
    config: Option<FleetConfig>,
}

impl Running {
    /// The link for the daemon's config (none without a `fleet` block).
    pub async fn start(daemon: &Daemon) -> Running {
        let mut r = Running::default();
        r.follow(daemon).await;
        r
    }

    /// Restarts the link when the config's `fleet` block differs from the one it runs with.
    /// The new link is put in force before the old one stops, so no push falls between them;
    /// what the old one's outbox could not send carries over.
    pub async fn follow(&mut self, daemon: &Daemon) {
        let wanted = daemon.config().fleet.clone();
        if wanted == self.config && (self.fleet.is_some() || wanted.is_none()) {
            return;
        }
        let old = self.fleet.take();
        self.config = wanted.clone();
        let new = match wanted {
            Some(cfg) => match Fleet::start(cfg, daemon, Outbox::default()).await {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::error!(error = %e, "fleet: cannot start; this node runs on its own");
                    None
                }
            },
            None => None,
        };
        daemon.set_relay(new.as_ref().map(|f| f.inner.clone() as Arc<dyn Relay>));
        if let Some(old) = old {
            let left = old.stop().await;
            match &new {
                Some(f) => f.inner.adopt(left).await,
                None if !left.is_empty() => {
                    tracing::warn!(
                        requests = left.len(),
                        "fleet: left without a fleet; requests waiting for it (synced here already) are dropped"
                    )
                }
                None => {}
            }
        }
        self.fleet = new;
    }

    /// Stops the link (the daemon runs on its own); what its outbox could not send.
    pub async fn stop(&mut self, daemon: &Daemon) -> Outbox {
        daemon.set_relay(None);
        match self.fleet.take() {
            Some(f) => f.stop().await,
            None => Outbox::default(),
        }
    }
}

impl Inner {
    fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    fn ready(&self) -> bool {
        self.health().ready && link::connected(&self.client)
    }

    fn set_health(&self, ready: bool, error: Option<String>) {
        let mut h = lock(&self.health);
        if h.ready != ready || h.error != error {
            match (&error, ready) {
                (_, true) => {
                    tracing::info!(node = %self.node, stream = %self.cfg.stream, "fleet: ready")
                }
                (Some(e), false) => {
                    tracing::warn!(node = %self.node, error = %e, "fleet: degraded; syncing from this node's own requests meanwhile")
                }
                (None, false) => {}
            }
        }
        *h = Health { ready, error };
    }

    /// Sets up the stream, bucket and consumer whenever connected, then consumes until the
    /// connection or the consumer is lost; again and again until stopped.
    async fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            if link::connected(&self.client) {
                match link::setup(&self.js, &self.cfg, &self.node).await {
                    Ok((store, messages)) => {
                        failures = 0;
                        *lock(&self.store) = Some(store);
                        self.set_health(true, None);
                        self.write_status(false).await;
                        let why = self.consume(messages, &mut stop).await;
                        if *stop.borrow() {
                            return;
                        }
                        self.set_health(false, Some(why));
                    }
                    Err(e) => {
                        failures += 1;
                        self.set_health(false, Some(e));
                    }
                }
            } else {
                failures += 1;
                self.set_health(false, Some("not connected to NATS".into()));
            }
            let delay =
                (Duration::from_millis(100) * 2u32.pow(failures.min(5))).min(MAX_SETUP_DELAY);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    }

    /// Hands each message to a task of its own until something ends the subscription; why.
    async fn consume(
        self: &Arc<Self>,
        mut messages: jetstream::consumer::pull::Stream,
        stop: &mut watch::Receiver<bool>,
    ) -> String {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(Ok(msg)) => {
                        tokio::spawn(self.clone().handle(msg));
                    }
                    Some(Err(e)) => return format!("consumer: {e}"),
                    None => return "consumer: the subscription ended".into(),
                },
                _ = tick.tick() => {
                    if !link::connected(&self.client) {
                        return "disconnected from NATS".into();
                    }
                    if !lock(&self.outbox).is_empty() {
                        let me = self.clone();
                        tokio::spawn(async move { me.flush_outbox().await });
                    }
                }
                _ = stop.wait_for(|s| *s) => return "stopping".into(),
            }
        }
    }

    /// One message: skip it, or queue its sync here and answer JetStream once a sync that
    /// covers it finished (saying it is in progress meanwhile).
    async fn handle(self: Arc<Self>, msg: jetstream::Message) {
        let config = self.daemon.config();
        let (id, decision) = message::decide(&msg.payload, |r| config.repo(r).is_some());
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let (repo, hint, delivery, force) = match decision {
            Decision::Skip(why) => {
                tracing::debug!(id = ?id, reason = %why, "fleet: message skipped");
                let _ = msg.ack().await;
                return;
            }
            Decision::Sync {
                repo,
                hint,
                delivery,
                force,
            } => (repo, hint, delivery, force),
        };
        let trigger = match &delivery {
            Some(_) => Trigger::Webhook { delivery },
            None => Trigger::Api,
        };
        let requested = if force {
            self.daemon.request_forced_sync(&repo, trigger, true)
        } else {
            self.daemon
                .request_sync(&repo, trigger, hint.as_deref(), true)
        };
        let mut rx = match requested {
            Ok(Some(rx)) => rx,
            // Removed from the config meanwhile: nothing to do here.
            Ok(None) | Err(RequestError::UnknownRepo) => {
                let _ = msg.ack().await;
                return;
            }
            // Delivered again after the restart.
            Err(RequestError::ShuttingDown) => return,
        };
        let report = loop {
            tokio::select! {
                r = &mut rx => break r.ok(),
                _ = tokio::time::sleep(link::PROGRESS_EVERY) => {
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            }
        };
        // Abandoned (shutdown, or the repository left the config): delivered again later.
        let Some(report) = report else { return };
        if let Some(id) = &id
            && let Some(tx) = lock(&self.waiters).remove(id)
        {
            let _ = tx.send(report.clone());
        }
        let kind = match message::answer(report.ok, delivered) {
            Answer::Ack => AckKind::Ack,
            Answer::Retry(after) => AckKind::Nak(Some(after)),
            Answer::GiveUp => {
                tracing::warn!(repo = %repo, attempts = delivered, "fleet: the request's syncs kept failing; not retried (see the status)");
                AckKind::Term
            }
        };
        if let Err(e) = msg.ack_with(kind).await {
            tracing::debug!(repo = %repo, error = %e, "fleet: ack failed; the message comes again");
        }
    }

    /// Takes over what a previous link could not send.
    async fn adopt(&self, left: Outbox) {
        let mut left = left;
        for m in left.take() {
            let repo = m.repo.clone();
            let waiting = {
                let mut outbox = lock(&self.outbox);
                outbox.push(m);
                outbox.get(&repo).cloned()
            };
            self.save(waiting).await;
        }
    }

    /// Writes a repository's waiting request to the outbox folder, when there is one.
    async fn save(&self, waiting: Option<Message>) {
        let (Some(spool), Some(w)) = (self.spool.clone(), waiting) else {
            return;
        };
        let repo = w.repo.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.save(&w)).await {
            tracing::error!(repo = %repo, error = %e, "fleet: outbox file not written; the request waits in memory only");
        }
    }

    /// Sends what waits in the outbox (one sender at a time); what fails waits again.
    async fn flush_outbox(&self) {
        let Ok(_one) = self.flushing.try_lock() else {
            return;
        };
        let waiting = lock(&self.outbox).take();
        for m in waiting {
            match link::publish(&self.js, &m).await {
                Ok(_) => {
                    tracing::info!(repo = %m.repo, id = %m.id, "fleet: request from the outbox stored");
                    if let Some(spool) = self.spool.clone() {
                        let _ = tokio::task::spawn_blocking(move || spool.sent(&m)).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(repo = %m.repo, error = %e, "fleet: outbox send failed; kept");
                    lock(&self.outbox).put_back(m);
                }
            }
        }
    }

    /// Writes this node's status entry whenever a sync finished, and every heartbeat.
    async fn write_status_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut events = self.daemon.sync_events();
        loop {
            tokio::select! {
                changed = events.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(status::HEARTBEAT) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            self.write_status(false).await;
        }
    }

    async fn write_status(&self, stopped: bool) {
        let store = lock(&self.store).clone();
        let Some(store) = store.filter(|_| self.ready()) else {
            return;
        };
        let entry = status::node_status(&self.node, Utc::now(), &self.daemon.statuses(), stopped);
        if let Err(e) = link::write_status(&store, &entry).await {
            tracing::debug!(error = %e, "fleet: status not written");
        }
    }

    /// The status bucket's entries, or why they cannot be read now.
    async fn nodes(&self) -> Result<Vec<status::NodeStatus>, String> {
        let store = lock(&self.store).clone();
        match store.filter(|_| self.ready()) {
            Some(s) => link::read_status(&s, &self.known_nodes).await,
            None => Err(self
                .health()
                .error
                .unwrap_or_else(|| "not connected".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_become_node_names() {
        assert_eq!(node_from_host("web-1"), "web-1");
        assert_eq!(node_from_host("web-1.example.com"), "web-1-example-com");
        assert_eq!(node_from_host(""), "node");
        assert_eq!(node_from_host(&"a".repeat(100)).len(), 64);
    }
}
