//! Webhook intake over HTTP: route by path, enforce the body limit and read timeout, verify over
//! the raw bytes, parse, dedupe, and queue syncs. Answers in milliseconds; never touches git.

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
use crate::config::{Config, Repo, Target};
use crate::daemon::{Daemon, RequestError, Trigger};
use crate::queue::Delivery;
use crate::secret::Secret;
use crate::url::match_key;
use crate::webhook::{self, Event, Provider, Push, VerifyOptions};

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
        Some(repo) => one_repo(&d, repo, headers, &body, opts),
        None => shared_endpoint(&d, &config, headers, &body, opts),
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
fn one_repo(
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
    deliver(d, &[repo], provider, headers, body)
}

/// The shared `/hooks` endpoint (organisation, group and system hooks): the delivery must verify
/// with some repo's secret; it then goes to those of them whose URL the payload names.
fn shared_endpoint(
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
    deliver(d, &verified, provider, headers, body)
}

/// Parses an authentic delivery and queues a sync for each repo whose URL and ref it names.
fn deliver(
    d: &Daemon,
    repos: &[&Repo],
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let event = match webhook::parse(provider, headers, body) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let delivery = webhook::delivery_id(headers);
    let push = match event {
        Event::Ping => {
            return (StatusCode::OK, Json(json!({ "ok": true, "event": "ping" }))).into_response();
        }
        Event::Ignored(reason) => return ignored(&reason),
        Event::Push(p) => p,
    };
    // Which repos this push is for; nothing is recorded for a delivery we ignore, so a
    // redelivery after fixing the config is processed.
    let mut targets = Vec::new();
    let mut reasons = Vec::new();
    for repo in repos {
        match wanted(d, repo, &push) {
            Ok(after) => targets.push((repo, after)),
            Err(why) if repos.len() == 1 => reasons.push(why),
            Err(why) => reasons.push(format!("{}: {why}", repo.name)),
        }
    }
    if targets.is_empty() {
        return ignored(&reasons.join("; "));
    }
    if let Some(id) = &delivery
        && let Some(earlier) = d.admit_delivery(id)
    {
        let state = match earlier {
            Delivery::Accepted => "accepted",
            Delivery::Succeeded => "succeeded",
            Delivery::Failed => "failed",
        };
        return (
            StatusCode::OK,
            Json(json!({ "duplicate": true, "delivery": id, "state": state })),
        )
            .into_response();
    }
    let mut queued = Vec::new();
    for (repo, after) in targets {
        let trigger = Trigger::Webhook {
            delivery: delivery.clone(),
        };
        match d.request_sync(&repo.name, trigger, after.as_deref(), false) {
            Ok(_) => queued.push(repo.name.clone()),
            Err(RequestError::ShuttingDown) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
            }
            Err(RequestError::UnknownRepo) => {
                reasons.push(format!("{}: removed from the config", repo.name))
            }
        }
    }
    if queued.is_empty() {
        return ignored(&reasons.join("; "));
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({ "queued": queued, "delivery": delivery })),
    )
        .into_response()
}

fn ignored(reason: &str) -> Response {
    (StatusCode::OK, Json(json!({ "ignored": reason }))).into_response()
}

/// Whether `push` concerns `repo`: the payload names the repo's URL (when it names any) and
/// updates its tracked ref. `Ok(after)` to sync (with the pushed commit as a hint), else why not.
fn wanted(d: &Daemon, repo: &Repo, push: &Push) -> Result<Option<String>, String> {
    if !push.repo_urls.is_empty() {
        let want = match_key(&repo.url);
        if !push
            .repo_urls
            .iter()
            .any(|u| want.is_some() && match_key(u) == want)
        {
            return Err("the payload names another repository".into());
        }
    }
    let tracked = match &repo.target {
        Target::DefaultBranch => d.remote_ref(&repo.name),
        t => t.remote_ref(),
    };
    let update = push.updates.iter().find(|u| match &tracked {
        Some(r) => &u.git_ref == r,
        // Default branch not known yet: any branch push may be it; a fetch settles it.
        None => u.git_ref.starts_with("refs/heads/"),
    });
    let Some(update) = update else {
        let refs: Vec<&str> = push.updates.iter().map(|u| u.git_ref.as_str()).collect();
        return Err(format!(
            "{} is not the tracked {}",
            refs.join(", "),
            repo.target
        ));
    };
    if update.deleted {
        tracing::info!(repo = %repo.name, r#ref = %update.git_ref, "tracked ref deleted upstream; checkout kept as it is");
        return Err(format!(
            "{} was deleted upstream; the checkout is kept",
            update.git_ref
        ));
    }
    Ok(update.after.clone())
}
