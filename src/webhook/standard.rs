//! Standard Webhooks (`webhook-id`/`-timestamp`/`-signature`), also GitLab's signing tokens.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use serde_json::Value;

use super::json::parse_object;
use super::mac::{HmacSha256, any_secret, mac_matches, mac_of};
use super::{Event, ParseError, VerifyError, github, header, printable};
use crate::secret::Secret;

pub(super) const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
pub(super) const SIGNATURE: &str = "webhook-signature";
/// Secrets with this prefix are base64; the key is the decoded bytes.
pub(super) const SECRET_PREFIX: &str = "whsec_";
/// How far `webhook-timestamp` may be from now, either way.
const TOLERANCE_SECS: u64 = 5 * 60;

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[impl AsRef<Secret>],
    now_unix: i64,
) -> Result<(), VerifyError> {
    verify_with(headers, body, secrets.iter().map(AsRef::as_ref), now_unix)
}

/// HMAC-SHA256(key, `{id}.{timestamp}.{body}`) against every `v1,<base64>` in
/// `webhook-signature` (space-separated; other versions are skipped). The signature is checked
/// before the timestamp, so [`VerifyError::Stale`] is only reported for authentic deliveries.
pub(super) fn verify_with<'s>(
    headers: &HeaderMap,
    body: &[u8],
    secrets: impl IntoIterator<Item = &'s Secret>,
    now_unix: i64,
) -> Result<(), VerifyError> {
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header(headers, ID),
        header(headers, TIMESTAMP),
        header(headers, SIGNATURE),
    ) else {
        return Err(VerifyError::Missing);
    };
    let sent_at: i64 = timestamp.parse().map_err(|_| VerifyError::Invalid)?;
    let tags: Vec<Vec<u8>> = signatures
        .split_ascii_whitespace()
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .collect();
    if tags.is_empty() {
        return Err(VerifyError::Invalid);
    }
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    let verified = any_secret(secrets, |secret| {
        signing_key(secret).is_some_and(|key| mac_matches::<HmacSha256>(&key, &signed, &tags))
    });
    if !verified {
        return Err(VerifyError::Invalid);
    }
    if now_unix.abs_diff(sent_at) > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    Ok(())
}

/// The `webhook-signature` value (`v1,<base64>`) of a message, signed the way [`verify_with`]
/// checks it: HMAC-SHA256 over `{id}.{timestamp}.{body}`. Used for outbound notifications.
/// `None` when the secret yields no key (`whsec_` followed by something that is not base64).
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Option<String> {
    let key = signing_key(secret)?;
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    let tag = mac_of::<HmacSha256>(&key, &signed)?;
    Some(format!("v1,{}", BASE64.encode(tag)))
}

/// The HMAC key of a secret: base64-decoded after `whsec_`, else the secret's own bytes.
fn signing_key(secret: &str) -> Option<Vec<u8>> {
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => BASE64.decode(encoded).ok(),
        None => Some(secret.as_bytes().to_vec()),
    }
}

