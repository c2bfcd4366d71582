//! Webhook intake, pure: detect the forge, verify a delivery, parse it into a push.
//!
//! The forge is detected from headers alone, a delivery is verified over the raw body bytes before
//! anything is parsed, and no IO or tokio is involved.
//!
//! One file per forge (`github.rs`, `gitlab.rs`, `gitea.rs`, `bitbucket.rs`) plus `standard.rs` for
//! the Standard Webhooks scheme (also used by GitLab signing tokens); `mac.rs` holds the MAC and
//! token checks and `json.rs` the one-pass payload reader. This file holds the shared types, the
//! dispatch, and the small helpers the forges share: header access and payload field access.
//!
//! A verified, parsed push is a *hint*: callers fetch from the configured remote, never from a
//! URL in [`Push::repo_urls`].

mod bitbucket;
mod gitea;
mod github;
mod gitlab;
mod json;
mod mac;
mod standard;

pub use standard::sign as sign_standard;

use std::str::FromStr;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::refname;
use crate::secret::Secret;

/// The forges (and the generic Standard Webhooks scheme) hookmirror accepts deliveries from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
    /// Gitea and Forgejo.
    #[serde(alias = "forgejo")]
    Gitea,
    /// Bitbucket Cloud and Data Center.
    Bitbucket,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
            Provider::Standard => "standard",
        }
    }

    /// Which forge sent this delivery, from headers alone. Order matters: Gitea/Forgejo also send
    /// GitHub-style copies (`X-GitHub-Event`, `X-Hub-Signature-256`), so their own event headers
    /// win; Standard Webhooks headers count only when no forge header is present (GitLab signing
    /// tokens send them too).
    pub fn detect(headers: &HeaderMap) -> Option<Provider> {
        let has = |name: &str| headers.contains_key(name);
        if has(gitea::EVENT) || has(gitea::FORGEJO_EVENT) {
            Some(Provider::Gitea)
        } else if has(gitlab::EVENT) {
            Some(Provider::Gitlab)
        } else if has(bitbucket::EVENT) {
            Some(Provider::Bitbucket)
        } else if has(github::EVENT) {
            Some(Provider::Github)
        } else if has(standard::ID) && has(standard::SIGNATURE) {
            Some(Provider::Standard)
        } else {
            None
        }
    }
}

/// The error of [`Provider::from_str`]. It does not echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown webhook provider (expected github, gitlab, gitea, forgejo, bitbucket or standard)"
)]
pub struct UnknownProvider;

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// `github`, `gitlab`, `gitea`, `forgejo` (→ [`Provider::Gitea`]), `bitbucket`, `standard`;
    /// ASCII case is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const NAMES: [(&str, Provider); 6] = [
            ("github", Provider::Github),
            ("gitlab", Provider::Gitlab),
            ("gitea", Provider::Gitea),
            ("forgejo", Provider::Gitea),
            ("bitbucket", Provider::Bitbucket),
            ("standard", Provider::Standard),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, provider)| provider)
            .ok_or(UnknownProvider)
    }
}

/// Settings for [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Accept GitHub's legacy `X-Hub-Signature: sha1=…` when no `X-Hub-Signature-256` is sent.
    pub allow_sha1: bool,
    /// The current time (Unix seconds), for the Standard Webhooks timestamp tolerance.
    pub now_unix: i64,
}

/// Why a delivery was not accepted. All of these are HTTP 401; the messages never contain a MAC,
/// secret or token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// No signature or token this provider accepts was sent.
    #[error("missing signature")]
    Missing,
    /// A signature or token was sent but matches none of the secrets (or is malformed).
    #[error("invalid signature")]
    Invalid,
    /// A valid Standard Webhooks signature whose timestamp is more than 5 minutes from now.
    #[error("timestamp outside tolerance")]
    Stale,
}

/// Verify a delivery for `provider` over the raw body bytes, before any parsing. Succeeds when any
/// of `secrets` verifies (secret rotation); empty secrets never verify, so an empty list always
/// fails. MACs and tokens are compared in constant time.
pub fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[impl AsRef<Secret>],
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    match provider {
        Provider::Github => github::verify(headers, body, secrets, opts),
        Provider::Gitlab => gitlab::verify(headers, body, secrets, opts),
        Provider::Gitea => gitea::verify(headers, body, secrets),
        Provider::Bitbucket => bitbucket::verify(headers, body, secrets),
        Provider::Standard => standard::verify(headers, body, secrets, opts.now_unix),
    }
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// GitHub `ping`, Bitbucket `diagnostics:ping`: answer 2xx, do nothing.
    Ping,
    Push(Push),
    /// Any other event; a short human reason such as "event issues is not handled".
    Ignored(String),
}

