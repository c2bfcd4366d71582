//! The read-only observability endpoints: `/metrics`, `/readyz`, the status page at `/` and
//! `/api/repos/{name}/history`. Every one of them but `/readyz` passes the API's guard
//! ([`super::guard::allow`]) with a read; `/readyz` is open to probes, and shows repository
//! names and errors only to a caller that may read them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::guard::{self, allow};
use super::{error, page};
use crate::access::{Caller, Need};
use crate::daemon::Daemon;
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, wants_openmetrics};

/// A read of `repo` (`None`: of everything, filtered to what the caller may see).
fn read(d: &Daemon, headers: &HeaderMap, repo: Option<&str>) -> Result<Caller, Box<Response>> {
    allow(d, headers, Need::Read(repo))
}

/// `GET /metrics`: the Prometheus text format, or OpenMetrics when `Accept` asks for it.
pub async fn metrics(State(d): State<Daemon>, headers: HeaderMap) -> Response {
    match read(&d, &headers, None) {
        // The series name every repository: a token limited to some may not read them.
        Ok(caller) if !caller.may_read_all() => {
            return error(
                StatusCode::FORBIDDEN,
                &format!("token `{}` lacks access to every repository", caller.name()),
            );
        }
        Ok(_) => {}
        Err(r) => return *r,
    }
    if !d.metrics_enabled() {
        return error(
            StatusCode::NOT_FOUND,
            "metrics are off (HOOKMIRROR_METRICS=off)",
        );
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(wants_openmetrics);
    let body = d.metrics_text(openmetrics);
    let content_type = if openmetrics {
        OPENMETRICS_CONTENT_TYPE
    } else {
        TEXT_CONTENT_TYPE
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /readyz`: 200 once every repository had its first sync and none fails past
/// `health.max_consecutive_failures`; else 503 with how many are not ready (`unready`) and,
/// for a caller that may read them (anyone unless `api.protect_reads`), which and why
/// (`repos`). Open, like `/healthz`: a probe needs only the status. In a fleet the body says how
/// this node's link is (`fleet`: `connected` or `degraded`): a degraded link does not make the
/// node unready, since it keeps syncing and keeps what it accepts until the fleet is back.
pub async fn readyz(State(d): State<Daemon>, headers: HeaderMap) -> Response {
    // Open to anyone: the link's state only, not its error (which names servers).
    let fleet = d.relay().map(|r| {
        if r.connected() {
            "connected"
        } else {
            "degraded"
        }
    });
    if !d.intake_open() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": "shutting down", "repos": [] })),
        )
            .into_response();
    }
    let unready = d.unready();
    let (status, mut body) = if unready.is_empty() {
        (StatusCode::OK, json!({ "ready": true }))
    } else {
        let mut body = json!({ "ready": false, "unready": unready.len() });
        // Names and error texts (URLs, a remote's messages) only for whoever may read them;
        // no refusal is logged, as probes poll without a token.
        match guard::peek(&d, &headers, Need::Read(None)) {
            Some(caller) => {
                let shown: Vec<_> = unready
                    .iter()
                    .filter(|u| caller.may_read(&u.name))
                    .collect();
                body["repos"] = json!(shown);
            }
            None => {
                body["detail"] = json!("repository names and errors need a token with `read`");
            }
        }
        (StatusCode::SERVICE_UNAVAILABLE, body)
    };
    if let Some(f) = fleet {
        body["fleet"] = json!(f);
    }
    (status, Json(body)).into_response()
}

/// `GET /`: the status page.
pub async fn status_page(State(d): State<Daemon>, headers: HeaderMap) -> Response {
    let caller = match read(&d, &headers, None) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let repos: Vec<_> = d
        .statuses()
        .into_iter()
        .filter(|r| caller.may_read(&r.name))
        .collect();
    let histories: Vec<_> = repos
        .iter()
        .map(|r| d.history(&r.name).unwrap_or_default())
        .collect();
    let deliveries = d.deliveries();
    let unready = d.unready();
    let fleet = match d.relay() {
        Some(relay) => Some(relay.view(&|repo: &str| caller.may_read(repo)).await),
        None => None,
    };
    let html = page::render(&page::Page {
        now: chrono::Utc::now(),
        version: env!("CARGO_PKG_VERSION"),
        repos: &repos,
        histories: &histories,
        deliveries: &deliveries,
        unready: &unready,
        fleet: fleet.as_ref(),
    });
    let mut r = Html(html).into_response();
    let headers = r.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(csp) = HeaderValue::from_str(&page::content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    r
}

/// `GET /api/repos/{name}/history`: the last syncs, oldest first.
pub async fn history(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = read(&d, &headers, Some(&name)) {
        return *r;
    }
    match d.history(&name) {
        Some(syncs) => Json(json!({ "name": name, "syncs": syncs })).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such repository"),
    }
}
