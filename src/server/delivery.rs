//! The authenticated-delivery extractor: a request to a webhook path becomes a [`Delivery`] —
//! routed by its path, its body read within the limits (`body.rs`), verified over the raw bytes
//! and parsed (`authenticate.rs`; on a blocking thread for a large body) — or a [`Rejection`]
//! that answers it (401, 400, 404, 405, 408, 413, 503). A handler that takes a `Delivery` only
//! ever sees an authentic, parsed one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::authenticate::{Authentic, Refused, Route, authenticate};
use super::body::{self, Unread};
use super::clients::Track;
use super::error;
use crate::config::{Config, Repo};
use crate::daemon::Daemon;
use crate::metrics::WebhookResult;
use crate::webhook::{self, Event, ParseError, Provider};

/// Bodies up to this size are verified and parsed on the async thread that read them (tens of
/// microseconds); larger ones on a blocking thread, so a 25 MB body (a MAC over it takes ~15 ms
/// per secret) never holds up the other connections that thread serves.
pub const INLINE_MAX: usize = 64 * 1024;

/// An authentic webhook delivery, parsed.
#[derive(Debug)]
pub struct Delivery {
    /// The repositories it reached: the one whose path it came in on, or on `/hooks` those its
    /// payload names (every one, when it names none, with `hooks.secret`) whose secret verified
    /// it. Indices into `config.repos`.
    pub repos: Vec<usize>,
    /// The forge whose format it was verified and parsed in.
    pub provider: Provider,
    pub event: Event,
    /// The forge's delivery id (its header), if it sent one.
    pub id: Option<String>,
    /// The forge its headers name, if any: what the request is counted under. It is `provider`
    /// unless the repository pins a provider the headers do not name.
    pub detected: Option<Provider>,
    /// The config it was verified against, which `repos` index.
    pub config: Arc<Config>,
}

impl Delivery {
    /// The repositories it reached.
    pub fn reached(&self) -> Vec<&Repo> {
        self.repos
            .iter()
            .filter_map(|&i| self.config.repos.get(i))
            .collect()
    }
}

/// Why a request to a webhook path yields no delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No webhook at this path, or its repository left the config meanwhile.
    NotFound,
    /// Webhooks are POSTed.
    MethodNotAllowed,
    /// Shutdown began.
    ShuttingDown,
    /// The body was too large, too slow, or broke off.
    Body(Unread),
    /// No secret verified it; answered without detail.
    Unauthorized,
    /// Authentic (or to a repository without a secret), but not understood.
    Malformed(ParseError),
    /// No secret to check and no forge header to tell the format.
    UnknownForge,
}

impl From<Refused> for Refusal {
    fn from(r: Refused) -> Refusal {
        match r {
            Refused::Unauthorized => Refusal::Unauthorized,
            Refused::Malformed(e) => Refusal::Malformed(e),
            Refused::UnknownForge => Refusal::UnknownForge,
            Refused::NotFound => Refusal::NotFound,
        }
    }
}

/// A refused request, with what it is counted and listed under.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub refusal: Refusal,
    /// The forge its headers name, if any.
    pub detected: Option<Provider>,
    /// Its delivery id, if it sent one.
    pub id: Option<String>,
}

impl Rejection {
    /// What the request counts as in `hookmirror_webhooks_total`; `None` for one refused at
    /// shutdown (not counted).
    pub fn result(&self) -> Option<WebhookResult> {
        Some(match &self.refusal {
            Refusal::NotFound => WebhookResult::NotFound,
            Refusal::Unauthorized => WebhookResult::Unauthorized,
            Refusal::Body(Unread::TooLarge) => WebhookResult::TooLarge,
            Refusal::MethodNotAllowed
            | Refusal::Body(Unread::TooSlow | Unread::Broken)
            | Refusal::Malformed(_)
            | Refusal::UnknownForge => WebhookResult::BadRequest,
            Refusal::ShuttingDown => return None,
        })
    }

