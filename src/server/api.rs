//! The HTTP API (Direktiv's `sync-mirror`, generalised): queue a sync (optionally forced, the
//! repair path), optionally wait for it, read each repository's status, reload the config. Every
//! handler asks the guard first (scoped, expiring tokens; see [`crate::access`]).

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::guard::allow;
use super::{await_report, error};
use crate::access::Need;
use crate::daemon::{Daemon, RequestError};

/// How long `POST /api/reload?wait=true` waits for the reload (it reads files and binds a
/// changed `listen`: seconds at most, unless the disk hangs).
pub const RELOAD_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// How often a waiting reload request looks whether the reload happened.
const RELOAD_POLL: Duration = Duration::from_millis(20);

/// `?name=true` or `?name=1`.
fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// `GET /api/repos`: the repositories the caller may read, and the reload status.
pub async fn list(State(d): State<Daemon>, headers: HeaderMap) -> Response {
    let caller = match allow(&d, &headers, Need::Read(None)) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let repos: Vec<_> = d
        .statuses()
        .into_iter()
        .filter(|s| caller.may_read(&s.name))
        .collect();
    // Tokens disabled because their file cannot be read, for whoever may see everything.
    let disabled: Vec<_> = if caller.may_read_all() {
        let config = d.config();
        let named = config.api.tokens.iter();
        named
            .filter_map(|t| Some(json!({"name": t.name, "reason": t.disabled.as_ref()?})))
            .collect()
    } else {
        Vec::new()
    };
    Json(json!({ "repos": repos, "reload": d.reload_status(), "tokens_disabled": disabled }))
        .into_response()
}

pub async fn show(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&d, &headers, Need::Read(Some(&name))) {
        return *r;
    }
    match d.status(&name) {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such repository"),
    }
}

/// `POST /api/repos/{name}/sync[?wait=true|fleet][&force=true]` (in a fleet, every node syncs;
/// `wait=fleet` answers when every live node has the commit, see `fleet.rs`). A token limited to other
/// repositories is refused before the name is looked up, so it cannot probe which exist.
pub async fn sync(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let caller = match allow(&d, &headers, Need::Sync(&name)) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (wait, force) = (flag(&q, "wait"), flag(&q, "force"));
    if q.get("wait").is_some_and(|v| v == "fleet") {
        return super::fleet::sync_and_wait(&d, caller.name(), &name, force).await;
    }
    let requested = d.request_api_sync(&name, force, wait).await;
    if requested.is_ok() {
        tracing::info!(token = caller.name(), repo = %name, force, wait, "api sync requested");
    }
    match requested {
        Err(RequestError::UnknownRepo) => error(StatusCode::NOT_FOUND, "no such repository"),
        Err(RequestError::ShuttingDown) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        Ok(None) => {
            let mut body = json!({ "queued": [name] });
            if force {
                body["force"] = json!(true);
            }
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Ok(Some(rx)) => match await_report(rx).await {
            Ok(report) => {
                let status = if report.ok {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_GATEWAY
                };
                (status, Json(report)).into_response()
            }
            Err(answer) => answer,
        },
    }
}

/// `POST /api/reload[?wait=true]` (admin): re-reads the config as SIGHUP does. With `wait`, answers
/// after the reload with its status: 200, or 422 when the new config was refused.
pub async fn reload(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let caller = match allow(&d, &headers, Need::Admin) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let before = d.reload_status();
    let counted = |s: &crate::daemon::ReloadStatus| s.reloads + s.failures;
    if !d.request_reload() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available",
        );
    }
    tracing::info!(token = caller.name(), "api reload requested");
    if !flag(&q, "wait") {
        return (StatusCode::ACCEPTED, Json(json!({ "reload": "requested" }))).into_response();
    }
    let waited = tokio::time::timeout(RELOAD_WAIT_LIMIT, async {
        loop {
            let now = d.reload_status();
            if counted(&now) > counted(&before) {
                return now;
            }
            tokio::time::sleep(RELOAD_POLL).await;
        }
    })
    .await;
    match waited {
        Ok(status) if status.failures > before.failures => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "reload": status })),
        )
            .into_response(),
        Ok(status) => Json(json!({ "reload": status })).into_response(),
        Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "the reload is still running"),
    }
}