/// A push: which repository (as the payload names it) and which refs moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Every repository URL form the payload carries (clone, SSH, web, …), deduplicated, in
    /// payload order. A hint for matching only: never fetch from these.
    pub repo_urls: Vec<String>,
    /// One entry for GitHub, GitLab and Gitea pushes; Bitbucket and GitLab `repository_update`
    /// may carry several.
    pub updates: Vec<RefUpdate>,
}

/// One ref that moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The full ref, e.g. `refs/heads/main` or `refs/tags/v1`; always starts with `refs/` and
    /// passes [`crate::refname::is_valid`].
    pub git_ref: String,
    /// The commit id (40 or 64 lowercase hex) before the push; `None` when absent or all zeros.
    pub before: Option<String>,
    /// The commit id after the push; `None` when absent or all zeros (deletion).
    pub after: Option<String>,
    /// The ref was deleted (`deleted: true`, `after` all zeros, Bitbucket `new: null`, `DELETE`).
    pub deleted: bool,
}

/// An authentic delivery that cannot be understood: HTTP 400. Messages are short and name fields,
/// never payload content.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not valid JSON")]
    NotJson,
    #[error("payload is not a JSON object")]
    NotObject,
    #[error("missing event header {0}")]
    MissingEvent(&'static str),
    #[error("missing or invalid field `{0}`")]
    Field(&'static str),
    #[error("`{0}` is not a valid git ref")]
    BadRef(&'static str),
    #[error("`{0}` is not a commit id")]
    BadCommit(&'static str),
}

/// Parse an already verified delivery. Events other than pushes and pings become
/// `Ok(Event::Ignored(reason))`, never an error.
pub fn parse(provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<Event, ParseError> {
    match provider {
        Provider::Github => github::parse(headers, body),
        Provider::Gitlab => gitlab::parse(headers, body),
        Provider::Gitea => gitea::parse(headers, body),
        Provider::Bitbucket => bitbucket::parse(headers, body),
        Provider::Standard => standard::parse(body),
    }
}

/// Delivery-id headers, most specific first. Gitea sends `X-GitHub-Delivery` with the same value
/// as `X-Gitea-Delivery`, so the order does not split one delivery into two ids.
const DELIVERY_HEADERS: [&str; 7] = [
    "x-github-delivery",
    "idempotency-key",
    "x-gitea-delivery",
    "x-forgejo-delivery",
    "x-request-uuid",
    "x-request-id",
    standard::ID,
];

/// The longest delivery id accepted.
const MAX_DELIVERY_ID: usize = 200;

/// The delivery id used for dedupe: the first of `X-GitHub-Delivery`, `Idempotency-Key`,
/// `X-Gitea-Delivery`, `X-Forgejo-Delivery`, `X-Request-UUID`, `X-Request-Id`, `webhook-id` that
/// is present, trimmed; `None` when none is present or that one is empty, not visible ASCII, or
/// over 200 bytes.
pub fn delivery_id(headers: &HeaderMap) -> Option<String> {
    let value = DELIVERY_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))?;
    let id = value.to_str().ok()?.trim();
    (!id.is_empty() && id.len() <= MAX_DELIVERY_ID).then(|| id.to_owned())
}

// ---- shared helpers: headers -------------------------------------------------------------------

/// A header's value, trimmed. A value that is present but not visible ASCII reads as `""`, so it
/// fails every later check instead of looking absent.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .map(|value| value.to_str().map_or("", str::trim))
}

/// The event name from `name`, or [`ParseError::MissingEvent`] when absent or empty.
fn event_header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, ParseError> {
    header(headers, name)
        .filter(|event| !event.is_empty())
        .ok_or(ParseError::MissingEvent(name))
}

/// `Event::Ignored` for an event this module does not handle.
fn ignored(what: &str, event: &str) -> Event {
    Event::Ignored(format!("{what} {} is not handled", printable(event)))
}

/// At most 64 characters of `s` for a human message, anything but printable ASCII as `?`.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

// ---- shared helpers: payload fields ------------------------------------------------------------

fn optional_object<'v>(
    value: &'v Value,
    key: &'static str,
) -> Result<Option<&'v Value>, ParseError> {
    match value.get(key) {
        None => Ok(None),
        Some(object @ Value::Object(_)) => Ok(Some(object)),
        Some(_) => Err(ParseError::Field(key)),
    }
}

