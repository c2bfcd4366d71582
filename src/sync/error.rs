//! Why a sync failed: the error kinds the daemon branches on, and how a git2 error maps onto one.
//!
//! [`classify`] decides from what libgit2 reports structurally ([`ErrorCode`], then
//! [`ErrorClass`]) and from what hookmirror's own callbacks and transports recorded. It reads a
//! message only where libgit2 passes on the remote's own words or has no code for the case; each
//! of those matches names the libgit2 path that produces the text (libgit2 1.9, as bundled by
//! libgit2-sys 0.18). hookmirror's own file operations are classified by their OS error number
//! ([`from_io`]).

use git2::{ErrorClass, ErrorCode};

use super::credentials::AuthState;
use crate::url::redact_in_text;

/// Why a sync failed; the daemon branches on it (retry or not) and status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Credentials were refused. Not retried.
    Auth,
    /// The remote says the repository does not exist. Not retried.
    NotFound,
    /// The SSH host key is unknown, changed or revoked. Not retried.
    HostKey,
    /// The server's TLS certificate was refused: an unknown CA, expired, or issued for another
    /// name. Not retried.
    Tls,
    /// The tracked branch or tag is gone from the remote; the last tree stays. Not retried.
    RefMissing,
    /// The directory holds something that is not this repository's checkout. Not retried.
    ForeignDirectory,
    /// The remote was silent or too slow past `stall_timeout`, or the sync ran past its
    /// `sync_timeout`. Retried with backoff.
    Timeout,
    /// Network trouble, a remote that hung up. Retried with backoff.
    Transient,
    /// The checkout's filesystem is full (or the user's quota is): the fetch or the tree could
    /// not be written. The checkout keeps its last complete commit (HEAD moves only after the
    /// tree is written); retried with backoff, and the next sync after space is freed repairs it.
    DiskFull,
    /// Another process (a one-shot `hookmirror sync`) holds the checkout's lock. The daemon
    /// tries again shortly without holding a worker; it is reported only when the lock stays
    /// taken past `sync_timeout`.
    Busy,
    /// The fetched commit (or tag) is not signed by a trusted key (`verify:`): it is not
    /// published, the last published tree stays. Not retried: the next push is tried again.
    Unverified,
    /// The `pre_publish` check failed or timed out: the commit is not published. Not retried.
    Rejected,
    /// The remote refused the fetch in its own words (an `ERR` line, or an error on side-band
    /// channel 3) that say neither "not found" nor "permission denied". Not retried: a refusal
    /// is an answer, not a network fault.
    Refused,
    /// The remote sent more than a limit allows (`limits.max_advertisement`, `max_refs`,
    /// `max_pack`, `max_objects`); the message names the key to raise. Not retried.
    TooLarge,
    /// Anything else (permissions, …). Retried.
    Other,
}

impl ErrorKind {
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Transient
                | ErrorKind::Timeout
                | ErrorKind::DiskFull
                | ErrorKind::Busy
                | ErrorKind::Other
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not_found",
            ErrorKind::HostKey => "host_key",
            ErrorKind::Tls => "tls",
            ErrorKind::RefMissing => "ref_missing",
            ErrorKind::ForeignDirectory => "foreign_directory",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transient => "transient",
            ErrorKind::DiskFull => "disk_full",
            ErrorKind::Busy => "busy",
            ErrorKind::Unverified => "unverified",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Refused => "refused",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed sync. `message` is safe to log and show: URL credentials are removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyncError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SyncError {
    pub(super) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SyncError {
            kind,
            message: redact_in_text(&message.into()),
        }
    }
}

/// hookmirror's own file operation `what` (e.g. "cannot create /srv/x") failed with `e`: a full
/// filesystem or quota is [`ErrorKind::DiskFull`] by its OS error number, anything else `Other`.
pub(super) fn from_io(what: &str, e: &std::io::Error) -> SyncError {
    let full = matches!(
        e.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT)
    );
    let kind = if full {
        ErrorKind::DiskFull
    } else {
        ErrorKind::Other
    };
    SyncError::new(kind, format!("{what}: {e}"))
}

