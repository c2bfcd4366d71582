//! The API's guard: reads the `Authorization` header, asks [`access::decide`] with the config in
//! force (so a reload that removes a token takes effect on the next request) and turns a refusal
//! into its answer. Every API endpoint calls [`allow`] first, the read endpoints added later too.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::error;
use crate::access::{self, Caller, Need};
use crate::daemon::Daemon;

/// The challenge on a refused read: a browser shows its login dialog and sends the token as the
/// password (any user name).
const BASIC_CHALLENGE: &str = "Basic realm=\"hookmirror\"";
/// The challenge on a refused write: scripts and CI send `Authorization: Bearer <token>`.
const BEARER_CHALLENGE: &str = "Bearer realm=\"hookmirror\"";

/// `Ok(caller)` when the request may proceed, else the answer to send (401 or 403 with the
/// reason; never the presented credential; boxed, as refusals are the rare path). Refusals are logged with the token's name when the
/// caller holds a valid one; allowed reads at debug (the handlers log what writes did).
pub fn allow(d: &Daemon, headers: &HeaderMap, need: Need) -> Result<Caller, Box<Response>> {
    let config = d.config();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(access::credential);
    match access::decide(&config.api, presented.as_deref(), need, chrono::Utc::now()) {
        Ok(caller) => {
            if let Need::Read(repo) = need {
                tracing::debug!(
                    token = caller.name(),
                    repo = repo.unwrap_or("*"),
                    "api read"
                );
            }
            Ok(caller)
        }
        Err(refusal) => {
            let token = match &refusal {
                access::Refusal::Expired { name, .. } | access::Refusal::Lacks { name, .. } => {
                    name.as_str()
                }
                _ => "-",
            };
            let message = refusal.message();
            tracing::info!(token, need = %describe(need), reason = refusal.kind(), error = %message, "api call refused");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
            let mut r = error(status, &message);
            if status == StatusCode::UNAUTHORIZED {
                let challenge = match need {
                    Need::Read(_) => BASIC_CHALLENGE,
                    _ => BEARER_CHALLENGE,
                };
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            Err(Box::new(r))
        }
    }
}

/// The caller when it may do `need`, else `None`, without an answer and without a log line: for
/// an endpoint open to everyone (`/readyz`, polled by probes) that shows more to a reader.
pub fn peek(d: &Daemon, headers: &HeaderMap, need: Need) -> Option<Caller> {
    let config = d.config();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(access::credential);
    access::decide(&config.api, presented.as_deref(), need, chrono::Utc::now()).ok()
}

/// For logs: `read site`, `read *`, `sync site`, `admin`.
fn describe(need: Need) -> String {
    match need {
        Need::Read(repo) => format!("read {}", repo.unwrap_or("*")),
        Need::Sync(repo) => format!("sync {repo}"),
        Need::Admin => "admin".into(),
    }
}
