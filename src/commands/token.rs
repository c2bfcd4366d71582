//! `hookmirror token new`: a fresh random API token from the OS's random source, printed once,
//! and the config block (its SHA-256, scopes, repositories, expiry) to paste under `api.tokens`.
//! The block is checked by the config's own validation before it is printed.

use std::io::Write;

use base64::Engine as _;

use super::{EXIT_CONFIG, print_load_error};
use crate::cli::TokenAction;
use crate::config::{Context, Format, LoadError, parse_str, token_sha256, validate};

/// Random bytes in a token: 256 bits, beyond guessing, and as long as the SHA-256 kept of it.
pub const TOKEN_BYTES: usize = 32;

/// Tokens start with this, so secret scanners and people can tell what a leaked string is.
pub const TOKEN_PREFIX: &str = "hm_";

/// Runs a `token` subcommand; returns the exit code.
pub fn token(action: &TokenAction, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let TokenAction::New {
        name,
        scopes,
        repos,
        expires,
    } = action;
    let mut bytes = [0u8; TOKEN_BYTES];
    if let Err(e) = getrandom::fill(&mut bytes) {
        let _ = writeln!(err, "cannot read the OS random source: {e}");
        return 1;
    }
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let block = entry_yaml(
        name,
        &token_sha256(&secret),
        scopes,
        repos,
        expires.as_deref(),
    );
    // The same validation as `hookmirror check`: a bad scope or date is said now, not at reload.
    let text = format!("api:\n  tokens:\n{block}");
    let checked = parse_str(&text, Format::Yaml)
        .and_then(|raw| validate(raw, &Context::bare(Format::Yaml, "/")));
    if let Err(problems) = checked {
        print_load_error(&LoadError::Invalid(problems), err);
        return EXIT_CONFIG;
    }
    let _ = writeln!(
        out,
        "API token `{name}` (shown once; store it now, e.g. as a masked CI variable):\n\n{secret}\n\n\
         Paste this under `api: tokens:` in the config (it holds only the token's SHA-256):\n\n{block}"
    );
    0
}

/// One `api.tokens` entry, indented for `api:\n  tokens:\n`.
fn entry_yaml(
    name: &str,
    sha256: &[u8; 32],
    scopes: &[String],
    repos: &[String],
    expires: Option<&str>,
) -> String {
    let mut s = format!(
        "    - name: {}\n      sha256: {}\n      scopes: [{}]\n",
        quoted(name),
        hex::encode(sha256),
        scopes
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !repos.is_empty() {
        let list: Vec<String> = repos.iter().map(|r| quoted(r)).collect();
        s.push_str(&format!("      repos: [{}]\n", list.join(", ")));
    }
    if let Some(e) = expires {
        s.push_str(&format!("      expires: {}\n", quoted(e)));
    }
    s
}

/// A YAML double-quoted scalar (globs start with `*`, which YAML reads as an alias otherwise).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(scopes: &[&str], repos: &[&str], expires: Option<&str>) -> (i32, String, String) {
        let action = TokenAction::New {
            name: "ci-docs".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            repos: repos.iter().map(|s| s.to_string()).collect(),
            expires: expires.map(str::to_string),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = token(&action, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap_or_default(),
            String::from_utf8(err).unwrap_or_default(),
        )
    }

    #[test]
    fn a_bad_scope_or_date_is_refused_before_anything_is_printed() {
        let (code, out, err) = new(&["write"], &[], None);
        assert_eq!((code, out.as_str()), (EXIT_CONFIG, ""));
        assert!(err.contains("`write` is not a scope"), "{err}");
        let (code, out, err) = new(&["sync"], &["docs"], Some("30.06.2027"));
        assert_eq!((code, out.as_str()), (EXIT_CONFIG, ""));
        assert!(err.contains("is not a date"), "{err}");
    }

    #[test]
    fn globs_are_quoted() {
        let (code, out, _) = new(&["sync", "read"], &["docs", "*-docs"], Some("2027-06-30"));
        assert_eq!(code, 0);
        assert!(
            out.contains("scopes: [\"sync\", \"read\"]\n      repos: [\"docs\", \"*-docs\"]\n      expires: \"2027-06-30\"\n"),
            "{out}"
        );
    }
}
