//! The fleet over HTTP: `GET /api/fleet` (every node and its repositories, from the fleet's
//! status bucket) and `POST /api/repos/{name}/sync?wait=fleet` (a sync on every node, answered
//! when every live node reports the commit this node synced to, or naming those that did not).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::guard::allow;
use super::{await_report, error};
use crate::access::Need;
use crate::daemon::{Daemon, RequestError};

/// How long `?wait=fleet` waits for the other nodes once this one synced (they fetch the same
/// commit at the same time; a minute covers a slow clone on a busy node).
pub const FLEET_WAIT_LIMIT: Duration = Duration::from_secs(60);

const NO_FLEET: &str = "this node belongs to no fleet (its config has no `fleet` block)";

/// `GET /api/fleet`: the nodes, each with the repositories the caller may read.
pub async fn show(State(d): State<Daemon>, headers: HeaderMap) -> Response {
    let caller = match allow(&d, &headers, Need::Read(None)) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Some(fleet) = d.relay() else {
        return error(StatusCode::NOT_FOUND, NO_FLEET);
    };
    let readable = |repo: &str| caller.may_read(repo);
    Json(fleet.view(&readable).await).into_response()
}

/// `?wait=fleet`: the request goes to every node; once this node's sync finished, waits until
/// every live node reports its commit. 200 with each node's commit; 504 naming the nodes that
/// did not report it in time; the local sync's failure as `?wait=true` answers it.
pub(super) async fn sync_and_wait(d: &Daemon, token: &str, name: &str, force: bool) -> Response {
    let Some(fleet) = d.relay() else {
        return error(StatusCode::BAD_REQUEST, NO_FLEET);
    };
    let rx = match d.request_api_sync(name, force, true).await {
        Err(RequestError::UnknownRepo) => {
            return error(StatusCode::NOT_FOUND, "no such repository");
        }
        Err(RequestError::ShuttingDown) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        Ok(None) => return error(StatusCode::INTERNAL_SERVER_ERROR, "no report to wait for"),
        Ok(Some(rx)) => rx,
    };
    tracing::info!(token, repo = %name, force, wait = "fleet", "api sync requested");
    let report = match await_report(rx).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let commit = match (&report.commit, report.ok) {
        (Some(c), true) => c.clone(),
        _ => return (StatusCode::BAD_GATEWAY, Json(report)).into_response(),
    };
    let waited = fleet
        .await_commit(name.to_string(), commit, FLEET_WAIT_LIMIT)
        .await;
    let status = if waited.done {
        StatusCode::OK
    } else {
        StatusCode::GATEWAY_TIMEOUT
    };
    let mut body = waited.body;
    body["sync"] = serde_json::json!(report);
    (status, Json(body)).into_response()
}
