//! Outbound notification targets as configured: the events, the signing secret and its check.

use super::Credential;
use crate::secret::Secret;

/// The events an outbound notification can be sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// A sync moved the checkout to another commit.
    Succeeded,
    Failed,
    /// The first successful sync after failures.
    Recovered,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 3] = [
        NotifyEvent::Succeeded,
        NotifyEvent::Failed,
        NotifyEvent::Recovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Succeeded => "sync.succeeded",
            NotifyEvent::Failed => "sync.failed",
            NotifyEvent::Recovered => "sync.recovered",
        }
    }
}

/// Where sync events are POSTed, signed per Standard Webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// http(s) only; may hold credentials, so it is shown redacted.
    pub url: String,
    /// A `whsec_…` signing secret (checked at validation, or when the file is read).
    pub secret: Credential,
    pub events: Vec<NotifyEvent>,
    /// Extra request headers; values may be credentials (`Authorization`), so they are secrets.
    pub headers: Vec<(String, Secret)>,
}

/// What is wrong with a Standard Webhooks signing secret, if anything: it must be `whsec_`
/// followed by the base64 of at least one byte.
pub fn notify_secret_problem(secret: &str) -> Option<&'static str> {
    use base64::Engine as _;
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return Some("must be a Standard Webhooks secret: `whsec_` followed by base64");
    };
    match base64::engine::general_purpose::STANDARD.decode(encoded) {
        Ok(key) if !key.is_empty() => None,
        _ => Some("the part after `whsec_` is not base64 of a key"),
    }
}
