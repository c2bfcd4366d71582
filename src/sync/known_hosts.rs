//! OpenSSH `known_hosts` parsing and strict host-key checking (no trust on first use).
//!
//! This is a pure function of the file's text: nothing is read from disk and nothing is ever
//! written back. The semantics follow OpenSSH's `hostfile.c`/`match.c`:
//!
//! - blank lines and lines starting with `#` are ignored; so are lines that do not parse (too
//!   few fields, key that is not base64, SSH-1 style numeric keys, unknown `@markers`);
//! - the host field is either a comma-separated list of patterns or one hashed entry
//!   `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`;
//! - patterns may use `*` and `?` wildcards; a pattern prefixed with `!` negates, and a negated
//!   match excludes the line even if another pattern on it matches;
//! - the name looked up is `host` for port 22 and `[host]:port` otherwise, compared
//!   case-insensitively (hashed entries are of the lower-cased name, as `ssh-keygen -H` writes them);
//! - `@revoked` lines whose host matches and whose key equals the presented key win over
//!   everything ([`Verdict::Revoked`]); `@cert-authority` lines are ignored (hookmirror does
//!   not do host certificates).
//!
//! **Key of another type.** When the host is listed only with keys of *other* types than the one
//! presented (say the file has `ssh-rsa` and the server shows `ssh-ed25519`), OpenSSH classifies the
//! lookup as "new host key of this type" and, with `StrictHostKeyChecking yes`, refuses with
//! "No ED25519 host key is known for …". We report that as [`Verdict::Mismatch`] listing the types
//! that *are* known: the host is known, the presented key is not one we trust, and nothing is
//! trusted on first use. Callers must treat `Mismatch` and `Unknown` as refusals.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Outcome of looking a presented host key up in a `known_hosts` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The host is listed with exactly this key.
    Match,
    /// The host is listed, but not with this key ("REMOTE HOST IDENTIFICATION HAS CHANGED", or
    /// only keys of other types are known). `expected_types` are the key types listed for the
    /// host, in file order, without duplicates.
    Mismatch { expected_types: Vec<String> },
    /// The host is not listed at all (apart from `@cert-authority` lines).
    Unknown,
    /// The key is listed as `@revoked` for this host.
    Revoked,
}

/// Checks the key a server presented against the text of a `known_hosts` file.
///
/// `key_type` is the OpenSSH name (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …; the RSA
/// signature names `rsa-sha2-256`/`rsa-sha2-512` are accepted as `ssh-rsa`), `key` the raw key
/// blob (the base64-decoded second field of a `known_hosts` line). The host is looked up as
/// `host` for port 22 and as `[host]:port` otherwise; `host` may be given with or without the
/// brackets of an IPv6 literal.
pub fn check(known_hosts: &str, host: &str, port: u16, key_type: &str, key: &[u8]) -> Verdict {
    let name = lookup_name(host, port);
    let key_type = canonical_key_type(key_type);
    let mut revoked = false;
    let mut matched = false;
    let mut expected_types: Vec<String> = Vec::new();

    for entry in known_hosts.lines().filter_map(parse_line) {
        if entry.marker == Marker::CertAuthority || !entry.host_matches(&name) {
            continue;
        }
        let same_key = entry.key == key;
        match entry.marker {
            Marker::Revoked => revoked |= same_key,
            Marker::CertAuthority => {}
            Marker::None => {
                if same_key && canonical_key_type(entry.key_type) == key_type {
                    matched = true;
                } else if !expected_types.iter().any(|t| t == entry.key_type) {
                    expected_types.push(entry.key_type.to_string());
                }
            }
        }
    }

    if revoked {
        Verdict::Revoked
    } else if matched {
        Verdict::Match
    } else if !expected_types.is_empty() {
        Verdict::Mismatch { expected_types }
    } else {
        Verdict::Unknown
    }
}

/// SHA-256 fingerprint of a key blob in OpenSSH's form, `SHA256:<base64 without padding>`.
pub fn fingerprint(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    format!("SHA256:{}", STANDARD_NO_PAD.encode(digest.as_slice()))
}

/// The name OpenSSH looks up: `host` for port 22, `[host]:port` otherwise; lower-cased.
fn lookup_name(host: &str, port: u16) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// RSA keys are `ssh-rsa` whatever signature algorithm (`rsa-sha2-*`) was negotiated.
fn canonical_key_type(key_type: &str) -> &str {
    match key_type {
        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
        other => other,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
struct Entry<'a> {
    marker: Marker,
    hosts: &'a str,
    key_type: &'a str,
    key: Vec<u8>,
}

/// Parses one line; `None` for blank lines, comments and lines OpenSSH would skip as invalid.
fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = if first.starts_with('@') {
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            _ => return None,
        };
        first = fields.next()?;
        marker
    } else {
        Marker::None
    };
    let key_type = fields.next()?;
    // SSH-1 RSA lines are "host bits exponent modulus": not something SSH-2 can match.
    if key_type.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key = decode_base64(fields.next()?)?;
    if key.is_empty() {
        return None;
    }
    Some(Entry {
        marker,
        hosts: first,
        key_type,
        key,
    })
}

impl Entry<'_> {
    /// Whether the host field matches the (lower-cased) lookup name.
    fn host_matches(&self, name: &str) -> bool {
        if let Some(hashed) = self.hosts.strip_prefix("|1|") {
            return hashed_matches(hashed, name);
        }
        let mut positive = false;
        for pattern in self.hosts.split(',').filter(|p| !p.is_empty()) {
            let (negated, pattern) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, pattern),
            };
            if wildcard_match(&pattern.to_ascii_lowercase(), name) {
                if negated {
                    return false;
                }
                positive = true;
            }
        }
        positive
    }
}

/// `salt|hash` (both base64) of a `|1|` entry against the lookup name.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Some(salt), Some(hash)) = (decode_base64(salt), decode_base64(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

/// OpenSSH `match_pattern`: `*` is any run of characters (also none), `?` exactly one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests;
