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
mod tests {
    use super::*;

    // Real keys made on this machine with `ssh-keygen -t ed25519|ecdsa -N '' -C ''`.
    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPEcfLDR9acnpM+FbR1MP/StFWuy/6tabFd7rIwZYbnE";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIDICEWVacCY8PSSk15PcWqU0KMkxFSeGgOhibSmYX8qw";
    const ECDSA_C: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGtqhV7wyfVW0sr+DsY15SUNclqortEIYxNAX04zZgfYsDMER2I1moTWs+Jxa1GmuRLox44UqBt5aDaVhnOIxQ4=";
    /// `ssh-keygen -lf` of ED_A.
    const ED_A_FINGERPRINT: &str = "SHA256:vPguQUWNkCMSMAH00kZqkbeeqEtNkOH5BS2Y1WNEgAE";

    /// Produced by `ssh-keygen -H` from the line
    /// `[git.Example.org]:2222 ssh-ed25519 <ED_A>` (ssh-keygen hashes the lower-cased name).
    const HASHED_GIT_EXAMPLE_2222: &str = "|1|uHAfU7f9zDCoAMCcMkQvrMhehl0=|gN8wG6WuohuGcPWfV9ddhWbu9dU= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPEcfLDR9acnpM+FbR1MP/StFWuy/6tabFd7rIwZYbnE";
    /// Same run, from `github.com ssh-ed25519 <ED_B>`.
    const HASHED_GITHUB: &str = "|1|2UJ6k60oj3kmxc4mWXH/kJrv25I=|+UsA0B4yvRhhfU8JfXU1Kl7oh40= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDICEWVacCY8PSSk15PcWqU0KMkxFSeGgOhibSmYX8qw";

    const ED: &str = "ssh-ed25519";
    const ECDSA: &str = "ecdsa-sha2-nistp256";

    fn blob(b64: &str) -> Vec<u8> {
        STANDARD.decode(b64).expect("test key is base64")
    }

