//! MAC and token checks: constant-time compares, every secret tried (rotation), no early exit.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::VerifyError;
use crate::secret::Secret;

/// HMAC-SHA256, which GitHub, Gitea, Bitbucket and Standard Webhooks sign with.
pub(super) type HmacSha256 = Hmac<Sha256>;

/// True when `check` accepts any non-empty secret. Every secret is tried: no early exit.
pub(super) fn any_secret<'s>(
    secrets: impl IntoIterator<Item = &'s Secret>,
    mut check: impl FnMut(&str) -> bool,
) -> bool {
    secrets
        .into_iter()
        .filter(|secret| !secret.is_empty())
        .fold(false, |found, secret| check(secret.expose()) | found)
}

/// True when the MAC of the concatenated `parts` under `key` equals any of `tags` (constant time;
/// a tag of the wrong length only reveals that its length is wrong).
pub(super) fn mac_matches<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], tags: &[Vec<u8>]) -> bool {
    let Some(expected) = mac_of::<M>(key, parts) else {
        return false;
    };
    tags.iter().fold(false, |found, tag| {
        bool::from(expected.as_slice().ct_eq(tag)) | found
    })
}

/// The MAC of the concatenated `parts` under `key` (`None` for a key the MAC refuses).
pub(super) fn mac_of<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut mac = <M as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().to_vec())
}

/// Verify `hex_mac` (lowercase hex, as GitHub, Gitea and Bitbucket send it) as the MAC of `body`
/// under any of `secrets`. Uppercase, odd-length or non-hex input is [`VerifyError::Invalid`].
pub(super) fn verify_hex_mac<M: Mac + KeyInit>(
    secrets: &[impl AsRef<Secret>],
    body: &[u8],
    hex_mac: &str,
) -> Result<(), VerifyError> {
    let tag = decode_lower_hex(hex_mac).ok_or(VerifyError::Invalid)?;
    let tags = [tag];
    if any_secret(secrets.iter().map(AsRef::as_ref), |secret| {
        mac_matches::<M>(secret.as_bytes(), &[body], &tags)
    }) {
        Ok(())
    } else {
        Err(VerifyError::Invalid)
    }
}

fn decode_lower_hex(s: &str) -> Option<Vec<u8>> {
    let lower = !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if lower { hex::decode(s).ok() } else { None }
}

/// Constant-time equality of a sent token and a secret. Both are hashed first so that not even
/// their lengths are compared directly.
pub(super) fn token_matches(sent: &[u8], secret: &str) -> bool {
    use sha2::Digest;
    let sent = Sha256::digest(sent);
    let expected = Sha256::digest(secret.as_bytes());
    sent.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{hmac_sha256_hex, secrets};
    use super::*;

    #[test]
    fn token_matches_only_the_same_bytes() {
        assert!(token_matches(b"s3cret", "s3cret"));
        assert!(!token_matches(b"s3cret", "s3cre"));
        assert!(!token_matches(b"s3cret", "s3cret "));
        assert!(!token_matches(b"", "s3cret"));
    }

    #[test]
    fn hex_macs_are_lowercase_hex_of_the_body_under_any_secret() {
        let body = b"{}";
        let hex = hmac_sha256_hex("new", body);
        let both = secrets(&["old", "new"]);
        assert_eq!(verify_hex_mac::<HmacSha256>(&both, body, &hex), Ok(()));
        let old = secrets(&["old"]);
        let refused = Err(VerifyError::Invalid);
        assert_eq!(verify_hex_mac::<HmacSha256>(&old, body, &hex), refused);
        for bad in [
            hex.to_uppercase(),
            hex[1..].to_string(),
            String::new(),
            "zz".into(),
        ] {
            assert_eq!(
                verify_hex_mac::<HmacSha256>(&both, body, &bad),
                refused,
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_secrets_never_verify() {
        let hex = hmac_sha256_hex("", b"{}");
        let empty = secrets(&[""]);
        let refused = Err(VerifyError::Invalid);
        assert_eq!(verify_hex_mac::<HmacSha256>(&empty, b"{}", &hex), refused);
        assert!(!any_secret(&empty, |_| true));
        assert!(!any_secret(&secrets(&[]), |_| true));
    }

    #[test]
    fn mac_matches_any_tag_of_the_right_length() {
        let key = b"k";
        let tag = hex::decode(hmac_sha256_hex("k", b"ab")).expect("hex");
        let tags = [vec![0; 3], tag.clone()];
        let (a, b, ab): (&[u8], &[u8], &[u8]) = (b"a", b"b", b"ab");
        assert!(
            mac_matches::<HmacSha256>(key, &[a, b], &tags),
            "parts concatenate"
        );
        assert!(!mac_matches::<HmacSha256>(key, &[a], &tags));
        assert!(!mac_matches::<HmacSha256>(
            key,
            &[ab],
            &[tag[..31].to_vec()]
        ));
    }
}
