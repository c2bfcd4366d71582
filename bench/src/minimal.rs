//! The intake floors: axum servers (same axum/hyper/tokio versions and runtime shape as
//! hookmirror: multi-threaded, TCP_NODELAY) that read the whole body and answer 200 with a small
//! JSON body of the same size as hookmirror's "ignored" answer. No logging.
//!
//! - `minimal-server`: nothing else (no verification, no parsing);
//! - `checked-server`: what any correct receiver must do — the HMAC-SHA256 of the body checked
//!   against `X-Hub-Signature-256` in constant time (401 otherwise), then the push parsed
//!   (serde_json, typed: only the fields hookmirror reads are built) — the floor hookmirror's
//!   intake is measured against.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::serve::ListenerExt;
use hmac::{Hmac, KeyInit, Mac};

use crate::{PushFields, SECRET};

const ANSWER: &str = r#"{"ignored":"refs/heads/untracked is not the tracked branch `main`"}"#;

fn answer() -> axum::response::Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
        .into_response()
}

async fn any(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body.len());
    answer()
}

async fn checked(headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let tag = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&body);
    if tag.is_none_or(|t| mac.verify_slice(&t).is_err()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match serde_json::from_slice::<PushFields>(&body) {
        Ok(push) => {
            std::hint::black_box(push);
            answer()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// Binds 127.0.0.1:0, prints `PORT\n` on stdout, serves until killed; `checked`: the
/// checked-server, else the minimal one.
pub fn serve(checked_floor: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        println!("{port}");
        use std::io::Write;
        std::io::stdout().flush().ok();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = if checked_floor {
            Router::new().fallback(checked)
        } else {
            Router::new().fallback(any)
        };
        axum::serve(listener, app).await.expect("serve");
    });
}