    fn mismatch(types: &[&str]) -> Verdict {
        Verdict::Mismatch {
            expected_types: types.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn plain_host_on_port_22_matches() {
        let kh = format!("github.com {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
    }

    #[test]
    fn bracketed_host_and_port() {
        let kh = format!("[127.0.0.1]:2222 {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "127.0.0.1", 2222, ED, &blob(ED_A)),
            Verdict::Match
        );
        // Another port, or the default port, is another host.
        assert_eq!(
            check(&kh, "127.0.0.1", 2223, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        assert_eq!(
            check(&kh, "127.0.0.1", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        // A plain entry does not cover a non-default port.
        let kh = format!("127.0.0.1 {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "127.0.0.1", 2222, ED, &blob(ED_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn ipv6_literal_with_or_without_brackets() {
        let kh = format!("[::1]:2222 {ED} {ED_A}\n::1 {ED} {ED_B}\n");
        assert_eq!(check(&kh, "::1", 2222, ED, &blob(ED_A)), Verdict::Match);
        assert_eq!(check(&kh, "[::1]", 2222, ED, &blob(ED_A)), Verdict::Match);
        assert_eq!(check(&kh, "[::1]", 22, ED, &blob(ED_B)), Verdict::Match);
    }

    #[test]
    fn same_type_other_key_is_mismatch() {
        let kh = format!("github.com {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_B)),
            mismatch(&[ED])
        );
    }

    #[test]
    fn only_other_key_types_is_mismatch() {
        let kh = format!("github.com {ED} {ED_A}\ngithub.com {ED} {ED_B}\n");
        // Deduplicated, in file order.
        assert_eq!(
            check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
            mismatch(&[ED])
        );
        let kh = format!("github.com {ECDSA} {ECDSA_C}\ngithub.com {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_B)),
            mismatch(&[ECDSA, ED])
        );
    }

    #[test]
    fn any_matching_line_wins_over_other_keys() {
        let kh = format!(
            "github.com {ED} {ED_B}\ngithub.com {ECDSA} {ECDSA_C}\ngithub.com {ED} {ED_A}\n"
        );
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
        assert_eq!(
            check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
            Verdict::Match
        );
    }

    #[test]
    fn key_type_must_agree_too() {
        let kh = format!("github.com {ECDSA} {ED_A}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            mismatch(&[ECDSA])
        );
    }

    #[test]
    fn rsa_signature_names_are_ssh_rsa() {
        // Any blob will do for a type-name check.
        let kh = format!("github.com ssh-rsa {ED_A}\n");
        for name in ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"] {
            assert_eq!(
                check(&kh, "github.com", 22, name, &blob(ED_A)),
                Verdict::Match
            );
        }
    }

    #[test]
    fn unknown_host_and_empty_file() {
        let kh = format!("github.com {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "gitlab.com", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        assert_eq!(
            check("", "gitlab.com", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        assert_eq!(
            check("\n\n", "gitlab.com", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn comments_blank_lines_and_trailing_comments() {
        let kh = format!(
            "# a comment github.com {ED} {ED_B}\n\n   \n\t# indented comment\n  github.com\t{ED}   {ED_A} root@somewhere extra words\r\n"
        );
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
        // The commented-out line is not an entry.
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_B)),
            mismatch(&[ED])
        );
    }

    #[test]
    fn comma_separated_host_list() {
        let kh = format!("github.com,140.82.121.4,[ssh.github.com]:443 {ED} {ED_A}\n");
        for (host, port) in [
            ("github.com", 22),
            ("140.82.121.4", 22),
            ("ssh.github.com", 443),
        ] {
            assert_eq!(
                check(&kh, host, port, ED, &blob(ED_A)),
                Verdict::Match,
                "{host}:{port}"
            );
        }
        assert_eq!(
            check(&kh, "ssh.github.com", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn host_names_compare_case_insensitively() {
        let kh = format!("GitHub.COM {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
        assert_eq!(
            check(&kh, "GITHUB.com", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        let kh = format!("{HASHED_GIT_EXAMPLE_2222}\n{HASHED_GITHUB}\n");
        let a = blob(ED_A);
        let b = blob(ED_B);
        assert_eq!(check(&kh, "git.example.org", 2222, ED, &a), Verdict::Match);
        assert_eq!(check(&kh, "GIT.Example.ORG", 2222, ED, &a), Verdict::Match);
        assert_eq!(check(&kh, "git.example.org", 2222, ED, &b), mismatch(&[ED]));
        assert_eq!(check(&kh, "git.example.org", 22, ED, &a), Verdict::Unknown);
        assert_eq!(check(&kh, "example.org", 2222, ED, &a), Verdict::Unknown);
        assert_eq!(check(&kh, "github.com", 22, ED, &b), Verdict::Match);
        assert_eq!(
            check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
            mismatch(&[ED])
        );
    }

    #[test]
    fn broken_hashed_entries_do_not_match() {
        for hosts in [
            "|1|",
            "|1|nobase64!|xx",
            "|1|uHAfU7f9zDCoAMCcMkQvrMhehl0=",
            "|2|a|b",
        ] {
            let kh = format!("{hosts} {ED} {ED_A}\n");
            assert_eq!(
                check(&kh, "git.example.org", 2222, ED, &blob(ED_A)),
                Verdict::Unknown
            );
        }
    }

    #[test]
    fn wildcards() {
        let kh = format!("*.example.org,git?.example.net,[*.local]:2222 {ED} {ED_A}\n");
        let a = blob(ED_A);
        assert_eq!(check(&kh, "git.example.org", 22, ED, &a), Verdict::Match);
        assert_eq!(check(&kh, "a.b.example.org", 22, ED, &a), Verdict::Match);
        assert_eq!(check(&kh, "example.org", 22, ED, &a), Verdict::Unknown);
        assert_eq!(check(&kh, "git1.example.net", 22, ED, &a), Verdict::Match);
        assert_eq!(check(&kh, "git.example.net", 22, ED, &a), Verdict::Unknown);
        assert_eq!(
            check(&kh, "git12.example.net", 22, ED, &a),
            Verdict::Unknown
        );
        assert_eq!(check(&kh, "box.local", 2222, ED, &a), Verdict::Match);
        assert_eq!(check(&kh, "box.local", 22, ED, &a), Verdict::Unknown);
        // `*` alone covers every name, also the bracketed form.
        let kh = format!("* {ED} {ED_A}\n");
        assert_eq!(check(&kh, "127.0.0.1", 2222, ED, &a), Verdict::Match);
    }

    #[test]
    fn wildcard_matcher() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(!wildcard_match("a*b*c", "acb"));
        assert!(wildcard_match("*a", "banana"));
        assert!(!wildcard_match("?", ""));
        assert!(wildcard_match("??", "ab"));
        assert!(!wildcard_match("abc", "abcd"));
        assert!(!wildcard_match("", "a"));
    }

    #[test]
    fn negated_patterns_exclude() {
        let kh = format!("*.example.org,!evil.example.org {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
        assert_eq!(
            check(&kh, "evil.example.org", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        assert_eq!(
            check(&kh, "EVIL.example.org", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        // A negation alone matches nothing.
        let kh = format!("!evil.example.org {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn revoked_key_wins() {
        let kh = format!("github.com {ED} {ED_A}\n@revoked * {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Revoked
        );
        // Revoking another key changes nothing for this one.
        let kh = format!("github.com {ED} {ED_A}\n@revoked github.com {ED} {ED_B}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
        // A revoked line is not a listing: a revoked key of an unknown host is still revoked,
        // another key is still unknown.
        let kh = format!("@revoked github.com {ED} {ED_B}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_B)),
            Verdict::Revoked
        );
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        // Only for hosts the revoked line names.
        assert_eq!(
            check(&kh, "gitlab.com", 22, ED, &blob(ED_B)),
            Verdict::Unknown
        );
    }

    #[test]
    fn cert_authority_lines_are_ignored() {
        let kh = format!("@cert-authority *.example.org {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
            Verdict::Unknown
        );
        assert_eq!(
            check(&kh, "git.example.org", 22, ED, &blob(ED_B)),
            Verdict::Unknown
        );
        let kh = format!("{kh}git.example.org {ED} {ED_B}\n");
        assert_eq!(
            check(&kh, "git.example.org", 22, ED, &blob(ED_B)),
            Verdict::Match
        );
        assert_eq!(
            check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
            mismatch(&[ED])
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let kh = format!(
            "github.com\n\
             github.com {ED}\n\
             github.com {ED} not*base64\n\
             github.com 2048 35 12345678901234567890\n\
             @bogus github.com {ED} {ED_B}\n\
             @revoked\n\
             github.com {ED} {ED_A}\n"
        );
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_A)),
            Verdict::Match
        );
        assert_eq!(
            check(&kh, "github.com", 22, ED, &blob(ED_B)),
            mismatch(&[ED])
        );
    }

    #[test]
    fn unpadded_base64_key_is_accepted() {
        let unpadded = ECDSA_C.trim_end_matches('=');
        let kh = format!("github.com {ECDSA} {unpadded}\n");
        assert_eq!(
            check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
            Verdict::Match
        );
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        assert_eq!(fingerprint(&blob(ED_A)), ED_A_FINGERPRINT);
    }
}
