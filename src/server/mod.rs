//! The HTTP edge: the accept loop (connection cap, header-read timeout, graceful close) and the
//! axum router — webhook routes, the API, health. Handlers never do git work: they verify, parse
//! and queue.

mod api;
mod fleet;
mod guard;
mod webhook;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

use crate::daemon::Daemon;

/// The router; tests call it with `oneshot` without a socket.
pub fn app(daemon: Daemon) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/repos", get(api::list))
        .route("/api/repos/{name}", get(api::show))
        .route("/api/repos/{name}/sync", post(api::sync))
        .route("/api/reload", post(api::reload))
        .route("/api/fleet", get(fleet::show))
        .fallback(webhook::handle)
        .with_state(daemon)
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

/// Serves `listener` until `stop` turns true, then closes connections gracefully (requests in
/// flight finish). At most `limits.max_connections` connections are open at once; a client that
/// has not sent its headers within `limits.header_timeout` is cut off.
pub async fn serve(
    listener: tokio::net::TcpListener,
    daemon: Daemon,
    mut stop: watch::Receiver<bool>,
) {
    let limits = daemon.config().limits.clone();
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let app = app(daemon);
    loop {
        let permit = tokio::select! {
            _ = stopped(&mut stop) => break,
            p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let stream = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    // Wait (bounded) for open connections to finish their requests.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conns.acquire_many(limits.max_connections as u32),
    )
    .await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
