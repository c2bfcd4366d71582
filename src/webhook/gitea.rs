//! Gitea and Forgejo: bare-hex `X-Gitea-Signature`/`X-Forgejo-Signature`, GitHub-style pushes.

use http::HeaderMap;

use super::json::parse_object;
use super::mac::{HmacSha256, verify_hex_mac};
use super::{Event, ParseError, VerifyError, event_header, github, header, ignored};
use crate::secret::Secret;

pub(super) const EVENT: &str = "x-gitea-event";
pub(super) const FORGEJO_EVENT: &str = "x-forgejo-event";
const SIGNATURE: &str = "x-gitea-signature";
const FORGEJO_SIGNATURE: &str = "x-forgejo-signature";

/// HMAC-SHA256 of the body as bare lowercase hex, from `X-Forgejo-Signature` or else
/// `X-Gitea-Signature`. The GitHub-style copies Gitea also sends are not consulted.
pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[impl AsRef<Secret>],
) -> Result<(), VerifyError> {
    let hex = header(headers, FORGEJO_SIGNATURE)
        .or_else(|| header(headers, SIGNATURE))
        .ok_or(VerifyError::Missing)?;
    verify_hex_mac::<HmacSha256>(secrets, body, hex)
}

/// `push` is a GitHub-style push; everything else (`create`, `delete`, issues, …) is ignored.
/// The settings page's "Test Delivery" sends a push whose `before` equals `after` (the latest
/// commit, or zeros in newer versions), which no real push has: that becomes [`Event::Ping`].
pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Event, ParseError> {
    let event = if headers.contains_key(FORGEJO_EVENT) {
        event_header(headers, "X-Forgejo-Event")?
    } else {
        event_header(headers, "X-Gitea-Event")?
    };
    match event {
        "push" => {
            let payload = parse_object(body)?;
            let push = github::parse_push(&payload, true)?;
            let test_delivery = payload
                .get("before")
                .zip(payload.get("after"))
                .is_some_and(|(before, after)| before.is_string() && before == after);
            Ok(if test_delivery {
                Event::Ping
            } else {
                Event::Push(push)
            })
        }
        other => Ok(ignored("event", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, hmac_sha256_hex, json, secrets};
    use super::super::{
        Provider, RefUpdate, VerifyOptions, parse as parse_any, verify as verify_any,
    };
    use super::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/webhooks/gitea/push.json");
    const SECRET: &str = "gitea webhook secret";

    fn check(map: &HeaderMap, body: &[u8], keys: &[&str]) -> Result<(), VerifyError> {
        let opts = VerifyOptions {
            allow_sha1: false,
            now_unix: 0,
        };
        verify_any(Provider::Gitea, map, body, &secrets(keys), &opts)
    }

    /// The headers Gitea sends with a push, GitHub and Gogs copies included.
    fn gitea_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("X-GitHub-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
            ("X-GitHub-Event", "push"),
            ("X-Gogs-Event", "push"),
            ("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", signature),
            ("X-Hub-Signature-256", &format!("sha256={signature}")),
        ])
    }

    #[test]
    fn gitea_signature_is_bare_hex() {
        let signature = hmac_sha256_hex(SECRET, PUSH);
        let map = gitea_headers(&signature);
        assert_eq!(Provider::detect(&map), Some(Provider::Gitea));
        assert_eq!(check(&map, PUSH, &[SECRET]), Ok(()));
        assert_eq!(check(&map, PUSH, &["old", SECRET]), Ok(()));
        assert_eq!(check(&map, PUSH, &["other"]), Err(VerifyError::Invalid));
        let mut changed = PUSH.to_vec();
        changed[PUSH.len() / 2] ^= 0x20;
        assert_eq!(check(&map, &changed, &[SECRET]), Err(VerifyError::Invalid));
        for bad in [
            format!("sha256={signature}"),
            signature.to_ascii_uppercase(),
            signature[..63].to_owned(),
            signature[..62].to_owned(),
            String::new(),
            "x".repeat(64),
        ] {
            let map = headers(&[("X-Gitea-Signature", &bad)]);
            assert_eq!(
                check(&map, PUSH, &[SECRET]),
                Err(VerifyError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn forgejo_signature_header() {
        let signature = hmac_sha256_hex(SECRET, PUSH);
        let map = headers(&[
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Signature", &signature),
            ("X-Gitea-Signature", &signature),
        ]);
        assert_eq!(Provider::detect(&map), Some(Provider::Gitea));
        assert_eq!(check(&map, PUSH, &[SECRET]), Ok(()));
        assert!(matches!(
            parse_any(Provider::Gitea, &map, PUSH),
            Ok(Event::Push(_))
        ));
    }

    #[test]
    fn github_style_copies_alone_are_not_enough() {
        let signature = format!("sha256={}", hmac_sha256_hex(SECRET, PUSH));
        let map = headers(&[
            ("X-Gitea-Event", "push"),
            ("X-Hub-Signature-256", &signature),
        ]);
        assert_eq!(check(&map, PUSH, &[SECRET]), Err(VerifyError::Missing));
        let token = headers(&[("X-Gitlab-Token", SECRET)]);
        assert_eq!(check(&token, PUSH, &[SECRET]), Err(VerifyError::Missing));
    }

    #[test]
    fn push_fixture() {
        let map = gitea_headers("unused");
        let Ok(Event::Push(push)) = parse_any(Provider::Gitea, &map, PUSH) else {
            panic!("not a push");
        };
        assert_eq!(
            push.repo_urls,
            [
                "https://git.example.org/infra/site.git",
                "ssh://git@git.example.org:2222/infra/site.git",
                "https://git.example.org/infra/site",
                "https://git.example.org/api/v1/repos/infra/site",
            ]
        );
        assert_eq!(
            push.updates,
            [RefUpdate {
                git_ref: "refs/heads/main".into(),
                before: Some("7d3bdf938456088e59dce13fefa2c594c7935431".into()),
                after: Some("5f730153356f4b1ca844e835b2b5835dc12c99af".into()),
                deleted: false,
            }]
        );
    }

    #[test]
    fn test_delivery_is_a_ping() {
        let map = headers(&[("X-Gitea-Event", "push")]);
        let mut payload = json(PUSH);
        for id in [
            "5f730153356f4b1ca844e835b2b5835dc12c99af",
            &"0".repeat(40),
            &"0".repeat(64),
        ] {
            payload["before"] = serde_json::json!(id);
            payload["after"] = serde_json::json!(id);
            let body = serde_json::to_vec(&payload).expect("serialise");
            assert_eq!(
                parse_any(Provider::Gitea, &map, &body),
                Ok(Event::Ping),
                "{id}"
            );
        }
        // Still validated first: a test delivery with a bad ref is an error.
        payload["ref"] = serde_json::json!("refs/heads/../x");
        let body = serde_json::to_vec(&payload).expect("serialise");
        assert_eq!(
            parse_any(Provider::Gitea, &map, &body),
            Err(ParseError::BadRef("ref"))
        );
    }

    #[test]
    fn other_events_are_ignored() {
        for event in ["create", "delete", "issues", "pull_request"] {
            let map = headers(&[("X-GitHub-Event", "push"), ("X-Gitea-Event", event)]);
            assert_eq!(
                parse_any(Provider::Gitea, &map, b"{}"),
                Ok(Event::Ignored(format!("event {event} is not handled")))
            );
        }
        assert_eq!(
            parse_any(
                Provider::Gitea,
                &headers(&[("X-GitHub-Event", "push")]),
                PUSH
            ),
            Err(ParseError::MissingEvent("X-Gitea-Event"))
        );
    }
}
