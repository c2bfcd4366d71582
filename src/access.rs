//! Who may call which API endpoint: the presented credential (bearer, or basic with the token
//! as password) → the configured token it is → allowed, or refused with the status and the
//! reason. Pure (the clock comes in); every API handler asks [`decide`] through the server's
//! guard, so endpoints added later get the same rules.
//!
//! Tokens are compared as SHA-256 digests, in constant time, against every configured token:
//! the work does not depend on which token matched or on how many bytes of it did.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{Api, ApiToken};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// A GET: every repository's view (`None`, the answer is filtered with [`Caller::may_read`])
    /// or one repository's.
    Read(Option<&'a str>),
    /// `POST /api/repos/{name}/sync`.
    Sync(&'a str),
    /// Everything else that changes the daemon (`POST /api/reload`).
    Admin,
}

/// Who is calling, once allowed.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Reads are open (`api.protect_reads: false`): no credential was checked.
    Anonymous,
    Token(ApiToken),
}

impl Caller {
    /// For logs: the token's name, or `-`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "-",
            Caller::Token(t) => &t.name,
        }
    }

    /// Whether this caller may read every repository (an answer that names them all, such as
    /// the metrics, cannot be filtered).
    pub fn may_read_all(&self) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Token(t) => t.scopes.admin || (t.scopes.read && t.repos.is_none()),
        }
    }

    /// Whether a list answer may show `repo` to this caller.
    pub fn may_read(&self, repo: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Token(t) => t.scopes.admin || (t.scopes.read && reaches(t, repo)),
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token is configured, so nothing may change the daemon.
    Disabled,
    /// No credential came (or an empty one).
    Missing,
    /// The credential is no configured token.
    Invalid,
    /// The token's `expires` has passed.
    Expired { name: String, at: DateTime<Utc> },
    /// A valid token used outside its scopes or repositories: what it lacks.
    Lacks { name: String, what: String },
}

impl Refusal {
    /// 401 when the caller is not known (retry with other credentials), 403 when it is known
    /// and may not do this.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Missing | Refusal::Invalid | Refusal::Expired { .. } => 401,
            Refusal::Disabled | Refusal::Lacks { .. } => 403,
        }
    }

    /// One word for logs: `disabled`, `missing`, `invalid`, `expired`, `forbidden`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::Missing => "missing",
            Refusal::Invalid => "invalid",
            Refusal::Expired { .. } => "expired",
            Refusal::Lacks { .. } => "forbidden",
        }
    }

    /// The answer's message. Never the presented credential; a token's name only to a caller
    /// that holds the token.
    pub fn message(&self) -> String {
        match self {
            Refusal::Disabled => {
                "the sync API is disabled: configure api.tokens (or api.token)".into()
            }
            Refusal::Missing => "a token is required (Authorization: Bearer <token>)".into(),
            Refusal::Invalid => "the token is not valid".into(),
            Refusal::Expired { name, at } => {
                format!(
                    "token `{name}` expired at {}",
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                )
            }
            Refusal::Lacks { name, what } => format!("token `{name}` lacks {what}"),
        }
    }
}

/// The credential in an `Authorization` header: `Bearer <token>`, or `Basic` with any user name
/// and the token as password (so a browser can log in). `None` for any other form.
pub fn credential(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

/// The configured token whose digest is `presented`'s, looking at every token whatever matched.
/// A disabled token (its file could not be read) matches nothing.
pub fn identify<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = 0u32;
    let mut any = subtle::Choice::from(0);
    for (i, t) in tokens.iter().enumerate() {
        let usable = subtle::Choice::from(u8::from(t.disabled.is_none()));
        let same = digest.ct_eq(&t.sha256) & usable;
        found.conditional_assign(&(i as u32), same);
        any |= same;
    }
    bool::from(any).then(|| &tokens[found as usize])
}

/// Whether `token` may reach `repo` (its `repos` names or globs; all when it has none).
fn reaches(token: &ApiToken, repo: &str) -> bool {
    token
        .repos
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p.matches(repo)))
}

/// The decision for a request that needs `need`, presenting `presented` (from [`credential`]),
/// at `now`.
pub fn decide(
    api: &Api,
    presented: Option<&str>,
    need: Need,
    now: DateTime<Utc>,
) -> Result<Caller, Refusal> {
    if matches!(need, Need::Read(_)) && !api.protect_reads {
        return Ok(Caller::Anonymous);
    }
    if api.tokens.is_empty() {
        return Err(Refusal::Disabled);
    }
    let presented = presented
        .filter(|p| !p.is_empty())
        .ok_or(Refusal::Missing)?;
    let token = identify(&api.tokens, presented).ok_or(Refusal::Invalid)?;
    if let Some(at) = token.expires
        && now >= at
    {
        return Err(Refusal::Expired {
            name: token.name.clone(),
            at,
        });
    }
    let lacks = |what: String| {
        Err(Refusal::Lacks {
            name: token.name.clone(),
            what,
        })
    };
    let s = token.scopes;
    if s.admin {
        return Ok(Caller::Token(token.clone()));
    }
    let (scope, has, repo) = match need {
        Need::Read(repo) => ("read", s.read, repo),
        Need::Sync(repo) => ("sync", s.sync, Some(repo)),
        Need::Admin => ("admin", false, None),
    };
    if !has {
        return lacks(format!("the `{scope}` scope"));
    }
    match repo {
        Some(r) if !reaches(token, r) => lacks(format!("access to repository `{r}`")),
        _ => Ok(Caller::Token(token.clone())),
    }
}

#[cfg(test)]
mod tests;
