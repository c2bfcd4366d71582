//! hookmirror's own `git://` transport for libgit2 (libgit2's built-in one stays for
//! `transport: libgit2`).
//!
//! Why: `git daemon`'s upload-pack writes its negotiation answers (`ACK … common`, then `NAK`)
//! as separate small segments with Nagle's algorithm on, so the second waits for the client's
//! ACK of the first, and Linux delays that ACK by ~40 ms because the client has nothing to send.
//! Every fetch of a repository with more than a few commits of history pays that stall once (the
//! git CLI pays it twice). This transport is the same protocol over a plain TCP socket that sets
//! `TCP_QUICKACK` again after every read (Linux clears it on its own), so ACKs leave at once and
//! the stall disappears. The request line is the git CLI's (libgit2's own leaves the port out of
//! `host=`); after it, the protocol is libgit2's smart protocol, unchanged.
//!
//! Limits: `stall_timeout` to connect (per resolved address, within the deadline), then the
//! fetch's own ([`transport::Limits`]: the sync's deadline, a stall when less than
//! [`transport::LOW_SPEED_BYTES`] arrive within `stall_timeout`, and what the remote may send,
//! counted by a [`Meter`]). Fetch only: pushing is refused.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use git2::{Error, ErrorClass, ErrorCode, Remote};

use super::budget::Meter;
use super::pkt;
use super::transport::{self, Limits, Watch};

/// git's registered port for `git://`.
pub const DEFAULT_PORT: u16 = 9418;

/// The private URL scheme libgit2 hands to this transport (see `transport::fetch_url`).
pub const SCHEME: &str = "hm-git";

/// The transport factory to register for [`SCHEME`].
pub fn factory(remote: &Remote<'_>) -> Result<Transport, Error> {
    // `rpc: false`: the protocol is stateful; libgit2 reuses the stream opened for the ref
    // advertisement for the negotiation and the pack.
    Transport::smart(remote, false, GitProto)
}

pub(super) struct GitProto;

impl SmartSubtransport for GitProto {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, Error> {
        match action {
            Service::UploadPackLs => Ok(Box::new(connect(url)?)),
            // Only reached with rpc: true; git2 hands out the stream from UploadPackLs instead.
            Service::UploadPack => Err(net_error("git://: no connection to continue")),
            Service::ReceivePackLs | Service::ReceivePack => {
                Err(net_error("git://: hookmirror only fetches"))
            }
        }
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

pub(super) fn net_error(message: &str) -> Error {
    Error::new(ErrorCode::GenericError, ErrorClass::Net, message)
}

/// Where a `git://` URL points, and the request line that asks its daemon for upload-pack.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The pkt-line `git-upload-pack <path>\0host=<host>[:<port>]\0`.
    pub request: Vec<u8>,
}

/// Parses a `git://host[:port]/path` URL into where to connect and what to send, as the git CLI
/// does (`~user` paths lose their leading `/`; `host=` carries the port when the URL has one).
pub fn target(url: &str) -> Result<Target, String> {
    let url = url.strip_prefix("hm-").unwrap_or(url);
    let parsed = crate::url::parse(url)
        .filter(|p| p.scheme == crate::url::Scheme::Git)
        .ok_or_else(|| "git://: malformed URL".to_string())?;
    let path = parsed.path.as_str();
    if path.is_empty() || path == "/" {
        return Err("git://: the URL names no repository".into());
    }
    let path = if path.starts_with("/~") {
        &path[1..]
    } else {
        path
    };
    let shown_host = if parsed.host.contains(':') {
        format!("[{}]", parsed.host)
    } else {
        parsed.host.clone()
    };
    let host_param = match parsed.port {
        Some(p) => format!("{shown_host}:{p}"),
        None => shown_host,
    };
    let payload = format!("git-upload-pack {path}\0host={host_param}\0");
    if payload.len() + 4 > pkt::MAX_PKT {
        return Err("git://: URL too long".into());
    }
    let mut request = Vec::with_capacity(payload.len() + 4);
    pkt::encode(payload.as_bytes(), &mut request);
    Ok(Target {
        host: parsed.host,
        port: parsed.port.unwrap_or(DEFAULT_PORT),
        request,
    })
}

fn connect(url: &str) -> Result<QuickAckStream, Error> {
    let t = target(url).map_err(|m| net_error(&m))?;
    let addrs = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| net_error(&format!("git://: cannot resolve {}: {e}", t.host)))?;
    let limits = Limits::current_or_default();
    let mut last = None;
    let mut waited = Duration::ZERO;
    for addr in addrs {
        // A stall, never past the sync's deadline (a refused connection fails at once; one
        // that is dropped waits for this).
        let connect_timeout = limits
            .connect_timeout()
            .map_err(|e| io_error(&e, &format!("git://: {e}")))?;
        waited = connect_timeout;
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(stream) => {
                let setup = stream
                    .set_write_timeout(Some(limits.stall))
                    .and_then(|_| stream.set_nodelay(true));
                if let Err(e) = setup {
                    return Err(io_error(&e, &format!("git://: {e}")));
                }
                let mut s = QuickAckStream {
                    stream,
                    watch: Watch::new(limits),
                    meter: Meter::advertisement(limits.sizes, false),
                };
                s.write_all(&t.request)
                    .map_err(|e| io_error(&e, &format!("git://: {e}")))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => {
            let what = format!("connecting to {}:{}", t.host, t.port);
            let e = limits.connect_timed_out(&what, waited);
            io_error(&e, &format!("git://: {e}"))
        }
        Some(e) => io_error(
            &e,
            &format!("git://: failed to connect to {}:{}: {e}", t.host, t.port),
        ),
        None => net_error(&format!("git://: {} has no address", t.host)),
    })
}