    /// Whether the request passed its signature check (or needed none): only those are listed
    /// on the status page, which anyone could otherwise flush with ids of their choosing.
    pub fn verified(&self) -> bool {
        matches!(self.refusal, Refusal::Malformed(_))
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self.refusal {
            Refusal::NotFound => error(StatusCode::NOT_FOUND, "not found"),
            Refusal::MethodNotAllowed => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "webhooks are POSTed");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                r
            }
            Refusal::ShuttingDown => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
            Refusal::Body(unread) => {
                let (status, message) = unread.answer();
                error(status, message)
            }
            Refusal::Unauthorized => {
                error(StatusCode::UNAUTHORIZED, "signature missing or invalid")
            }
            Refusal::Malformed(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            Refusal::UnknownForge => error(
                StatusCode::BAD_REQUEST,
                "cannot tell which forge sent this delivery",
            ),
        }
    }
}

impl FromRequest<Daemon> for Delivery {
    type Rejection = Rejection;

    async fn from_request(request: Request, daemon: &Daemon) -> Result<Delivery, Rejection> {
        let detected = Provider::detect(request.headers());
        let id = webhook::delivery_id(request.headers());
        match extract(request, daemon, detected).await {
            Ok((authentic, config)) => Ok(Delivery {
                repos: authentic.repos,
                provider: authentic.provider,
                event: authentic.event,
                id,
                detected,
                config,
            }),
            Err(refusal) => Err(Rejection {
                refusal,
                detected,
                id,
            }),
        }
    }
}

