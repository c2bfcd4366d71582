//! Why a sync failed: the error kinds the daemon branches on, and how a git2 error maps onto one.

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
    /// The tracked branch or tag is gone from the remote; the last tree stays. Not retried.
    RefMissing,
    /// The directory holds something that is not this repository's checkout. Not retried.
    ForeignDirectory,
    /// Network trouble, timeouts, a remote that hung up. Retried with backoff.
    Transient,
    /// Anything else (disk full, permissions, …). Retried.
    Other,
}

impl ErrorKind {
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Other)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not_found",
            ErrorKind::HostKey => "host_key",
            ErrorKind::RefMissing => "ref_missing",
            ErrorKind::ForeignDirectory => "foreign_directory",
            ErrorKind::Transient => "transient",
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

/// Maps a git2 error onto an [`ErrorKind`] and a message that names the cause and holds no secret.
pub(super) fn classify(e: git2::Error, state: &AuthState) -> SyncError {
    if let Some(msg) = &state.host_key {
        return SyncError::new(ErrorKind::HostKey, msg.clone());
    }
    if let Some(msg) = &state.auth_failed {
        return SyncError::new(ErrorKind::Auth, format!("authentication failed: {msg}"));
    }
    let m = e.message().to_string();
    if m.contains("Unable to extract public key from private key") {
        return SyncError::new(
            ErrorKind::Auth,
            "cannot use the SSH key: wrong passphrase, or a key format libssh2 does not read",
        );
    }
    let lower = m.to_ascii_lowercase();
    let kind = if e.code() == ErrorCode::Auth
        || lower.contains("authentication")
        || lower.contains("failed to authenticate")
        || lower.contains("private key")
        || lower.contains("401")
        || lower.contains("403")
        || lower.contains("permission denied")
    {
        ErrorKind::Auth
    } else if e.code() == ErrorCode::Certificate {
        ErrorKind::HostKey
    } else if e.code() == ErrorCode::NotFound
        && matches!(
            e.class(),
            ErrorClass::Http | ErrorClass::Ssh | ErrorClass::Net
        )
        || lower.contains("404")
        || lower.contains("not found")
        || lower.contains("does not appear to be a git repository")
        || lower.contains("no such repository")
        || lower.contains("repository not exported")
        || lower.contains("no such file or directory") && e.class() == ErrorClass::Ssh
        || lower.contains("could not find repository")
    {
        ErrorKind::NotFound
    } else if matches!(
        e.class(),
        ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh | ErrorClass::Os
    ) || lower.contains("timed out")
        || lower.contains("connection")
        || lower.contains("early eof")
        || lower.contains("hung up")
    {
        ErrorKind::Transient
    } else {
        ErrorKind::Other
    };
    SyncError::new(kind, m)
}

/// True when a failed fetch's message points at a damaged object database.
pub(super) fn is_corruption(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "object not found",
        "missing object",
        "failed to read",
        "corrupt",
        "packfile",
        "odb",
        "zlib",
    ]
    .iter()
    .any(|s| m.contains(s))
}
