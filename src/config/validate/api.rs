//! The `api` block: the single `api.token`, the scoped `api.tokens` (name, secret as SHA-256,
//! scopes, repository globs, expiry) and `api.protect_reads`.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::Validator;
use crate::config::lines::find_item_key_line;
use crate::config::raw::{RawApi, RawApiToken, RawDate};
use crate::config::{Api, ApiToken, Credential, Problem, Repo, Scopes};

/// The name the single `api.token` (or `api.token_file`) goes by in logs.
pub const SINGLE_TOKEN_NAME: &str = "api.token";

/// The SHA-256 of the empty string: a `sha256` with this value would let an empty password in.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Token names appear in logs and refusals: a short, safe alphabet.
fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `2027-06-30` (the token stops working at 00:00 UTC that day) or an RFC 3339 moment
/// (`2027-06-30T12:00:00Z`, `2027-06-30T14:00:00+02:00`).
pub fn parse_expiry(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| {
            format!("`{t}` is not a date: write 2027-06-30, or a moment as 2027-06-30T12:00:00Z")
        })
}

/// The SHA-256 of a token, as the config stores it.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Validator<'_, '_> {
    /// The `api` block. Runs after the repos, whose names token globs are checked against.
    pub(super) fn api(&mut self, raw: Option<&RawApi>, repos: &[Repo]) -> Api {
        let Some(raw) = raw else {
            return Api::default();
        };
        let mut tokens = Vec::new();
        if let Some(cred) =
            self.credential("api.token", &raw.token, "api.token_file", &raw.token_file)
        {
            tokens.push((
                None,
                ApiToken {
                    name: SINGLE_TOKEN_NAME.to_string(),
                    sha256: token_sha256(cred.value.expose()),
                    file: cred.file,
                    scopes: Scopes::ALL,
                    repos: None,
                    expires: None,
                    disabled: None,
                },
            ));
        }
        for (i, t) in raw.tokens.iter().flatten().enumerate() {
            if let Some(token) = self.api_token(i, t, repos) {
                tokens.push((Some(i), token));
            }
        }
        self.token_clashes(&tokens);
        let tokens: Vec<ApiToken> = tokens.into_iter().map(|(_, t)| t).collect();
        // Without a token the single-token era's meaning holds: reads open. With the single
        // `api.token` and no word on `protect_reads`, reads stay protected as they were.
        let protect_reads = raw
            .protect_reads
            .unwrap_or(raw.token.is_some() || raw.token_file.is_some());
        let can_read = tokens.iter().any(|t| t.scopes.read || t.scopes.admin);
        if protect_reads && !can_read {
            self.problem(
                "api.protect_reads",
                "no token has the `read` or `admin` scope, so every read would be refused: add one, or set protect_reads: false",
            );
        }
        Api {
            tokens,
            protect_reads,
        }
    }

    /// One entry of `api.tokens`; `None` when it cannot be used (the problems are noted).
    fn api_token(&mut self, i: usize, t: &RawApiToken, repos: &[Repo]) -> Option<ApiToken> {
        let label = match &t.name {
            Some(n) if valid_token_name(n) => n.clone(),
            _ => format!("#{}", i + 1),
        };
        let at = |key: &str| TokenField {
            index: i,
            key: key.to_string(),
            field: format!("api.tokens[{label}].{key}"),
        };
        let before = self.problems.len();
        let name = match &t.name {
            None => {
                self.token_problem(&at("name"), "is required (it names the token in logs)");
                String::new()
            }
            Some(n) if !valid_token_name(n) => {
                self.token_problem(
                    &at("name"),
                    format!("`{n}` is not a usable name (1–64 letters, digits, `-`, `_`, `.`)"),
                );
                String::new()
            }
            Some(n) => n.clone(),
        };
        let sha256 = self.token_secret(&at, t);
        let scopes = self.token_scopes(&at("scopes"), t.scopes.as_deref());
        let patterns = t
            .repos
            .as_ref()
            .map(|list| self.token_repos(&at("repos"), list, repos, scopes));
        let expires = match &t.expires {
            None => None,
            Some(raw) => {
                let text = match raw {
                    RawDate::Text(s) => self.expand(&at("expires").field, s),
                    RawDate::Toml(d) => d.to_string(),
                };
                match parse_expiry(&text) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        self.token_problem(&at("expires"), e);
                        None
                    }
                }
            }
        };
        let (sha256, file) = sha256?;
        (self.problems.len() == before).then_some(ApiToken {
            name,
            sha256,
            file,
            scopes,
            repos: patterns,
            expires,
            disabled: None,
        })
    }

    /// Exactly one of `sha256`, `token` and `token_file`: the hash (zeros for a file, filled in
    /// by `load`) and the file.
    fn token_secret(
        &mut self,
        at: &impl Fn(&str) -> TokenField,
        t: &RawApiToken,
    ) -> Option<([u8; 32], Option<std::path::PathBuf>)> {
        let given = [
            ("sha256", t.sha256.is_some()),
            ("token", t.token.is_some()),
            ("token_file", t.token_file.is_some()),
        ];
        let set: Vec<&str> = given.iter().filter(|(_, s)| *s).map(|(k, _)| *k).collect();
        match set.as_slice() {
            [] => {
                self.token_problem(
                    &at("sha256"),
                    "a token needs `sha256` (from `hookmirror token new`), `token` or `token_file`",
                );
                return None;
            }
            [_] => {}
            [first, .., last] => {
                self.token_problem(&at(last), format!("set `{first}` or `{last}`, not both"));
                return None;
            }
        }
        if let Some(hex_text) = &t.sha256 {
            let f = at("sha256");
            let text = self.expand(&f.field, hex_text).trim().to_ascii_lowercase();
            let mut out = [0u8; 32];
            if text.len() != 64 || hex::decode_to_slice(&text, &mut out).is_err() {
                self.token_problem(
                    &f,
                    "is not a SHA-256: 64 hex digits, as `hookmirror token new` prints (or `printf %s TOKEN | sha256sum`)",
                );
                return None;
            }
            if text == EMPTY_SHA256 {
                self.token_problem(&f, "is the SHA-256 of an empty token");
                return None;
            }
            return Some((out, None));
        }
        let f = at("token");
        let file_field = at("token_file").field;
        let cred: Credential = self.credential(&f.field, &t.token, &file_field, &t.token_file)?;
        match cred.file {
            Some(path) => Some(([0; 32], Some(path))),
            None => Some((token_sha256(cred.value.expose()), None)),
        }
    }

    fn token_scopes(&mut self, f: &TokenField, written: Option<&[String]>) -> Scopes {
        let mut scopes = Scopes::default();
        let Some(written) = written.filter(|w| !w.is_empty()) else {
            self.token_problem(
                f,
                "is required: one or more of read, sync, admin (e.g. scopes: [sync])",
            );
            return scopes;
        };
        for s in written {
            match s.trim().to_ascii_lowercase().as_str() {
                "read" => scopes.read = true,
                "sync" => scopes.sync = true,
                "admin" => scopes.admin = true,
                other => {
                    self.token_problem(f, format!("`{other}` is not a scope: read, sync or admin"))
                }
            }
        }
        scopes
    }

    /// Names or globs of repositories; one that matches no repository is a warning (the repo
    /// may come with a later edit).
    fn token_repos(
        &mut self,
        f: &TokenField,
        list: &[String],
        repos: &[Repo],
        scopes: Scopes,
    ) -> Vec<glob::Pattern> {
        if scopes.admin {
            self.token_problem(
                f,
                "an admin token reaches every repository: drop `repos`, or the `admin` scope",
            );
        }
        if list.is_empty() {
            self.token_problem(
                f,
                "is empty, so the token reaches no repository: name some, or leave `repos` out for all",
            );
        }
        let mut out = Vec::with_capacity(list.len());
        for text in list {
            let text = self.expand(&f.field, text).trim().to_string();
            let pattern = match glob::Pattern::new(&text) {
                Ok(p) if !text.is_empty() => p,
                Ok(_) => {
                    self.token_problem(f, "holds an empty name");
                    continue;
                }
                Err(e) => {
                    self.token_problem(f, format!("`{text}` is not a name or glob: {e}"));
                    continue;
                }
            };
            if !repos.iter().any(|r| pattern.matches(&r.name)) {
                let line = self.token_line(f);
                self.warnings.push(self.located(
                    f,
                    line,
                    format!("`{text}` matches no repository (yet)"),
                ));
            }
            out.push(pattern);
        }
        out
    }

    /// Two tokens with one name, or with one secret (which one called could not be told).
    /// `tokens` holds each token with its index in `api.tokens` (`None`: the single `api.token`).
    fn token_clashes(&mut self, tokens: &[(Option<usize>, ApiToken)]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut hashes: HashMap<[u8; 32], &str> = HashMap::new();
        for (index, t) in tokens {
            let at = |key: &str| TokenField {
                index: index.unwrap_or(0),
                key: key.to_string(),
                field: format!("api.tokens[{}].{key}", t.name),
            };
            let count = names.entry(t.name.as_str()).or_insert(0);
            *count += 1;
            if *count == 2 {
                self.token_problem(&at("name"), format!("`{}` names two tokens", t.name));
            }
            // A file's token is hashed when `load` reads it; `load` checks it then.
            if t.file.is_some() {
                continue;
            }
            if let Some(other) = hashes.insert(t.sha256, t.name.as_str())
                && other != t.name
            {
                self.token_problem(
                    &at("sha256"),
                    format!("is the same token as `{other}`: give each caller a token of its own"),
                );
            }
        }
    }

    fn token_line(&self, f: &TokenField) -> Option<usize> {
        self.ctx
            .text
            .and_then(|t| find_item_key_line(t, self.ctx.format, "api.tokens", f.index, &f.key))
    }

    fn located(&self, f: &TokenField, line: Option<usize>, message: String) -> Problem {
        Problem {
            file: self.ctx.file.clone(),
            line,
            repo: None,
            field: Some(f.field.clone()),
            message,
        }
    }

    fn token_problem(&mut self, f: &TokenField, message: impl Into<String>) {
        let line = self.token_line(f);
        let p = self.located(f, line, message.into());
        self.problems.push(p);
    }
}

/// Where a problem with a token is: its index in `api.tokens` and the key, for the line, and
/// the field as shown (`api.tokens[ci-docs].scopes`).
struct TokenField {
    index: usize,
    key: String,
    field: String,
}

#[cfg(test)]
mod tests;