/// Route → method → intake open → body → verify and parse, each refusal as early as it can be
/// told. `detected`: the forge the headers name.
async fn extract(
    request: Request,
    daemon: &Daemon,
    detected: Option<Provider>,
) -> Result<(Authentic, Arc<Config>), Refusal> {
    // Taken apart rather than extracted: the `HeaderMap` extractor would copy the headers.
    let (parts, body) = request.into_parts();
    let config = daemon.config();
    let route = Route::of(&config, parts.uri.path()).ok_or(Refusal::NotFound)?;
    if parts.method != Method::POST {
        return Err(Refusal::MethodNotAllowed);
    }
    if !daemon.intake_open() {
        return Err(Refusal::ShuttingDown);
    }
    let body = body::read(&config.limits, &parts.headers, body)
        .await
        .map_err(Refusal::Body)?;
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
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Refusal::ShuttingDown)?
    };
    Ok((checked?, config))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use http_body_util::BodyExt;

    use super::*;
    use crate::config::tests_support::config;
    use crate::webhook::test_support::hmac_sha256_hex;

    /// `site` on its own path with secret `s`, `open` without a secret; bodies up to 1 MiB.
    fn daemon() -> Daemon {
        let yaml = "limits: {max_body: 1MiB}\nrepos:\n  \
            - {name: site, url: 'https://h/site.git', directory: /srv/site, secret: s}\n  \
            - {name: open, url: 'https://h/open.git', directory: /srv/open, insecure_no_secret: true}\n";
        let mut config = config(yaml);
        config.workers = 0;
        Daemon::new(config)
    }

    fn push(after: char, pad: usize) -> Vec<u8> {
        format!(
            r#"{{"ref":"refs/heads/main","before":"{z}","after":"{a}","repository":{{"clone_url":"https://h/site.git"}},"pad":"{p}"}}"#,
            z = "0".repeat(40),
            a = after.to_string().repeat(40),
            p = "x".repeat(pad),
        )
        .into_bytes()
    }

    /// A POST to `path` signed with `secret` (unsigned: `None`), as GitHub sends it.
    fn post(path: &str, secret: Option<&str>, body: Vec<u8>) -> Request {
        let mut r = Request::builder()
            .method("POST")
            .uri(path)
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", "d-1");
        if let Some(secret) = secret {
            let sig = format!("sha256={}", hmac_sha256_hex(secret, &body));
            r = r.header("X-Hub-Signature-256", sig);
        }
        r.body(Body::from(body)).unwrap()
    }

    async fn refused(d: &Daemon, request: Request) -> (Rejection, StatusCode, String) {
        let rejection = Delivery::from_request(request, d).await.unwrap_err();
        let response = rejection.clone().into_response();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (rejection, status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn an_authentic_push_becomes_a_delivery_of_its_repository() {
        let d = daemon();
        for pad in [0, INLINE_MAX] {
            // Inline, and (past INLINE_MAX) verified and parsed on a blocking thread.
            let request = post("/hooks/site", Some("s"), push('a', pad));
            let delivery = Delivery::from_request(request, &d).await.unwrap();
            assert_eq!(delivery.repos, [0]);
            assert_eq!(delivery.provider, Provider::Github);
            assert_eq!(delivery.detected, Some(Provider::Github));
            assert_eq!(delivery.id.as_deref(), Some("d-1"));
            assert_eq!(delivery.reached()[0].name, "site");
            let Event::Push(push) = &delivery.event else {
                panic!("a push: {:?}", delivery.event);
            };
            assert_eq!(push.updates[0].after, Some("a".repeat(40)));
        }
    }

    #[tokio::test]
    async fn each_refusal_answers_as_before_and_counts_as_its_result() {
        let d = daemon();
        let cases: Vec<(Request, StatusCode, &str, Option<WebhookResult>, bool)> = vec![
            (
                post("/nowhere", Some("s"), push('a', 0)),
                StatusCode::NOT_FOUND,
                r#"{"error":"not found"}"#,
                Some(WebhookResult::NotFound),
                false,
            ),
            (
                Request::builder()
                    .uri("/hooks/site")
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"webhooks are POSTed"}"#,
                Some(WebhookResult::BadRequest),
                false,
            ),
            (
                post("/hooks/site", Some("s"), push('a', 1024 * 1024)),
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"error":"body too large"}"#,
                Some(WebhookResult::TooLarge),
                false,
            ),
            (
                post("/hooks/site", Some("wrong"), push('a', 0)),
                StatusCode::UNAUTHORIZED,
                r#"{"error":"signature missing or invalid"}"#,
                Some(WebhookResult::Unauthorized),
                false,
            ),
            (
                post("/hooks/site", None, push('a', 0)),
                StatusCode::UNAUTHORIZED,
                r#"{"error":"signature missing or invalid"}"#,
                Some(WebhookResult::Unauthorized),
                false,
            ),
            (
                post("/hooks", Some("s"), b"not json".to_vec()),
                StatusCode::UNAUTHORIZED,
                r#"{"error":"signature missing or invalid"}"#,
                Some(WebhookResult::Unauthorized),
                false,
            ),
            (
                Request::builder()
                    .method("POST")
                    .uri("/hooks/open")
                    .body(Body::from(push('a', 0)))
                    .unwrap(),
                StatusCode::BAD_REQUEST,
                r#"{"error":"cannot tell which forge sent this delivery"}"#,
                Some(WebhookResult::BadRequest),
                false,
            ),
        ];
        for (request, status, body, result, verified) in cases {
            let path = request.uri().path().to_string();
            let (rejection, got_status, got_body) = refused(&d, request).await;
            assert_eq!((got_status, got_body.as_str()), (status, body), "{path}");
            assert_eq!(rejection.result(), result, "{path}");
            assert_eq!(rejection.verified(), verified, "{path}");
        }
        // The 405 says which method is allowed.
        let request = Request::builder()
            .uri("/hooks/site")
            .body(Body::empty())
            .unwrap();
        let answer = Delivery::from_request(request, &d)
            .await
            .unwrap_err()
            .into_response();
        assert_eq!(answer.headers()[header::ALLOW], "POST");
    }

    #[tokio::test]
    async fn an_authentic_payload_not_understood_is_listed_and_one_at_shutdown_not_counted() {
        let d = daemon();
        let (rejection, status, _) =
            refused(&d, post("/hooks/site", Some("s"), b"[1]".to_vec())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(matches!(rejection.refusal, Refusal::Malformed(_)));
        assert_eq!(rejection.result(), Some(WebhookResult::BadRequest));
        assert!(rejection.verified(), "verified before it was parsed");
        assert_eq!(rejection.id.as_deref(), Some("d-1"));

        d.close_intake();
        let (rejection, status, body) =
            refused(&d, post("/hooks/site", Some("s"), push('a', 0))).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"shutting down"}"#
            )
        );
        assert_eq!(rejection.result(), None, "not counted");
    }
}
