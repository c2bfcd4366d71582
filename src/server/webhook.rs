//! Webhook intake over HTTP: route by path, enforce the body limit and read timeout, verify over
//! the raw bytes, parse, hand the push to the domain ([`Daemon::deliver`]) and map its answer to
//! a status code. Answers in milliseconds; never touches git.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::error;
use crate::config::{Config, Repo};
use crate::daemon::{Daemon, Delivered};
use crate::queue;
use crate::secret::Secret;
use crate::webhook::{self, Event, Provider, VerifyOptions};

/// Handles every request no other route took: webhook paths (per repo and the shared `/hooks`),
/// and 404 for the rest.
pub async fn handle(State(d): State<Daemon>, request: Request) -> Response {
    // Taken apart rather than extracted: the `HeaderMap` extractor would copy the headers.
    let (parts, body) = request.into_parts();
    let (method, headers) = (&parts.method, &parts.headers);
    let config = d.config();
    let path = parts.uri.path();
    let shared = path == "/hooks" || path == "/hooks/";
    let repo = if shared {
        None
    } else {
        config.repos.iter().find(|r| r.path == path)
    };
    if !shared && repo.is_none() {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    if method != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "webhooks are POSTed");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    if !d.intake_open() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let body = match read_body(&config, headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let opts = VerifyOptions {
        allow_sha1: false,
        now_unix: unix_now(),
    };
    match repo {
        Some(repo) => one_repo(&d, repo, headers, &body, opts).await,
        None => shared_endpoint(&d, &config, headers, &body, opts).await,
    }
}

/// Reads the body within the size limit and the read timeout: 413 when too large (announced or
/// not), 408 when the sender is too slow.
async fn read_body(
    config: &Config,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, Response> {
    let max = config.limits.max_body;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    }
    match tokio::time::timeout(
        config.limits.body_timeout,
        Limited::new(body, max).collect(),
    )
    .await
    {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))
        }
        Ok(Err(_)) => Err(error(StatusCode::BAD_REQUEST, "body could not be read")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

fn secrets(repo: &Repo) -> Vec<Secret> {
    repo.secrets.iter().map(|c| c.value.clone()).collect()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "signature missing or invalid")
}

/// A repo's own path: verify with its secrets (its pinned provider only, if it pins one).
async fn one_repo(
    d: &Daemon,
    repo: &Repo,
    headers: &HeaderMap,
    body: &[u8],
    opts: VerifyOptions,
) -> Response {
    let Some(provider) = repo.provider.or_else(|| Provider::detect(headers)) else {
        return if repo.secrets.is_empty() {
            error(
                StatusCode::BAD_REQUEST,
                "cannot tell which forge sent this delivery",
            )
        } else {
            tracing::warn!(repo = %repo.name, "webhook refused: no forge signature headers");
            unauthorized()
        };
    };
    if !repo.secrets.is_empty() {
        let opts = VerifyOptions {
            allow_sha1: repo.allow_sha1,
            ..opts
        };
        if let Err(e) = webhook::verify(provider, headers, body, &secrets(repo), &opts) {
            tracing::warn!(repo = %repo.name, provider = provider.as_str(), reason = %e, "webhook refused");
            return unauthorized();
        }
    }
    deliver(d, &[repo], provider, headers, body).await
}

/// The shared `/hooks` endpoint (organisation, group and system hooks): the delivery must verify
/// with some repo's secret; it then goes to those of them whose URL the payload names.
async fn shared_endpoint(
    d: &Daemon,
    config: &Config,
    headers: &HeaderMap,
    body: &[u8],
    opts: VerifyOptions,
) -> Response {
    let Some(provider) = Provider::detect(headers) else {
        tracing::warn!("webhook on /hooks refused: no forge signature headers");
        return unauthorized();
    };
    let verified: Vec<&Repo> = config
        .repos
        .iter()
        .filter(|r| !r.secrets.is_empty() && r.provider.is_none_or(|p| p == provider))
        .filter(|r| {
            let opts = VerifyOptions {
                allow_sha1: r.allow_sha1,
                ..opts
            };
            webhook::verify(provider, headers, body, &secrets(r), &opts).is_ok()
        })
        .collect();
    if verified.is_empty() {
        tracing::warn!(
            provider = provider.as_str(),
            "webhook on /hooks refused: no repository's secret verifies it"
        );
        return unauthorized();
    }
    deliver(d, &verified, provider, headers, body).await
}

/// Parses an authentic delivery and hands a push to the domain (in a fleet, the 202 waits until
/// the fleet stored it); maps its answer to a status.
async fn deliver(
    d: &Daemon,
    repos: &[&Repo],
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let push = match webhook::parse(provider, headers, body) {
        Ok(Event::Push(p)) => p,
        Ok(Event::Ping) => {
            return (StatusCode::OK, Json(json!({ "ok": true, "event": "ping" }))).into_response();
        }
        Ok(Event::Ignored(reason)) => return ignored(&reason),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let delivery = webhook::delivery_id(headers);
    match d.deliver_push(repos, &push, delivery.as_deref()).await {
        Delivered::Queued { repos, .. } => (
            StatusCode::ACCEPTED,
            Json(json!({ "queued": repos, "delivery": delivery })),
        )
            .into_response(),
        Delivered::Ignored(reason) => ignored(&reason),
        Delivered::Duplicate(earlier) => {
            let state = match earlier {
                queue::Delivery::Accepted => "accepted",
                queue::Delivery::Succeeded => "succeeded",
                queue::Delivery::Failed => "failed",
            };
            (
                StatusCode::OK,
                Json(json!({ "duplicate": true, "delivery": delivery, "state": state })),
            )
                .into_response()
        }
        Delivered::ShuttingDown => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

fn ignored(reason: &str) -> Response {
    (StatusCode::OK, Json(json!({ "ignored": reason }))).into_response()
}
