//! The HTTP edge: the accept loop (connection limits per client and in all — `clients.rs` —,
//! header-read timeout, graceful close) and the axum router — webhook routes, the API, health,
//! metrics and the status page. Handlers never do git work: they verify, parse and queue.

mod api;
mod authenticate;
mod body;
mod clients;
mod delivery;
mod fleet;
mod guard;
mod observe;
mod page;
mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower::ServiceExt as _;

use clients::{Admission, Clients, Track};

use crate::daemon::Daemon;

/// The router; tests call it with `oneshot` without a socket.
pub fn app(daemon: Daemon) -> Router {
    Router::new()
        // Other methods on the read-only pages go where unknown paths go (404, counted).
        .route("/", get(observe::status_page).fallback(webhook::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(observe::readyz).fallback(webhook::handle))
        .route("/metrics", get(observe::metrics).fallback(webhook::handle))
        .route("/api/repos", get(api::list))
        .route("/api/repos/{name}", get(api::show))
        .route("/api/repos/{name}/history", get(observe::history))
        .route("/api/repos/{name}/sync", post(api::sync))
        .route("/api/reload", post(api::reload))
        .route("/api/fleet", get(fleet::show))
        .fallback(webhook::handle)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(daemon)
}

/// Headers on every answer: no MIME sniffing, never framed, no referrer sent on, and (unless
/// the handler set its own, as the status page does) a policy that lets nothing load or run.
async fn security_headers(mut r: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    r
}

/// How long `?wait=true` waits for the sync before answering 504 (the sync goes on).
pub const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The report of the sync that covers a request (at most [`WAIT_LIMIT`]), or the answer that
/// says why it did not come.
pub(crate) async fn await_report(
    rx: tokio::sync::oneshot::Receiver<crate::daemon::SyncReport>,
) -> Result<crate::daemon::SyncReport, Response> {
    match tokio::time::timeout(WAIT_LIMIT, rx).await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(_)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the sync was abandoned (shutdown or repository removed)",
        )),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "the sync is still running",
        )),
    }
}

/// A JSON error body: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// How long shutdown waits for open connections to finish their requests.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Serves `listener` until `stop` turns true, then closes connections gracefully (requests in
/// flight finish). Limits (read from the config in force at each accept, so they reload): a
/// client that has not sent its headers within `limits.header_timeout` is cut off; at most
/// `limits.max_connections_per_ip` connections per client; when `limits.max_connections` are
/// open, the oldest unfinished request is shed to make room (see `clients.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    daemon: Daemon,
    mut stop: watch::Receiver<bool>,
) {
    let clients = Arc::new(Clients::default());
    let app = app(daemon.clone());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let limits = daemon.config().limits.clone();
        let (track, id) = loop {
            // Registered before the check, so a connection closing in between wakes us.
            let freed = clients.freed.notified();
            match clients.admit(
                peer.ip(),
                limits.max_connections,
                limits.max_connections_per_ip,
            ) {
                Admission::Admit { track, id } => break (Some(track), id),
                Admission::OverClientLimit => break (None, 0),
                // Every connection holds a complete request being answered: those end soon.
                Admission::Full => tokio::select! {
                    _ = stopped(&mut stop) => break (None, 0),
                    _ = freed => {}
                },
            }
        };
        let Some(track) = track else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = service(app.clone(), track.clone(), clients.epoch);
        let mut stop = stop.clone();
        let clients = clients.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Shed to make room: dropping the connection closes the socket.
                _ = track.shed.notified() => {}
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            clients.closed(id);
        });
    }
    // Wait (bounded) for open connections to finish their requests.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        loop {
            let freed = clients.freed.notified();
            if clients.open() == 0 {
                break;
            }
            freed.await;
        }
    })
    .await;
}

/// The router for one connection: each request carries the connection's [`Track`] (the webhook
/// handler marks its body received) and marks it waiting again once answered. A request without
/// a body is complete as soon as its headers are.
fn service(
    app: Router,
    track: Arc<Track>,
    epoch: std::time::Instant,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let track = track.clone();
        if request.body().is_end_stream() {
            track.received();
        }
        request.extensions_mut().insert(track.clone());
        let answer = app.clone().oneshot(request);
        async move {
            let response = answer.await;
            track.answered(epoch);
            response
        }
    })
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
