//! Webhook intake over HTTP: route by path, read the body (`body.rs`), verify over the raw bytes
//! and parse (on a blocking thread for a large body), hand the push to the domain
//! ([`Daemon::deliver`]) and map its answer to a status code. Answers in milliseconds; never
//! touches git.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::clients::Track;
use super::{body, error};
use crate::config::{Config, Hooks, Repo};
use crate::daemon::{Daemon, Delivered};
use crate::metrics::WebhookResult;
use crate::queue;
use crate::secret::Secret;
use crate::url::match_key;
use crate::webhook::{self, Event, Provider, VerifyOptions};

/// Bodies up to this size are verified and parsed on the async thread that read them (tens of
/// microseconds); larger ones on a blocking thread, so a 25 MB body (a MAC over it takes ~15 ms
/// per secret) never holds up the other connections that thread serves.
pub const INLINE_MAX: usize = 64 * 1024;

/// Where a delivery came in.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// A repository's own path: index into `config.repos`.
    Repo(usize),
    /// The shared `/hooks` endpoint.
    Shared,
}

/// An authentic delivery, parsed: the repositories it reached (indices into `config.repos`).
struct Authentic {
    repos: Vec<usize>,
    provider: Provider,
    event: Event,
}

/// Handles every request no other route took: webhook paths (per repo and the shared `/hooks`),
/// and 404 for the rest. Each is counted by forge and result, and listed on the status page.
pub async fn handle(State(d): State<Daemon>, request: Request) -> Response {
    // Read once from the headers: the intake needs both, and so does the record.
    let detected = Provider::detect(request.headers());
    let delivery = webhook::delivery_id(request.headers());
    let r = intake(&d, request, detected, delivery.as_deref()).await;
    if d.metrics_enabled()
        && let Some(result) = outcome(&r)
    {
        let forge = detected.map_or("unknown", Provider::as_str);
        let verified = r.extensions().get::<Verified>().is_some();
        d.record_delivery(forge, delivery.as_deref(), result, verified);
    }
    r
}

/// Marks an answer given to a delivery that verified (or needed no secret): only those are
/// listed on the status page.
#[derive(Debug, Clone, Copy)]
struct Verified;

fn verified(mut r: Response) -> Response {
    r.extensions_mut().insert(Verified);
    r
}

/// What became of a request, for the metrics: the answers that carry it say so (an extension),
/// the rest by status. A 503 at shutdown is not counted.
fn outcome(r: &Response) -> Option<WebhookResult> {
    if let Some(result) = r.extensions().get::<WebhookResult>() {
        return Some(*result);
    }
    match r.status() {
        StatusCode::ACCEPTED => Some(WebhookResult::Queued),
        StatusCode::UNAUTHORIZED => Some(WebhookResult::Unauthorized),
        StatusCode::NOT_FOUND => Some(WebhookResult::NotFound),
        StatusCode::PAYLOAD_TOO_LARGE => Some(WebhookResult::TooLarge),
        s if s.is_client_error() => Some(WebhookResult::BadRequest),
        _ => None,
    }
}

/// Marks an answer with what became of the delivery.
fn with_result(mut r: Response, result: WebhookResult) -> Response {
    r.extensions_mut().insert(result);
    r
}

