//! How hookmirror's HTTP(S) transport reports a failure to libgit2: a git2 error whose code and
//! class tell the engine its kind (TLS refusal, timeout, network fault, an unexpected status),
//! with the URL shown without credentials.

use std::io;

use git2::{Error, ErrorClass, ErrorCode};
use ureq::http::StatusCode;

use super::git_proto::{io_error, net_error};
use super::transport;
use crate::url::redact;

/// libgit2's wording for a status it does not handle, which `error::classify` reads.
pub(super) fn http_error(url: &str, status: StatusCode, what: &str) -> Error {
    let shown = redact(url.split('?').next().unwrap_or(url));
    Error::new(
        ErrorCode::GenericError,
        ErrorClass::Http,
        format!(
            "unexpected http status code: {} ({what} from {shown})",
            status.as_u16()
        ),
    )
}

/// A failed request as a git2 error whose code and class tell its kind: TLS refusals
/// (`Certificate`/`Ssl`), timeouts, and network faults; the URL shown without credentials.
pub(super) fn request_error(url: &str, e: ureq::Error) -> Error {
    let shown = redact(url.split('?').next().unwrap_or(url));
    match e {
        ureq::Error::NativeTls(t) => Error::new(
            ErrorCode::Certificate,
            ErrorClass::Ssl,
            format!("TLS: {shown}: {}", tls_reason(&t.to_string())),
        ),
        ureq::Error::Tls(t) => Error::new(
            ErrorCode::Certificate,
            ErrorClass::Ssl,
            format!("TLS: {shown}: {t}"),
        ),
        ureq::Error::Timeout(t) => Error::new(
            ErrorCode::Timeout,
            ErrorClass::Net,
            format!("http(s): {shown}: timed out ({t})"),
        ),
        ureq::Error::Io(io) => io_error(&io, &format!("http(s): {shown}: {io}")),
        ureq::Error::ConnectProxyFailed(why) => net_error(&format!(
            "http(s): the proxy refused to connect to {shown}: {why}"
        )),
        other => net_error(&format!("http(s): {shown}: {}", redact(&other.to_string()))),
    }
}

/// OpenSSL's verify failure in plain words, with its own text kept.
fn tls_reason(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let plain = if lower.contains("expired") {
        "the server's certificate has expired"
    } else if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
        "the server's certificate is for another host name"
    } else if lower.contains("self-signed")
        || lower.contains("local issuer")
        || lower.contains("unable to get")
    {
        "the server's certificate is not signed by a trusted CA (add it with auth.ca_file)"
    } else {
        "the TLS handshake failed"
    };
    format!("{plain} ({})", text.trim())
}

/// ureq's own timeouts arrive wrapped as `ErrorKind::Other`: give them the kind [`Watch`]
/// recognises, so the global one (set to the sync's deadline) is reported as `sync_timeout`.
pub(super) fn timed_out(e: io::Error) -> io::Error {
    let timeout = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
    if timeout {
        io::Error::new(io::ErrorKind::TimedOut, e.to_string())
    } else {
        e
    }
}

/// A read error as the engine should classify it: timeouts keep [`ErrorCode::Timeout`].
pub(super) fn as_failure(e: io::Error) -> io::Error {
    let message = format!("http(s): {e}");
    transport::fail(io_error(&e, &message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_are_said_plainly() {
        assert!(tls_reason("error:0A000086:SSL routines::certificate verify failed:../ssl/statem/statem_clnt.c:2091: (certificate has expired)").contains("has expired"));
        assert!(tls_reason("... (Hostname mismatch)").contains("another host name"));
        assert!(tls_reason("... (self-signed certificate)").contains("auth.ca_file"));
    }
}