/// Maps a git2 error onto an [`ErrorKind`] and a message that names the cause and holds no secret.
pub(super) fn classify(e: git2::Error, state: &AuthState) -> SyncError {
    // A stream of hookmirror's transports failed with a code libgit2 could not carry.
    let e = super::transport::take_failure(&e).unwrap_or(e);
    // The callbacks know why they refused; libgit2 only passes on that they did.
    if let Some(msg) = &state.host_key {
        return SyncError::new(ErrorKind::HostKey, msg.clone());
    }
    if let Some(msg) = &state.auth_failed {
        return SyncError::new(ErrorKind::Auth, format!("authentication failed: {msg}"));
    }
    let kind = kind_of(&e);
    // libssh2's openssl.c _libssh2_pub_priv_keyfile says "Unable to extract public key from
    // private key: …" (LIBSSH2_ERROR_FILE, a code libgit2 does not pass on) when the key does not
    // decrypt or parse; it names neither the passphrase nor what to do.
    if kind == ErrorKind::Auth
        && e.message()
            .contains("Unable to extract public key from private key")
    {
        return SyncError::new(
            ErrorKind::Auth,
            "cannot use the SSH key: wrong passphrase, or a key format libssh2 does not read",
        );
    }
    // libgit2's messages carry the remote's words ("remote error: …", an SSH server's stderr):
    // escaped, they cannot start a line of their own in a log, the API or `sync`'s output.
    SyncError::new(kind, crate::printable::escape(e.message()))
}

/// The text `strerror` gives for ENOSPC and EDQUOT (glibc and musl word them alike).
const DISK_FULL_TEXTS: [&str; 2] = ["No space left on device", "Disk quota exceeded"];

fn kind_of(e: &git2::Error) -> ErrorKind {
    // libgit2 reports a failed write (posix.c, futils.c, filebuf.c, the indexer and checkout) as
    // GIT_ERROR_OS, code -1, with `strerror(errno)` appended to its own words ("could not write
    // to '<path>': No space left on device"): the class is structural, the errno only in the
    // text. Some paths (odb_loose.c's and filebuf.c's writes, the indexer's mmap of a pack)
    // wrap it in their own class; the strerror text is the same.
    let message = e.message();
    if matches!(
        e.class(),
        ErrorClass::Os
            | ErrorClass::Filesystem
            | ErrorClass::Indexer
            | ErrorClass::Checkout
            | ErrorClass::Odb
            | ErrorClass::Index
    ) && DISK_FULL_TEXTS.iter().any(|t| message.contains(t))
    {
        return ErrorKind::DiskFull;
    }
    match e.code() {
        // libgit2's own auth failures, and hookmirror's credential callback (credentials.rs).
        ErrorCode::Auth => return ErrorKind::Auth,
        // hookmirror's HTTPS transport (http.rs) refusing the server's certificate.
        ErrorCode::Certificate if e.class() == ErrorClass::Ssl => return ErrorKind::Tls,
        // libssh2's host-key check and hookmirror's certificate callback and SSH transport.
        ErrorCode::Certificate => return ErrorKind::HostKey,
        // libgit2's socket stream, and hookmirror's git:// transport (git_proto.rs).
        ErrorCode::Timeout => return ErrorKind::Timeout,
        _ => {}
    }
    match e.class() {
        ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh if e.code() == ErrorCode::NotFound => {
            ErrorKind::NotFound
        }
        // http.c handle_response reports any other status only in the text: "unexpected http
        // status code: <n>", GIT_ERROR_HTTP, code -1.
        ErrorClass::Http => match http_status(message) {
            Some(401 | 403) => ErrorKind::Auth,
            Some(404) => ErrorKind::NotFound,
            _ => ErrorKind::Transient,
        },
        // smart_protocol.c git_smart__store_refs: an ERR pkt-line from the remote (git daemon,
        // or a forge over smart HTTP) becomes "remote error: <its text>", GIT_ERROR_NET, -1;
        // hookmirror's negotiation words an ERR line and side-band 3 the same (negotiate.rs).
        // The remote answered: a refusal, never retried.
        ErrorClass::Net => match message.strip_prefix("remote error: ") {
            Some(text) => remote_refusal(text).unwrap_or(ErrorKind::Refused),
            None => ErrorKind::Transient,
        },
        // ssh_libssh2.c ssh_stream_read: when the remote command writes only to stderr (as
        // git-upload-pack and forges' SSH front ends do to refuse), that text is the whole
        // message and the code is GIT_EEOF.
        ErrorClass::Ssh if e.code() == ErrorCode::Eof => {
            remote_refusal(message).unwrap_or(ErrorKind::Transient)
        }
        // ssh_libssh2.c _git_ssh_authenticate_session: a libssh2 failure other than the three it
        // maps to GIT_EAUTH (an unreadable or undecryptable key) is "failed to authenticate SSH
        // session: <libssh2's text>", GIT_ERROR_SSH, -1.
        ErrorClass::Ssh if message.starts_with("failed to authenticate SSH session") => {
            ErrorKind::Auth
        }
        // Os covers socket connects ("failed to connect to <host>") as well as files; both are
        // worth another attempt. Indexer: the pack the remote sent was cut short or malformed.
        ErrorClass::Ssh | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Indexer => {
            ErrorKind::Transient
        }
        // repository.c find_repo: a local remote path that holds no repository is "could not
        // find repository at '<path>'", and transports/local.c local_connect turns its
        // GIT_ENOTFOUND into -1.
        ErrorClass::Repository if message.starts_with("could not find repository") => {
            ErrorKind::NotFound
        }
        _ => ErrorKind::Other,
    }
}