/// `detected`: the forge the headers name ([`Provider::detect`]); `delivery`: their delivery id.
async fn intake(
    d: &Daemon,
    request: Request,
    detected: Option<Provider>,
    delivery: Option<&str>,
) -> Response {
    // Taken apart rather than extracted: the `HeaderMap` extractor would copy the headers.
    let (parts, body) = request.into_parts();
    let method = &parts.method;
    let config = d.config();
    let path = parts.uri.path();
    let route = if path == "/hooks" || path == "/hooks/" {
        Route::Shared
    } else {
        match config.repo_at_path(path) {
            Some(i) => Route::Repo(i),
            None => return error(StatusCode::NOT_FOUND, "not found"),
        }
    };
    if method != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "webhooks are POSTed");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    if !d.intake_open() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let body = match body::read(&config.limits, &parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(track) = parts.extensions.get::<Arc<Track>>() {
        track.received();
    }
    let headers = parts.headers;
    let now_unix = unix_now();
    let checked = if body.len() <= INLINE_MAX {
        authenticate(&config, route, &headers, &body, now_unix, detected)
    } else {
        let config = config.clone();
        let work = move || authenticate(&config, route, &headers, &body, now_unix, detected);
        match tokio::task::spawn_blocking(work).await {
            Ok(done) => done,
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    };
    match checked {
        Ok(authentic) => verified(deliver(d, &config, authentic, delivery).await),
        // Reported only once the signature verified (or the repository has no secret).
        Err(refusal @ Refusal::Malformed(_)) => verified(refusal.response()),
        Err(refusal) => refusal.response(),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

/// Why a delivery is refused before it reaches the domain.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// 401, without detail.
    Unauthorized,
    /// 400: authentic, but not understood.
    Malformed(webhook::ParseError),
    /// 400: no secret to check and no forge header to tell the format.
    UnknownForge,
    /// 404: the repository left the config meanwhile.
    NotFound,
}

impl Refusal {
    fn response(&self) -> Response {
        match self {
            Refusal::Unauthorized => {
                error(StatusCode::UNAUTHORIZED, "signature missing or invalid")
            }
            Refusal::Malformed(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            Refusal::UnknownForge => error(
                StatusCode::BAD_REQUEST,
                "cannot tell which forge sent this delivery",
            ),
            Refusal::NotFound => error(StatusCode::NOT_FOUND, "not found"),
        }
    }
}

/// Verifies the delivery (over the raw bytes, before anything else when the route names its
/// secrets) and parses it. `detected`: the forge the headers name. Pure and synchronous: runs
/// inline or on a blocking thread.
fn authenticate(
    config: &Config,
    route: Route,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refusal> {
    match route {
        Route::Repo(i) => one_repo(config, i, headers, body, now_unix, detected),
        Route::Shared => match &config.hooks {
            Some(hooks) => shared_secret(config, hooks, headers, body, now_unix, detected),
            None => named_repos(config, headers, body, now_unix, detected),
        },
    }
}

/// Parses an authentic delivery: 400 when it cannot be understood.
fn parsed(
    repos: Vec<usize>,
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Authentic, Refusal> {
    match webhook::parse(provider, headers, body) {
        Ok(event) => Ok(Authentic {
            repos,
            provider,
            event,
        }),
        Err(e) => Err(Refusal::Malformed(e)),
    }
}

/// A repo's own path: verify with its secrets (its pinned provider only, if it pins one).
fn one_repo(
    config: &Config,
    i: usize,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refusal> {
    let Some(repo) = config.repos.get(i) else {
        return Err(Refusal::NotFound);
    };
    let Some(provider) = repo.provider.or(detected) else {
        return Err(if repo.secrets.is_empty() {
            Refusal::UnknownForge
        } else {
            tracing::warn!(repo = %repo.name, "webhook refused: no forge signature headers");
            Refusal::Unauthorized
        });
    };
    if !repo.secrets.is_empty() {
        let opts = VerifyOptions {
            allow_sha1: repo.allow_sha1,
            now_unix,
        };
        if let Err(e) = webhook::verify(provider, headers, body, &repo.secrets, &opts) {
            tracing::warn!(repo = %repo.name, provider = provider.as_str(), reason = %e, "webhook refused");
            return Err(Refusal::Unauthorized);
        }
    }
    parsed(vec![i], provider, headers, body)
}

/// `/hooks` with `hooks.secret`: one MAC per configured secret, whatever the repo count. The
/// delivery reaches the repositories its payload names (every one when it names none: the ref
/// decides).
fn shared_secret(
    config: &Config,
    hooks: &Hooks,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refusal> {
    let provider = hooks.provider.or(detected);
    let Some(provider) = provider.filter(|p| hooks.provider.is_none_or(|h| h == *p)) else {
        tracing::warn!("webhook on /hooks refused: no forge signature headers");
        return Err(Refusal::Unauthorized);
    };
    let opts = VerifyOptions {
        allow_sha1: hooks.allow_sha1,
        now_unix,
    };
    if let Err(e) = webhook::verify(provider, headers, body, &hooks.secrets, &opts) {
        tracing::warn!(provider = provider.as_str(), reason = %e, "webhook on /hooks refused");
        return Err(Refusal::Unauthorized);
    }
    let mut authentic = parsed(Vec::new(), provider, headers, body)?;
    let accepts = |r: &Repo| r.provider.is_none_or(|p| p == provider);
    authentic.repos = match &authentic.event {
        Event::Push(push) if !push.repo_urls.is_empty() => named(config, &push.repo_urls, accepts),
        _ => (0..config.repos.len())
            .filter(|&i| accepts(&config.repos[i]))
            .collect(),
    };
    Ok(authentic)
}

/// `/hooks` without `hooks.secret`: the delivery must verify with the secret of a repository its
/// payload names. The payload is read first — one bounded pass that keeps only the repository
/// URLs and refs (the same reader the authentic path uses) and starts nothing — to find those
/// repositories by their URL's match key; only their secrets are tried, each distinct one once.
/// So a request costs one read of the body plus a MAC per distinct secret among the repositories
/// sharing the URL it names, never one per configured repository. Unauthenticated, nothing of
/// what was read is answered: every refusal is the same 401.
fn named_repos(
    config: &Config,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refusal> {
    let Some(provider) = detected else {
        tracing::warn!("webhook on /hooks refused: no forge signature headers");
        return Err(Refusal::Unauthorized);
    };
    let refused = |why: &str| {
        tracing::warn!(
            provider = provider.as_str(),
            "webhook on /hooks refused: {why}"
        );
        Err(Refusal::Unauthorized)
    };
    let event = webhook::parse(provider, headers, body);
    let urls = match &event {
        Ok(Event::Push(push)) => push.repo_urls.as_slice(),
        _ => &[],
    };
    let candidates = named(config, urls, |r: &Repo| {
        !r.secrets.is_empty() && r.provider.is_none_or(|p| p == provider)
    });
    let mut tried: Vec<(Vec<&Secret>, bool, bool)> = Vec::new();
    let mut verified = Vec::new();
    for &i in &candidates {
        let repo = &config.repos[i];
        let keys: Vec<&Secret> = repo.secrets.iter().map(|c| &c.value).collect();
        let known = tried
            .iter()
            .find(|(k, sha1, _)| *k == keys && *sha1 == repo.allow_sha1);
        let ok = match known {
            Some(&(_, _, ok)) => ok,
            None => {
                let opts = VerifyOptions {
                    allow_sha1: repo.allow_sha1,
                    now_unix,
                };
                let ok = webhook::verify(provider, headers, body, &keys, &opts).is_ok();
                tried.push((keys, repo.allow_sha1, ok));
                ok
            }
        };
        if ok {
            verified.push(i);
        }
    }
    if candidates.is_empty() {
        // As much work as for one named repository, so the answer's timing does not tell which
        // repository URLs are configured.
        let opts = VerifyOptions {
            allow_sha1: false,
            now_unix,
        };
        let decoy = [Secret::new(DECOY_KEY)];
        let _ = webhook::verify(provider, headers, body, &decoy, &opts);
        return refused("it names no repository that has a secret (hooks.secret verifies any)");
    }
    if verified.is_empty() {
        return refused("no secret of a repository it names verifies it");
    }
    match event {
        Ok(event) => Ok(Authentic {
            repos: verified,
            provider,
            event,
        }),
        // Only a push that parsed names URLs, so a verified delivery always parsed.
        Err(e) => Err(Refusal::Malformed(e)),
    }
}

/// The key of the MAC computed when no repository is named; verifies nothing a forge signs.
const DECOY_KEY: &str = "hookmirror: no repository is named";

/// Indices of the repositories whose URL has the match key of one of `urls` and that `accepts`,
/// each once, in config order.
fn named(config: &Config, urls: &[String], accepts: impl Fn(&Repo) -> bool) -> Vec<usize> {
    let mut found: Vec<usize> = urls
        .iter()
        .filter_map(|u| match_key(u))
        .flat_map(|key| config.by_match_key.get(&key).cloned().unwrap_or_default())
        .filter(|&i| config.repos.get(i).is_some_and(&accepts))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Hands an authentic delivery to the domain; maps its answer to a status.
async fn deliver(
    d: &Daemon,
    config: &Config,
    authentic: Authentic,
    delivery: Option<&str>,
) -> Response {
    let Authentic {
        repos,
        provider,
        event,
    } = authentic;
    let push = match event {
        Event::Push(p) => p,
        Event::Ping => {
            let r = (StatusCode::OK, Json(json!({ "ok": true, "event": "ping" }))).into_response();
            return with_result(r, WebhookResult::Ping);
        }
        Event::Ignored(reason) => return ignored(&reason),
    };
    let repos: Vec<&Repo> = repos.iter().filter_map(|&i| config.repos.get(i)).collect();
    if repos.is_empty() {
        tracing::info!(
            provider = provider.as_str(),
            "push on /hooks names no configured repository"
        );
        return ignored("the payload names no configured repository");
    }
    match d.deliver_push(&repos, &push, delivery).await {
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
            let r = (
                StatusCode::OK,
                Json(json!({ "duplicate": true, "delivery": delivery, "state": state })),
            )
                .into_response();
            with_result(r, WebhookResult::Duplicate)
        }
        Delivered::ShuttingDown => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

fn ignored(reason: &str) -> Response {
    let r = (StatusCode::OK, Json(json!({ "ignored": reason }))).into_response();
    with_result(r, WebhookResult::Ignored)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::tests_support::config;
    use crate::webhook::test_support::{headers, hmac_sha256_hex};

    /// `n` repositories `r0`…, each following `https://h/r{i}.git` with secret `s{i}`; `r0` and
    /// `r1` follow the same URL.
    fn many(n: usize, top: &str) -> Config {
        let repos: String = (0..n)
            .map(|i| {
                let url = format!("https://h/r{}.git", i.max(1));
                format!("  - {{name: r{i}, url: '{url}', directory: /srv/r{i}, secret: s{i}}}\n")
            })
            .collect();
        config(&format!("{top}repos:\n{repos}"))
    }

    fn push(url: &str) -> Vec<u8> {
        format!(
            r#"{{"ref":"refs/heads/main","before":"{z}","after":"{a}","repository":{{"clone_url":"{url}"}}}}"#,
            z = "0".repeat(40),
            a = "a".repeat(40)
        )
        .into_bytes()
    }

    fn github(secret: &str, body: &[u8]) -> HeaderMap {
        let sig = format!("sha256={}", hmac_sha256_hex(secret, body));
        headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)])
    }

    #[test]
    fn a_path_routes_to_its_repository_among_many() {
        let c = many(300, "");
        for i in [0, 1, 150, 299] {
            assert_eq!(c.repo_at_path(&format!("/hooks/r{i}")), Some(i));
        }
        assert_eq!(c.repo_at_path("/hooks/r300"), None);
        assert_eq!(c.repo_at_path("/hooks"), None);
    }

    fn shared(config: &Config, secret: &str, body: &[u8]) -> Result<Vec<usize>, Refusal> {
        let headers = github(secret, body);
        let detected = Provider::detect(&headers);
        authenticate(config, Route::Shared, &headers, body, 0, detected).map(|a| a.repos)
    }

    #[test]
    fn shared_endpoint_tries_only_the_repositories_a_payload_names() {
        let c = many(50, "");
        assert_eq!(named(&c, &["https://h/r7".into()], |_| true), [7]);
        assert_eq!(
            named(&c, &["git@h:R1.git".into(), "https://h/r1".into()], |_| {
                true
            }),
            [0, 1],
            "both repositories of the URL, each once"
        );
        let body = push("https://h/r7.git");
        assert_eq!(shared(&c, "s7", &body), Ok(vec![7]));
        // Another repository's secret does not verify for r7, even a configured one.
        assert_eq!(shared(&c, "s8", &body), Err(Refusal::Unauthorized));
        // Of two repositories sharing a URL, only the one whose secret verifies.
        assert_eq!(shared(&c, "s1", &push("https://h/r1.git")), Ok(vec![1]));
        // Naming nothing configured, or not a push at all: refused like a bad signature (the
        // sender is not authenticated, so it learns nothing).
        let elsewhere = push("https://h/elsewhere.git");
        assert_eq!(shared(&c, "s7", &elsewhere), Err(Refusal::Unauthorized));
        assert_eq!(shared(&c, "s7", b"not json"), Err(Refusal::Unauthorized));
        let unsigned = headers(&[("X-GitHub-Event", "push")]);
        let r = authenticate(
            &c,
            Route::Shared,
            &unsigned,
            &body,
            0,
            Provider::detect(&unsigned),
        );
        assert_eq!(r.map(|a| a.repos), Err(Refusal::Unauthorized));
    }

    #[test]
    fn with_hooks_secret_only_it_verifies_the_shared_endpoint() {
        let c = many(3, "hooks: {secrets: [old, org]}\n");
        let body = push("https://h/r2.git");
        assert_eq!(shared(&c, "org", &body), Ok(vec![2]));
        assert_eq!(shared(&c, "old", &body), Ok(vec![2]), "rotation");
        assert_eq!(shared(&c, "s2", &body), Err(Refusal::Unauthorized));
        // Authentic, but naming none: reaches none (answered "ignored"); malformed: 400.
        assert_eq!(shared(&c, "org", &push("https://h/x.git")), Ok(vec![]));
        assert!(matches!(
            shared(&c, "org", b"[]"),
            Err(Refusal::Malformed(_))
        ));
    }
}
