//! The fleet's port: what the daemon asks of a fleet of nodes ([`Relay`]), and the intake paths
//! that go through one when it is set. The daemon knows no message engine: `crate::fleet`
//! implements [`Relay`] over NATS JetStream and `run` sets it. Without one (or while it cannot
//! take requests) every request is queued here, as on a node on its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Daemon, Delivered, RequestError, SyncReport, Trigger};
use crate::config::Repo;
use crate::webhook::Push;

/// A boxed future, so that [`Relay`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A sync request for every node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub repo: String,
    /// The pushed commit (a webhook's `after`); `None` to fetch unconditionally.
    pub hint: Option<String>,
    /// The forge's delivery id: the fleet stores a delivery sent to several nodes once.
    pub delivery: Option<String>,
    /// Rewrite the tree even at the tip (`?force=true`).
    pub force: bool,
}

/// What became of a request handed to the fleet.
pub enum Handed {
    /// Stored in the fleet: this node syncs it when its own share arrives, like every other
    /// node. With a report asked for, the receiver gets the outcome of that sync here.
    Stored(Option<oneshot::Receiver<SyncReport>>),
    /// The fleet cannot take it now: the caller queues it on this node; the relay keeps it and
    /// hands it on once the fleet is back.
    Local,
}

/// Whether every live node reached a commit, and the answer that says so.
pub struct FleetWait {
    pub done: bool,
    pub body: serde_json::Value,
}

/// A fleet of nodes that all sync what any of them accepted.
pub trait Relay: Send + Sync {
    /// Stores `request` in the fleet, answering once it is stored (or once it is clear it
    /// cannot be, within a webhook's time budget).
    fn hand(&self, request: Relayed, report: bool) -> BoxFuture<'_, Handed>;
    /// Every node and its repositories, for `GET /api/fleet`; `readable` filters repositories.
    fn view<'a>(
        &'a self,
        readable: &'a (dyn Fn(&str) -> bool + Sync),
    ) -> BoxFuture<'a, serde_json::Value>;
    /// Waits (at most `limit`) until every live node reports `commit` for `repo`.
    fn await_commit(
        &self,
        repo: String,
        commit: String,
        limit: Duration,
    ) -> BoxFuture<'_, FleetWait>;
    /// A few words for systemd's status line: connected, or degraded and why.
    fn summary(&self) -> String;
    /// Whether the link to the fleet is up (else requests wait in the outbox).
    fn connected(&self) -> bool;
}

impl Daemon {
    /// Puts `relay` in force (`None`: this node on its own).
    pub fn set_relay(&self, relay: Option<Arc<dyn Relay>>) {
        *self.0.relay.write().unwrap_or_else(|p| p.into_inner()) = relay;
    }

    /// The fleet, when this node belongs to one.
    pub fn relay(&self) -> Option<Arc<dyn Relay>> {
        self.0
            .relay
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A verified push: queued here ([`Daemon::deliver`]) on a node on its own; in a fleet,
    /// stored in the fleet (every node, this one too, syncs it from there), or queued here when
    /// the fleet cannot take it now (the relay hands it on later).
    pub async fn deliver_push(
        &self,
        repos: &[&Repo],
        push: &Push,
        delivery: Option<&str>,
    ) -> Delivered {
        let Some(relay) = self.relay() else {
            return self.deliver(repos, push, delivery);
        };
        if !self.intake_open() {
            return Delivered::ShuttingDown;
        }
        let (targets, ignored) = match self.route(repos, push, delivery) {
            Ok(routed) => routed,
            Err(answer) => return answer,
        };
        let mut queued = Vec::new();
        for (repo, after) in targets {
            let request = Relayed {
                repo: repo.name.clone(),
                hint: after.clone(),
                delivery: delivery.map(str::to_string),
                force: false,
            };
            if let Handed::Local = relay.hand(request, false).await {
                let trigger = Trigger::Webhook {
                    delivery: delivery.map(str::to_string),
                };
                if let Err(RequestError::ShuttingDown) =
                    self.request_sync(&repo.name, trigger, after.as_deref(), false)
                {
                    // Not taken after all: the forge's redelivery must not be a duplicate.
                    if queued.is_empty()
                        && let Some(id) = delivery
                    {
                        self.book().dedupe.forget(id);
                    }
                    return Delivered::ShuttingDown;
                }
            }
            queued.push(repo.name.clone());
        }
        Delivered::Queued {
            repos: queued,
            ignored,
        }
    }

    /// An API sync request (`force`: rewrite the tree): through the fleet when there is one,
    /// else (or while it cannot take it) queued here. With `report`, the receiver gets the
    /// outcome of the sync on this node that covers it.
    pub async fn request_api_sync(
        &self,
        name: &str,
        force: bool,
        report: bool,
    ) -> Result<Option<oneshot::Receiver<SyncReport>>, RequestError> {
        let local = || {
            if force {
                self.request_forced_sync(name, Trigger::Api, report)
            } else {
                self.request_sync(name, Trigger::Api, None, report)
            }
        };
        let Some(relay) = self.relay() else {
            return local();
        };
        if !self.intake_open() {
            return Err(RequestError::ShuttingDown);
        }
        if self.config().repo(name).is_none() {
            return Err(RequestError::UnknownRepo);
        }
        let request = Relayed {
            repo: name.to_string(),
            hint: None,
            delivery: None,
            force,
        };
        match relay.hand(request, report).await {
            Handed::Stored(rx) => Ok(rx),
            Handed::Local => local(),
        }
    }

    /// Changes each time a sync's outcome is recorded: the fleet's status writer waits on it.
    pub fn sync_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.synced.subscribe()
    }
}
