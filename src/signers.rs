//! Trusted signing keys as their files hold them: git's `allowed_signers` (SSH public keys with
//! principals) and armored OpenPGP public keys. Parsing only; `config::load` checks the files
//! with it, `sync::verify` reads them at every sync. Pure.

use pgp::composed::{Deserializable, SignedPublicKey};

/// The namespace git signs commits and tags in (`ssh-keygen -Y sign -n git`).
pub const SSH_NAMESPACE: &str = "git";

/// One line of an allowed_signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    /// Comma-separated principals as written (shown when a signature verifies).
    pub principals: String,
    /// `namespaces="…"`: the namespaces the key may sign in; `None`: any.
    pub namespaces: Option<Vec<String>>,
    pub key: ssh_key::PublicKey,
}

impl AllowedSigner {
    /// Whether this key may sign in `namespace` (patterns as ssh's: `*`, `?`).
    pub fn allows(&self, namespace: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|list| {
            list.iter().any(|p| {
                glob::Pattern::new(p).is_ok_and(|p| p.matches(namespace)) || p == namespace
            })
        })
    }
}

/// Parses an allowed_signers file (`principals [options] keytype base64 [comment]`, `#`
/// comments). Options hookmirror cannot honour (`cert-authority`, `valid-after`,
/// `valid-before`) are refused rather than ignored: ignoring an expiry would trust an expired
/// key. The error names the line.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let signer = parse_signer(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(signer);
    }
    if out.is_empty() {
        return Err("no keys in it".into());
    }
    Ok(out)
}

fn parse_signer(line: &str) -> Result<AllowedSigner, String> {
    let (principals, rest) = split_token(line);
    if rest.is_empty() {
        return Err("expected `principals [options] keytype key`".into());
    }
    let mut namespaces = None;
    let key_text = if looks_like_key_type(first_word(rest)) {
        rest
    } else {
        let (options, key_text) = split_token(rest);
        for option in split_options(options) {
            let (name, value) = match option.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(v.trim_matches('"'))),
                None => (option.to_ascii_lowercase(), None),
            };
            match (name.as_str(), value) {
                ("namespaces", Some(v)) => {
                    namespaces = Some(v.split(',').map(str::to_string).collect());
                }
                ("cert-authority" | "valid-after" | "valid-before", _) => {
                    return Err(format!(
                        "option `{name}` is not supported by hookmirror (remove it, or list the key itself)"
                    ));
                }
                _ => return Err(format!("unknown option `{option}`")),
            }
        }
        key_text
    };
    let key = ssh_key::PublicKey::from_openssh(key_text)
        .map_err(|e| format!("not an SSH public key ({e})"))?;
    Ok(AllowedSigner {
        principals: principals.trim_matches('"').to_string(),
        namespaces,
        key,
    })
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

fn looks_like_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-")
}

/// The first whitespace-separated token (double quotes keep spaces inside), and the rest.
fn split_token(s: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&s[..i], s[i..].trim_start()),
            _ => {}
        }
    }
    (s, "")
}

/// Comma-separated options; commas inside double quotes stay.
fn split_options(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Parses one or more armored OpenPGP public keys (`-----BEGIN PGP PUBLIC KEY BLOCK-----`),
/// each with its self-signatures and subkey bindings checked.
pub fn parse_gpg_keys(text: &str) -> Result<Vec<SignedPublicKey>, String> {
    if !text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return Err(
            "is not an armored OpenPGP public key (-----BEGIN PGP PUBLIC KEY BLOCK-----; export it with `gpg --armor --export KEY`)"
                .into(),
        );
    }
    let (keys, _) = SignedPublicKey::from_string_many(text)
        .map_err(|e| format!("is not an armored OpenPGP public key ({e})"))?;
    let mut out = Vec::new();
    for key in keys {
        let key = key.map_err(|e| format!("holds a key that does not parse ({e})"))?;
        key.verify_bindings()
            .map_err(|e| format!("holds a key whose self-signatures do not verify ({e})"))?;
        out.push(key);
    }
    if out.is_empty() {
        return Err("holds no key".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm+EzOcjXJrpOf1kcoG8TQ3wlRoFIGwB2/7E8mWAO6Y";

    #[test]
    fn allowed_signers_lines_parse_with_their_options() {
        let text = format!(
            "# trusted\n\nalice@example.com {KEY} laptop\n\"bob@x,carol@y\" namespaces=\"git,file\" {KEY}\n"
        );
        let s = parse_allowed_signers(&text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].principals, "alice@example.com");
        assert!(s[0].allows("git") && s[0].allows("anything"));
        assert_eq!(s[1].principals, "bob@x,carol@y");
        assert!(s[1].allows("git") && !s[1].allows("email"));
        let only_file = format!("a namespaces=\"file\" {KEY}\n");
        assert!(!parse_allowed_signers(&only_file).unwrap()[0].allows("git"));
    }

    #[test]
    fn what_cannot_be_honoured_or_read_is_refused_with_its_line() {
        for (text, want) in [
            (
                format!("a valid-before=\"20200101\" {KEY}\n"),
                "line 1: option `valid-before`",
            ),
            (
                format!("\na cert-authority {KEY}\n"),
                "line 2: option `cert-authority`",
            ),
            (
                "a ssh-ed25519 notbase64\n".to_string(),
                "line 1: not an SSH public key",
            ),
            ("alice\n".to_string(), "line 1: expected"),
            ("# nothing\n".to_string(), "no keys"),
        ] {
            let e = parse_allowed_signers(&text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_gpg_key_file_must_be_an_armored_public_key() {
        let e = parse_gpg_keys("-----BEGIN PGP PRIVATE KEY BLOCK-----\n").unwrap_err();
        assert!(e.contains("not an armored OpenPGP public key"), "{e}");
        let e = parse_gpg_keys(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
        )
        .unwrap_err();
        assert!(!e.is_empty());
    }
}
