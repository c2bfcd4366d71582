//! The HTTP API (Direktiv's `sync-mirror`, generalised): queue a sync, optionally wait for it,
//! and read each repository's status. A bearer token guards it; without a configured token the
//! read endpoints are open and the sync endpoint is disabled.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error;
use crate::daemon::{Daemon, RequestError, Trigger};

/// How long `?wait=true` waits for the sync before answering 504 (the sync goes on).
pub const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// `None` when the request may proceed, else the refusal. `write`: the endpoint changes something, so a token must
/// be configured at all.
pub(super) fn refusal(d: &Daemon, headers: &HeaderMap, write: bool) -> Option<Response> {
    let config = d.config();
    let Some(token) = &config.api_token else {
        return write.then(|| {
            error(
                StatusCode::FORBIDDEN,
                "the sync API is disabled: set api.token or api.token_file",
            )
        });
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or("");
    let expected = token.value.expose().as_bytes();
    if !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected)) {
        return None;
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

pub async fn list(State(d): State<Daemon>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&d, &headers, false) {
        return r;
    }
    Json(json!({ "repos": d.statuses(), "reload": d.reload_status() })).into_response()
}

pub async fn show(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = refusal(&d, &headers, false) {
        return r;
    }
    match d.status(&name) {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such repository"),
    }
}

/// `POST /api/repos/{name}/sync[?wait=true]`.
pub async fn sync(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refusal(&d, &headers, true) {
        return r;
    }
    let wait = q.get("wait").is_some_and(|v| v == "true" || v == "1");
    match d.request_sync(&name, Trigger::Api, None, wait) {
        Err(RequestError::UnknownRepo) => error(StatusCode::NOT_FOUND, "no such repository"),
        Err(RequestError::ShuttingDown) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        Ok(None) => (StatusCode::ACCEPTED, Json(json!({ "queued": [name] }))).into_response(),
        Ok(Some(rx)) => match tokio::time::timeout(WAIT_LIMIT, rx).await {
            Ok(Ok(report)) => {
                let status = if report.ok {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_GATEWAY
                };
                (status, Json(report)).into_response()
            }
            Ok(Err(_)) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the sync was abandoned (shutdown or repository removed)",
            ),
            Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "the sync is still running"),
        },
    }
}
