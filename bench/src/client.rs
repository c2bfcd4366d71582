//! One keep-alive HTTP/1.1 connection (hyper's client connection, TCP_NODELAY), and GitHub push
//! deliveries built the way GitHub sends them: the same headers, an HMAC-SHA256 signature
//! (`X-Hub-Signature-256`, plus the legacy SHA-1 one GitHub also sends) over the exact body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, BoxError> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { addr, sender })
    }

    /// Sends `req` and reads the whole answer. Reconnects once if the server closed the
    /// connection between requests.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), BoxError> {
        if self.sender.ready().await.is_err() || self.sender.is_closed() {
            *self = Conn::connect(self.addr).await?;
        }
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub async fn get_json(&mut self, path: &str, token: &str) -> Result<Value, BoxError> {
        let req = Request::get(path)
            .header("host", self.host())
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        let (status, body) = self.send(req).await?;
        if status != StatusCode::OK {
            return Err(format!("GET {path}: {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// A signed push delivery: body plus the two signature header values.
#[derive(Clone)]
pub struct Delivery {
    pub body: Bytes,
    pub sig256: String,
    pub sig1: String,
}

static DELIVERY_SEQ: AtomicU64 = AtomicU64::new(0);

/// A GUID-shaped delivery id, unique within the run.
pub fn delivery_id() -> String {
    let n = DELIVERY_SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (pid << 8) as u32,
        (n >> 48) & 0xffff,
        (n >> 36) & 0xfff,
        (n >> 24) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// The fixture payload with `ref`, `before`, `after` and the repository's `clone_url`/`git_url`
/// replaced (and `head_commit`/`commits[0]` ids following `after`), serialised compactly as
/// GitHub sends it, signed with `secret`.
pub fn push_delivery(
    template: &Value,
    secret: &str,
    git_ref: &str,
    before: &str,
    after: &str,
    url: &str,
) -> Delivery {
    let mut p = template.clone();
    p["ref"] = Value::from(git_ref);
    p["before"] = Value::from(before);
    p["after"] = Value::from(after);
    p["created"] = Value::from(false);
    if let Some(repo) = p.get_mut("repository").and_then(Value::as_object_mut) {
        repo.insert("clone_url".into(), Value::from(url));
        repo.insert("git_url".into(), Value::from(url));
    }
    if let Some(hc) = p.get_mut("head_commit").and_then(Value::as_object_mut) {
        hc.insert("id".into(), Value::from(after));
    }
    if let Some(c) = p
        .get_mut("commits")
        .and_then(Value::as_array_mut)
        .and_then(|a| a.first_mut())
        .and_then(Value::as_object_mut)
    {
        c.insert("id".into(), Value::from(after));
    }
    let body = serde_json::to_vec(&p).expect("serialise payload");
    sign(secret, Bytes::from(body))
}

pub fn sign(secret: &str, body: Bytes) -> Delivery {
    let mut m256 = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    m256.update(&body);
    let mut m1 = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    m1.update(&body);
    Delivery {
        sig256: format!("sha256={}", hex::encode(m256.finalize().into_bytes())),
        sig1: format!("sha1={}", hex::encode(m1.finalize().into_bytes())),
        body,
    }
}

/// The request GitHub would send for `d` to `path` on `host`.
pub fn webhook_request(host: &str, path: &str, d: &Delivery) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", host)
        .header("accept", "*/*")
        .header("user-agent", "GitHub-Hookshot/6b02022")
        .header("content-type", "application/json")
        .header("content-length", d.body.len())
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery_id())
        .header("x-github-hook-id", "471837216")
        .header("x-github-hook-installation-target-id", "186853002")
        .header("x-github-hook-installation-target-type", "repository")
        .header("x-hub-signature", &d.sig1)
        .header("x-hub-signature-256", &d.sig256)
        .body(Full::new(d.body.clone()))
        .expect("request")
}