/// A GitHub-style push, either at the top level or as `data` of a Standard Webhooks envelope
/// (`{"type": …, "timestamp": …, "data": {…}}`). A payload without `ref` is ignored.
pub(super) fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let payload = parse_object(body)?;
    let (kind, inner) = match (payload.get("type"), payload.get("data")) {
        (Some(Value::String(kind)), Some(data @ Value::Object(_))) => (Some(kind.as_str()), data),
        _ => (None, &payload),
    };
    if inner.get("ref").is_none() {
        return Ok(Event::Ignored(match kind {
            Some(kind) => format!("event {} carries no ref", printable(kind)),
            None => "payload carries no ref".to_owned(),
        }));
    }
    github::parse_push(inner, false).map(Event::Push)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, secrets};
    use super::super::{Provider, Push, RefUpdate, parse as parse_any, verify as verify_any};
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_VALUE: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SENT_AT: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn signed(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", ID_VALUE),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", signature),
        ])
    }

    fn check(map: &HeaderMap, body: &[u8], keys: &[&str], now: i64) -> Result<(), VerifyError> {
        let opts = super::super::VerifyOptions {
            allow_sha1: false,
            now_unix: now,
        };
        verify_any(Provider::Standard, map, body, &secrets(keys), &opts)
    }

    /// A `v1,` signature computed here, independently of `verify_with`.
    fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = HmacSha256::new_from_slice(key).expect("any key size");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn documented_test_vector_verifies() {
        let key = BASE64
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        assert_eq!(sign(&key, ID_VALUE, "1614265330", BODY), VECTOR);
        let map = signed(VECTOR);
        assert_eq!(Provider::detect(&map), Some(Provider::Standard));
        assert_eq!(check(&map, BODY, &[SECRET], SENT_AT), Ok(()));
    }

    #[test]
    fn signing_reproduces_the_test_vector_and_verifies() {
        assert_eq!(
            super::sign(SECRET, ID_VALUE, "1614265330", BODY).as_deref(),
            Some(VECTOR)
        );
        let other = super::sign(SECRET, ID_VALUE, "1614265330", b"{}").unwrap();
        assert_eq!(check(&signed(&other), b"{}", &[SECRET], SENT_AT), Ok(()));
        assert_eq!(super::sign("whsec_%%%", ID_VALUE, "1", BODY), None);
    }

    #[test]
    fn timestamp_tolerance_is_five_minutes_either_way() {
        let map = signed(VECTOR);
        assert_eq!(check(&map, BODY, &[SECRET], SENT_AT + 300), Ok(()));
        assert_eq!(check(&map, BODY, &[SECRET], SENT_AT - 300), Ok(()));
        assert_eq!(
            check(&map, BODY, &[SECRET], SENT_AT + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(&map, BODY, &[SECRET], SENT_AT - 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(&map, BODY, &[SECRET], i64::MAX),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(&map, BODY, &[SECRET], i64::MIN),
            Err(VerifyError::Stale)
        );
        // A forged delivery is invalid whatever its timestamp.
        assert_eq!(
            check(&map, b"{}", &[SECRET], SENT_AT + 10_000),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let other = sign(b"another key", ID_VALUE, "1614265330", BODY);
        for header in [
            format!("{other} {VECTOR}"),
            format!("{VECTOR} {other}"),
            format!("v1,!!notbase64!! v2,AAAA {VECTOR}"),
            format!("  {VECTOR}  "),
        ] {
            assert_eq!(
                check(&signed(&header), BODY, &[SECRET], SENT_AT),
                Ok(()),
                "{header}"
            );
        }
        assert_eq!(
            check(&signed(&other), BODY, &[SECRET], SENT_AT),
            Err(VerifyError::Invalid)
        );
        // Only `v1` is HMAC-SHA256; the same bytes under another version do not count.
        let v1a = VECTOR.replacen("v1,", "v1a,", 1);
        assert_eq!(
            check(&signed(&v1a), BODY, &[SECRET], SENT_AT),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn secret_rotation() {
        let map = signed(VECTOR);
        let old = "whsec_b2xkIHNlY3JldCBrZXk=";
        assert_eq!(check(&map, BODY, &[old, SECRET], SENT_AT), Ok(()));
        assert_eq!(
            check(&map, BODY, &[old], SENT_AT),
            Err(VerifyError::Invalid)
        );
        assert_eq!(check(&map, BODY, &["whsec_%%%", SECRET], SENT_AT), Ok(()));
        assert_eq!(check(&map, BODY, &[], SENT_AT), Err(VerifyError::Invalid));
    }

    #[test]
    fn secret_without_prefix_is_used_as_raw_bytes() {
        let signature = sign(b"plain secret", "msg_1", "1700000000", BODY);
        let map = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &signature),
        ]);
        assert_eq!(check(&map, BODY, &["plain secret"], 1_700_000_000), Ok(()));
        let prefixed = format!("whsec_{}", BASE64.encode("plain secret"));
        assert_eq!(check(&map, BODY, &[&prefixed], 1_700_000_000), Ok(()));
    }

    #[test]
    fn every_signed_part_matters() {
        let good = signed(VECTOR);
        assert_eq!(
            check(&good, br#"{"test": 2432232315}"#, &[SECRET], SENT_AT),
            Err(VerifyError::Invalid)
        );
        let other_id = headers(&[
            ("webhook-id", "msg_other"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", VECTOR),
        ]);
        assert_eq!(
            check(&other_id, BODY, &[SECRET], SENT_AT),
            Err(VerifyError::Invalid)
        );
        let other_time = headers(&[
            ("webhook-id", ID_VALUE),
            ("webhook-timestamp", "1614265331"),
            ("webhook-signature", VECTOR),
        ]);
        assert_eq!(
            check(&other_time, BODY, &[SECRET], SENT_AT),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut map = signed(VECTOR);
            map.remove(missing);
            assert_eq!(
                check(&map, BODY, &[SECRET], SENT_AT),
                Err(VerifyError::Missing),
                "{missing}"
            );
        }
        let github = headers(&[("X-Hub-Signature-256", "sha256=00")]);
        assert_eq!(
            check(&github, BODY, &[SECRET], SENT_AT),
            Err(VerifyError::Missing)
        );
        for signature in ["", "v1,", "v1", "g0hM9SsE", "sha256=757107ea"] {
            assert_eq!(
                check(&signed(signature), BODY, &[SECRET], SENT_AT),
                Err(VerifyError::Invalid),
                "{signature}"
            );
        }
        let bad_time = headers(&[
            ("webhook-id", ID_VALUE),
            ("webhook-timestamp", "yesterday"),
            ("webhook-signature", VECTOR),
        ]);
        assert_eq!(
            check(&bad_time, BODY, &[SECRET], SENT_AT),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn push_at_top_level_or_in_an_envelope() {
        let map = headers(&[("webhook-id", "msg_1")]);
        let top =
            br#"{"ref": "refs/heads/main", "before": "a48922fe9d766338be6618c3a9b319bbeb55c3ea",
                       "after": "a82a8b503311c656e99381eca230b179f87ba262",
                       "repository": {"clone_url": "https://git.example.net/site.git"}}"#;
        let expected = Push {
            repo_urls: vec!["https://git.example.net/site.git".into()],
            updates: vec![RefUpdate {
                git_ref: "refs/heads/main".into(),
                before: Some("a48922fe9d766338be6618c3a9b319bbeb55c3ea".into()),
                after: Some("a82a8b503311c656e99381eca230b179f87ba262".into()),
                deleted: false,
            }],
        };
        assert_eq!(
            parse_any(Provider::Standard, &map, top),
            Ok(Event::Push(expected.clone()))
        );
        let inner = std::str::from_utf8(top).expect("utf-8");
        let envelope =
            format!(r#"{{"type": "push", "timestamp": "2025-03-01T00:00:00Z", "data": {inner}}}"#);
        assert_eq!(
            parse_any(Provider::Standard, &map, envelope.as_bytes()),
            Ok(Event::Push(expected))
        );
        // The repository is optional here: the route may name it.
        let bare =
            br#"{"ref": "refs/tags/v1", "after": "a82a8b503311c656e99381eca230b179f87ba262"}"#;
        let Ok(Event::Push(push)) = parse_any(Provider::Standard, &map, bare) else {
            panic!("not a push");
        };
        assert!(push.repo_urls.is_empty());
        assert_eq!(push.updates[0].git_ref, "refs/tags/v1");
    }

    #[test]
    fn payloads_without_ref_are_ignored() {
        let map = headers(&[]);
        assert_eq!(
            parse_any(
                Provider::Standard,
                &map,
                br#"{"type": "invoice.paid", "data": {"id": 1}}"#
            ),
            Ok(Event::Ignored("event invoice.paid carries no ref".into()))
        );
        assert_eq!(
            parse_any(Provider::Standard, &map, BODY),
            Ok(Event::Ignored("payload carries no ref".into()))
        );
        let bad = br#"{"type": "push", "data": {"ref": "refs/heads/-x/../y"}}"#;
        assert_eq!(
            parse_any(Provider::Standard, &map, bad),
            Err(ParseError::BadRef("ref"))
        );
    }
}
