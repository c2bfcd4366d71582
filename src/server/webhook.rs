//! The webhook handler: every request no other route took arrives here as an authentic, parsed
//! [`Delivery`] or as the [`Rejection`] that answers it (the extractor, `delivery.rs`). A delivery
//! is handed to the domain ([`Daemon::deliver_push`], which is [`Daemon::deliver`] on a node on
//! its own) and its answer mapped to a status code; each request is counted by forge and result,
//! and a verified one listed on the status page. Answers in milliseconds; never touches git.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::delivery::{Delivery, Rejection};
use super::error;
use crate::daemon::{Daemon, Delivered};
use crate::metrics::WebhookResult;
use crate::queue;
use crate::webhook::{Event, Provider};

/// Handles a request to a webhook path (per repository and the shared `/hooks`), or to no
/// route at all (404).
pub async fn handle(State(d): State<Daemon>, delivery: Result<Delivery, Rejection>) -> Response {
    let (response, result, detected, id, verified) = match delivery {
        Ok(delivery) => {
            let (response, result) = deliver(&d, &delivery).await;
            (response, result, delivery.detected, delivery.id, true)
        }
        Err(mut rejection) => {
            let (result, verified) = (rejection.result(), rejection.verified());
            let (detected, id) = (rejection.detected, rejection.id.take());
            (rejection.into_response(), result, detected, id, verified)
        }
    };
    if d.metrics_enabled()
        && let Some(result) = result
    {
        let forge = detected.map_or("unknown", Provider::as_str);
        d.record_delivery(forge, id.as_deref(), result, verified);
    }
    response
}

/// Hands an authentic delivery to the domain; the answer, and what it counts as (`None`: not
/// counted, as at shutdown).
async fn deliver(d: &Daemon, delivery: &Delivery) -> (Response, Option<WebhookResult>) {
    let push = match &delivery.event {
        Event::Push(p) => p,
        Event::Ping => {
            let r = (StatusCode::OK, Json(json!({ "ok": true, "event": "ping" }))).into_response();
            return (r, Some(WebhookResult::Ping));
        }
        Event::Ignored(reason) => return ignored(reason),
    };
    let repos = delivery.reached();
    if repos.is_empty() {
        tracing::info!(
            provider = delivery.provider.as_str(),
            "push on /hooks names no configured repository"
        );
        return ignored("the payload names no configured repository");
    }
    let id = delivery.id.as_deref();
    match d.deliver_push(&repos, push, id).await {
        Delivered::Queued { repos, .. } => {
            let body = Json(json!({ "queued": repos, "delivery": id }));
            (
                (StatusCode::ACCEPTED, body).into_response(),
                Some(WebhookResult::Queued),
            )
        }
        Delivered::Ignored(reason) => ignored(&reason),
        Delivered::Duplicate(earlier) => {
            let state = match earlier {
                queue::Delivery::Accepted => "accepted",
                queue::Delivery::Succeeded => "succeeded",
                queue::Delivery::Failed => "failed",
            };
            let body = Json(json!({ "duplicate": true, "delivery": id, "state": state }));
            (
                (StatusCode::OK, body).into_response(),
                Some(WebhookResult::Duplicate),
            )
        }
        Delivered::ShuttingDown => (
            error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
            None,
        ),
    }
}

fn ignored(reason: &str) -> (Response, Option<WebhookResult>) {
    let r = (StatusCode::OK, Json(json!({ "ignored": reason }))).into_response();
    (r, Some(WebhookResult::Ignored))
}
