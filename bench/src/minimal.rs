//! The intake floor: an axum server (same axum/hyper/tokio versions and runtime shape as
//! hookmirror: multi-threaded, TCP_NODELAY) that reads the whole body and answers 200 with a
//! small JSON body of the same size as hookmirror's "ignored" answer. No verification, no
//! parsing, no logging.

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::serve::ListenerExt;

const ANSWER: &str = r#"{"ignored":"refs/heads/untracked is not the tracked branch `main`"}"#;

async fn any(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body.len());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
}

/// Binds 127.0.0.1:0, prints `PORT\n` on stdout, serves until killed.
pub fn serve() {
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
        axum::serve(listener, Router::new().fallback(any))
            .await
            .expect("serve");
    });
}
