//! What the daemon asks of the fleet ([`Relay`]): store a request (or keep it in the outbox and
//! let the daemon sync it here), show the fleet, wait until every live node has a commit, and a
//! line for systemd's status.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::oneshot;

use super::{Inner, WAIT_POLL, link, lock, message, status};
use crate::daemon::{BoxFuture, FleetWait, Handed, Relay, Relayed};

/// A request id no other request has: nanoseconds and 64 random bits.
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{:016x}", fastrand::u64(..))
}

impl Relay for Inner {
    fn hand(&self, request: Relayed, report: bool) -> BoxFuture<'_, Handed> {
        Box::pin(async move {
            let m = message::for_request(&request, &self.node, &unique());
            if self.ready() {
                let rx = report.then(|| {
                    let (tx, rx) = oneshot::channel();
                    let mut waiters = lock(&self.waiters);
                    waiters.retain(|_, w| !w.is_closed());
                    waiters.insert(m.id.clone(), tx);
                    rx
                });
                match link::publish(&self.js, &m).await {
                    Ok(duplicate) => {
                        tracing::debug!(repo = %m.repo, id = %m.id, duplicate, "fleet: request stored");
                        return Handed::Stored(rx);
                    }
                    Err(e) => {
                        lock(&self.waiters).remove(&m.id);
                        tracing::warn!(repo = %m.repo, id = %m.id, error = %e, "fleet: cannot store the request; syncing it here, sending it to the fleet later");
                    }
                }
            }
            let repo = m.repo.clone();
            let waiting = {
                let mut outbox = lock(&self.outbox);
                outbox.push(m.synced_here());
                outbox.get(&repo).cloned()
            };
            self.save(waiting).await;
            Handed::Local
        })
    }

    fn view<'a>(
        &'a self,
        readable: &'a (dyn Fn(&str) -> bool + Sync),
    ) -> BoxFuture<'a, serde_json::Value> {
        Box::pin(async move {
            let health = self.health();
            let nodes = self.nodes().await;
            let outbox = lock(&self.outbox).len();
            json!({
                "node": self.node,
                "stream": self.cfg.stream,
                "state": if health.ready { "connected" } else { "degraded" },
                "error": health.error,
                "outbox": outbox,
                "nodes": match &nodes {
                    Ok(n) => status::view(n, Utc::now(), readable),
                    Err(_) => json!([]),
                },
                "nodes_error": nodes.err(),
            })
        })
    }

    fn await_commit(
        &self,
        repo: String,
        commit: String,
        limit: Duration,
    ) -> BoxFuture<'_, FleetWait> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let (have, missing, error) = match self.nodes().await {
                    Ok(nodes) => {
                        let (have, missing) = status::reached(&nodes, &repo, &commit, Utc::now());
                        (have, missing, None)
                    }
                    Err(e) => (Vec::new(), Vec::new(), Some(e)),
                };
                let done = error.is_none() && missing.is_empty();
                if done || error.is_some() || tokio::time::Instant::now() >= deadline {
                    let missing: Vec<_> = missing
                        .into_iter()
                        .map(|(node, commit)| json!({ "node": node, "commit": commit }))
                        .collect();
                    let mut body = json!({ "repo": repo, "commit": commit, "nodes": have });
                    if !done {
                        body["missing"] = json!(missing);
                        body["error"] = json!(error.unwrap_or_else(|| format!(
                            "not every live node reported the commit within {limit:?}"
                        )));
                    }
                    return FleetWait { done, body };
                }
                tokio::time::sleep(WAIT_POLL).await;
            }
        })
    }

    fn connected(&self) -> bool {
        self.health().ready
    }

    fn summary(&self) -> String {
        let h = self.health();
        let waiting = lock(&self.outbox).len();
        match (h.ready, h.error) {
            (true, _) => format!("connected as {}", self.node),
            (false, e) => format!(
                "degraded ({}); {waiting} request(s) waiting for it",
                e.unwrap_or_default()
            ),
        }
    }
}