/// The status in libgit2's `unexpected http status code: <n>`.
fn http_status(message: &str) -> Option<u16> {
    message
        .strip_prefix("unexpected http status code: ")?
        .trim()
        .parse()
        .ok()
}

/// What a remote's own refusal text means. Each server words it its own way and no code goes
/// with it, so only the text can tell.
fn remote_refusal(text: &str) -> Option<ErrorKind> {
    let lower = text.to_ascii_lowercase();
    let says = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
    // Forges' SSH front ends and forced commands refusing a key or user.
    if says(&["authentication", "permission denied"]) {
        Some(ErrorKind::Auth)
    } else if says(&[
        // Forges ("ERROR: Repository not found.").
        "not found",
        // git's upload-pack, run over SSH.
        "does not appear to be a git repository",
        "no such file or directory",
        // git daemon with --informative-errors, and without.
        "no such repository",
        "repository not exported",
    ]) {
        Some(ErrorKind::NotFound)
    } else {
        None
    }
}

/// True when `e` comes from reading the object database (a missing or unreadable object or
/// pack): damage a fresh clone repairs, unlike a refusal or a network fault.
pub(super) fn is_corruption(e: &git2::Error) -> bool {
    matches!(e.class(), ErrorClass::Odb | ErrorClass::Zlib)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass as C;
    use ErrorCode as E;
    use ErrorKind as K;
    use git2::Error;

    const G: ErrorCode = E::GenericError;

    /// (code, class, message, kind): as libgit2 (or hookmirror's callbacks and transport) report.
    #[rustfmt::skip]
    const CASES: &[(ErrorCode, ErrorClass, &str, ErrorKind)] = &[
        // Codes decide before any text.
        (E::Auth, C::Callback, "authentication refused", K::Auth),
        (E::Auth, C::Http, "unexpected authentication failure", K::Auth),
        (E::Auth, C::Http, "unexpected http status code: 404", K::Auth),
        (E::Certificate, C::Ssh, "invalid or unknown remote ssh hostkey", K::HostKey),
        (E::Certificate, C::Ssl, "the SSL certificate is invalid", K::Tls),
        (E::Timeout, C::Net, "git://: failed to connect to h:1: timed out", K::Timeout),
        (E::NotFound, C::Http, "whatever", K::NotFound),
        // Then classes, with a generic code.
        (G, C::Net, "git://: failed to connect to h:9: Connection refused", K::Transient),
        (G, C::Net, "could not read refs from remote repository", K::Transient),
        (G, C::Os, "failed to connect to 127.0.0.1: Connection refused", K::Transient),
        (G, C::Ssl, "SSL error: connection failure", K::Transient),
        (G, C::Indexer, "early EOF", K::Transient),
        (G, C::Ssh, "SSH could not read data: Timed out waiting on socket", K::Transient),
        (G, C::Config, "failed to parse config file", K::Other),
        // A full disk, wherever libgit2 noticed it.
        (G, C::Os, "could not write to '/srv/x/big.bin': No space left on device", K::DiskFull),
        (G, C::Os, "failed to write pack: Disk quota exceeded", K::DiskFull),
        (G, C::Indexer, "cannot write packfile: No space left on device", K::DiskFull),
        (G, C::Checkout, "failed to write 'a': No space left on device", K::DiskFull),
        (G, C::Net, "remote error: No space left on device", K::Refused),
        // Words count only where libgit2 passes on a status or the remote's own text.
        (G, C::Http, "unexpected http status code: 404", K::NotFound),
        (G, C::Http, "unexpected http status code: 403", K::Auth),
        (G, C::Http, "unexpected http status code: 401", K::Auth),
        (G, C::Http, "unexpected http status code: 502", K::Transient),
        (G, C::Net, "remote error: no such repository: /nope.git", K::NotFound),
        (G, C::Net, "remote error: access denied or repository not exported: /x", K::NotFound),
        // Any other ERR is the remote's refusal: not retried.
        (G, C::Net, "remote error: upload-pack: not our ref 1234", K::Refused),
        (G, C::Net, "remote error: blocked by policy", K::Refused),
        (E::Eof, C::Ssh, "fatal: '/x' does not appear to be a git repository\n", K::NotFound),
        (E::Eof, C::Ssh, "ERROR: Repository not found.\n", K::NotFound),
        (E::Eof, C::Ssh, "Permission denied (publickey).\n", K::Auth),
        (E::Eof, C::Ssh, "Connection to host closed\n", K::Transient),
        (G, C::Ssh, "failed to authenticate SSH session: Unable to open private key file", K::Auth),
        (G, C::Repository, "could not find repository at '/srv/x'", K::NotFound),
        // The same words elsewhere do not decide.
        (G, C::Net, "git://: cannot resolve h: not found", K::Transient),
        (G, C::Os, "failed to make directory '/srv/x': Permission denied", K::Transient),
        (E::NotFound, C::Reference, "reference 'refs/remotes/origin/x' not found", K::Other),
        (E::NotFound, C::Odb, "object not found - no match for id (4010403404)", K::Other),
    ];

    #[test]
    fn codes_then_classes_then_words_decide() {
        for &(code, class, message, want) in CASES {
            let got = classify(Error::new(code, class, message), &AuthState::default()).kind;
            assert_eq!(got, want, "{code:?} {class:?} {message:?}");
        }
    }

    #[test]
    fn what_the_callbacks_recorded_wins() {
        let e = || {
            Error::new(
                E::Certificate,
                C::Ssh,
                "invalid or unknown remote ssh hostkey",
            )
        };
        let mut state = AuthState::default();
        state.host_key = Some("HOST KEY CHANGED for h".into());
        let s = classify(e(), &state);
        assert_eq!(
            (s.kind, s.message.as_str()),
            (K::HostKey, "HOST KEY CHANGED for h")
        );
        let mut state = AuthState::default();
        state.auth_failed = Some("the token was refused".into());
        let s = classify(e(), &state);
        assert_eq!(s.kind, K::Auth);
        assert_eq!(s.message, "authentication failed: the token was refused");
    }

    #[test]
    fn an_unreadable_key_says_what_to_check() {
        let m = "failed to authenticate SSH session: \
                 Unable to extract public key from private key: Unsupported private key format";
        let s = classify(Error::new(G, C::Ssh, m), &AuthState::default());
        assert_eq!(s.kind, K::Auth);
        assert!(s.message.contains("passphrase"), "{}", s.message);
    }

    #[test]
    fn refusals_are_not_retried_and_their_text_stays_on_one_line() {
        let e = Error::new(
            G,
            C::Net,
            "remote error: no\nINFO sync result=\"ok\"\r\u{1b}[2J",
        );
        let s = classify(e, &AuthState::default());
        assert_eq!(s.kind, K::Refused);
        assert!(!s.kind.is_transient() && !K::TooLarge.is_transient());
        assert_eq!(
            s.message,
            "remote error: no\\nINFO sync result=\"ok\"\\r\\u{1b}[2J"
        );
    }

    #[test]
    fn messages_lose_url_credentials() {
        let m = "failed to fetch 'https://u:tok123@h.example/x.git'";
        let s = classify(Error::new(G, C::Net, m), &AuthState::default());
        assert!(!s.message.contains("tok123"), "{}", s.message);
    }

    #[test]
    fn our_own_file_errors_are_classified_by_errno() {
        let full = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        let e = from_io("cannot write /x", &full);
        assert_eq!(e.kind, K::DiskFull);
        assert!(
            e.message.starts_with("cannot write /x: No space left"),
            "{e:?}"
        );
        let quota = std::io::Error::from_raw_os_error(nix::errno::Errno::EDQUOT as i32);
        assert_eq!(from_io("x", &quota).kind, K::DiskFull);
        let denied = std::io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32);
        assert_eq!(from_io("x", &denied).kind, K::Other);
    }

    #[test]
    fn corruption_is_the_object_database_failing() {
        let damaged = |code, class| is_corruption(&Error::new(code, class, "x"));
        assert!(damaged(E::NotFound, C::Odb));
        assert!(damaged(E::HashsumMismatch, C::Odb));
        assert!(damaged(G, C::Zlib));
        assert!(!damaged(G, C::Net));
        assert!(!damaged(G, C::Os));
        // A bad pack from the remote, and a tag of a tree: the remote's doing.
        assert!(!damaged(G, C::Indexer));
        assert!(!damaged(E::Peel, C::Object));
    }
}