/// A socket error as libgit2's own transports report it; a timeout carries
/// [`ErrorCode::Timeout`] so the sync classifies it without reading the message.
pub(super) fn io_error(e: &io::Error, message: &str) -> Error {
    let code = match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorCode::Timeout,
        _ => ErrorCode::GenericError,
    };
    Error::new(code, ErrorClass::Net, message)
}

/// A TCP stream that keeps the socket in quick-ACK mode, and fails reads past the fetch's
/// stall and deadline limits, or past what the remote may send.
struct QuickAckStream {
    stream: TcpStream,
    watch: Watch,
    meter: Meter,
}

impl QuickAckStream {
    fn quickack(&self) {
        // Best effort: without it the transfer is only slower.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
    }
}

impl Read for QuickAckStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.watch.before_read()?;
        self.stream.set_read_timeout(Some(timeout))?;
        let n = self.watch.after_read(self.stream.read(buf))?;
        self.meter.count(&buf[..n]).map_err(transport::too_large)?;
        self.quickack();
        Ok(n)
    }
}

impl Write for QuickAckStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_match_what_git_sends() {
        let t = target("git://example.org/project.git").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("example.org", 9418));
        assert_eq!(
            t.request,
            b"0032git-upload-pack /project.git\0host=example.org\0".to_vec()
        );
        let t = target("git://127.0.0.1:9419/a/b.git").unwrap();
        assert_eq!(t.port, 9419);
        assert_eq!(
            t.request,
            b"0031git-upload-pack /a/b.git\0host=127.0.0.1:9419\0".to_vec()
        );
        let t = target("git://Example.org/~alice/r.git").unwrap();
        assert_eq!(t.host, "example.org");
        assert!(t.request.starts_with(b"0032git-upload-pack ~alice/r.git\0"));
        let t = target("git://[::1]:9000/r").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(t.request.ends_with(b"\0host=[::1]:9000\0"));
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "git://",
            "git://host",
            "git://host/",
            "https://host/r.git",
            "git://host:notaport/r",
            "git://:9418/r",
            "git://h/a\0b",
        ] {
            assert!(target(url).is_err(), "{url}");
        }
    }

    #[test]
    fn timeouts_carry_their_code() {
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(io_error(&timed_out, "m").code(), ErrorCode::Timeout);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = io_error(&refused, "m");
        assert_eq!(
            (e.code(), e.class()),
            (ErrorCode::GenericError, ErrorClass::Net)
        );
    }

    #[test]
    fn the_length_prefix_counts_the_whole_line() {
        let t = target("git://h/x").unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&t.request[..4]).unwrap(), 16).unwrap();
        assert_eq!(len, t.request.len());
    }
}