/// `value[key]` as an array, or [`ParseError::Field`].
fn array<'v>(value: &'v Value, key: &'static str) -> Result<&'v [Value], ParseError> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or(ParseError::Field(key))
}

/// Append `value` to `urls` when it is a non-empty string not already there.
fn push_url(urls: &mut Vec<String>, value: Option<&Value>) {
    if let Some(url) = value.and_then(Value::as_str)
        && !url.is_empty()
        && !urls.iter().any(|known| known == url)
    {
        urls.push(url.to_owned());
    }
}

/// Append the string values of `keys` in `object` to `urls` (see [`push_url`]).
fn push_urls(urls: &mut Vec<String>, object: &Value, keys: &[&str]) {
    for key in keys {
        push_url(urls, object.get(*key));
    }
}

/// A full ref from a payload: a string starting with `refs/` that git accepts as a ref name.
fn git_ref(value: Option<&Value>, field: &'static str) -> Result<String, ParseError> {
    let name = value
        .and_then(Value::as_str)
        .ok_or(ParseError::Field(field))?;
    checked_ref(name.to_owned(), field)
}

/// `name` when it starts with `refs/` and is a valid ref name.
fn checked_ref(name: String, field: &'static str) -> Result<String, ParseError> {
    if name.starts_with("refs/") && refname::is_valid(&name) {
        Ok(name)
    } else {
        Err(ParseError::BadRef(field))
    }
}

/// A commit id as a payload carries it.
#[derive(Debug, PartialEq, Eq)]
enum Oid {
    /// Absent, `null` or `""`.
    Absent,
    /// All zeros: the ref did not exist (before) or was deleted (after).
    Zero,
    /// 40 (SHA-1) or 64 (SHA-256) hex digits, lowercased.
    Id(String),
}

impl Oid {
    fn into_option(self) -> Option<String> {
        match self {
            Oid::Id(id) => Some(id),
            Oid::Absent | Oid::Zero => None,
        }
    }
}

/// Read a commit id; anything but absent/null/empty or 40/64 hex digits is an error.
fn oid(value: Option<&Value>, field: &'static str) -> Result<Oid, ParseError> {
    match value {
        None | Some(Value::Null) => Ok(Oid::Absent),
        Some(Value::String(s)) if s.is_empty() => Ok(Oid::Absent),
        Some(Value::String(s))
            if matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            if s.bytes().all(|b| b == b'0') {
                Ok(Oid::Zero)
            } else {
                Ok(Oid::Id(s.to_ascii_lowercase()))
            }
        }
        Some(_) => Err(ParseError::BadCommit(field)),
    }
}

/// A [`RefUpdate`]; `deleted` is also set when `after` is all zeros.
fn ref_update(git_ref: String, before: Oid, after: Oid, deleted: bool) -> RefUpdate {
    RefUpdate {
        git_ref,
        deleted: deleted || after == Oid::Zero,
        before: before.into_option(),
        after: after.into_option(),
    }
}

/// Whether some forge's parser reads `key` of a payload's `repository`/`project` object
/// (GitHub's six of its ~45 `*_url` keys, GitLab's, Bitbucket's `links`).
fn read_url_key(key: &str) -> bool {
    key == "links"
        || github::URL_KEYS.contains(&key)
        || gitlab::PROJECT_URL_KEYS.contains(&key)
        || gitlab::REPOSITORY_URL_KEYS.contains(&key)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for the webhook tests: header maps, secrets, MACs computed independently.

    use http::{HeaderMap, HeaderName, HeaderValue};

    use crate::secret::Secret;

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    pub(crate) fn secrets(values: &[&str]) -> Vec<Secret> {
        values.iter().map(|value| Secret::new(*value)).collect()
    }

    pub(crate) fn hmac_sha256_hex(key: &str, body: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = super::mac::HmacSha256::new_from_slice(key.as_bytes()).expect("any key size");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    pub(crate) fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("fixture is JSON")
    }
}

#[cfg(test)]
mod tests;
