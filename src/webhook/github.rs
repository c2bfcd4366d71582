//! GitHub and GHES: `X-Hub-Signature-256` (optionally legacy SHA-1) and `push`/`ping` payloads.

use std::borrow::Cow;

use hmac::Hmac;
use http::HeaderMap;
use serde_json::Value;
use sha1::Sha1;

use super::json::parse_object;
use super::mac::{HmacSha256, verify_hex_mac};
use super::{
    Event, ParseError, Push, VerifyError, VerifyOptions, event_header, git_ref, header, ignored,
    oid, optional_object, push_urls, ref_update,
};
use crate::secret::Secret;

pub(super) const EVENT: &str = "x-github-event";
const SIGNATURE_256: &str = "x-hub-signature-256";
const SIGNATURE_SHA1: &str = "x-hub-signature";

/// The repository URL forms of a GitHub-style `repository` object. `mirror_url` (the upstream of
/// a mirror) and Gitea's `original_url` (where a repository was migrated from) name other
/// repositories and are left out.
pub(super) const URL_KEYS: &[&str] = &[
    "clone_url",
    "ssh_url",
    "git_url",
    "html_url",
    "url",
    "svn_url",
];

/// `X-Hub-Signature-256: sha256=<hex>`; without it, `X-Hub-Signature: sha1=<hex>` when
/// `allow_sha1`. A SHA-256 signature that fails never falls back to SHA-1.
pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[impl AsRef<Secret>],
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    if let Some(value) = header(headers, SIGNATURE_256) {
        let hex = value.strip_prefix("sha256=").ok_or(VerifyError::Invalid)?;
        return verify_hex_mac::<HmacSha256>(secrets, body, hex);
    }
    match header(headers, SIGNATURE_SHA1) {
        Some(value) if opts.allow_sha1 => {
            let hex = value.strip_prefix("sha1=").ok_or(VerifyError::Invalid)?;
            verify_hex_mac::<Hmac<Sha1>>(secrets, body, hex)
        }
        _ => Err(VerifyError::Missing),
    }
}

pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Event, ParseError> {
    match event_header(headers, "X-GitHub-Event")? {
        "push" => parse_push(&parse_object(&json_body(headers, body)?)?, true).map(Event::Push),
        "ping" => Ok(Event::Ping),
        other => Ok(ignored("event", other)),
    }
}

/// The JSON text of a delivery: the body itself, or the `payload` field of an
/// `application/x-www-form-urlencoded` body.
fn json_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<Cow<'b, [u8]>, ParseError> {
    let form = header(headers, "content-type").is_some_and(|content_type| {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !form {
        return Ok(Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, payload)| Cow::Owned(payload.into_owned().into_bytes()))
        .ok_or(ParseError::Field("payload"))
}

/// A GitHub-style push (`ref`, `before`, `after`, `deleted`, `repository{clone_url, …}`), also
/// sent by Gitea/Forgejo and accepted for Standard Webhooks. With `require_repository`, a
/// `repository` object carrying at least one URL must be present.
pub(super) fn parse_push(payload: &Value, require_repository: bool) -> Result<Push, ParseError> {
    let git_ref = git_ref(payload.get("ref"), "ref")?;
    let before = oid(payload.get("before"), "before")?;
    let after = oid(payload.get("after"), "after")?;
    let deleted = match payload.get("deleted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(deleted)) => *deleted,
        Some(_) => return Err(ParseError::Field("deleted")),
    };
    let mut repo_urls = Vec::new();
    if let Some(repository) = optional_object(payload, "repository")? {
        push_urls(&mut repo_urls, repository, URL_KEYS);
    }
    if require_repository && repo_urls.is_empty() {
        return Err(ParseError::Field("repository"));
    }
    Ok(Push {
        repo_urls,
        updates: vec![ref_update(git_ref, before, after, deleted)],
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{headers, hmac_sha256_hex, json, secrets};
    use super::super::{Provider, RefUpdate, parse as parse_any, verify as verify_any};
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const VECTOR: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    const PUSH_BRANCH_CREATED: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/github/push_branch_created.json");
    const PUSH_TAG_CREATED: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/github/push_tag_created.json");
    const PUSH_TAG_DELETED: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/github/push_tag_deleted.json");
    const PING: &[u8] = include_bytes!("../../tests/fixtures/webhooks/github/ping.json");
    const ISSUES_OPENED: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/github/issues_opened.json");

    const HELLO_WORLD_URLS: [&str; 4] = [
        "https://github.com/Codertocat/Hello-World.git",
        "git@github.com:Codertocat/Hello-World.git",
        "git://github.com/Codertocat/Hello-World.git",
        "https://github.com/Codertocat/Hello-World",
    ];

    fn opts(allow_sha1: bool) -> VerifyOptions {
        VerifyOptions {
            allow_sha1,
            now_unix: 0,
        }
    }

    fn check(signature: (&str, &str), body: &[u8], keys: &[&str]) -> Result<(), VerifyError> {
        verify_any(
            Provider::Github,
            &headers(&[signature]),
            body,
            &secrets(keys),
            &opts(false),
        )
    }

    fn sha1_hex(key: &str, body: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("any key size");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn parse_push_event(body: &[u8]) -> Result<Event, ParseError> {
        parse_any(
            Provider::Github,
            &headers(&[("X-GitHub-Event", "push")]),
            body,
        )
    }

    #[test]
    fn documented_test_vector_verifies() {
        assert_eq!(format!("sha256={}", hmac_sha256_hex(SECRET, BODY)), VECTOR);
        assert_eq!(
            check(("X-Hub-Signature-256", VECTOR), BODY, &[SECRET]),
            Ok(())
        );
    }

    #[test]
    fn wrong_secret_or_changed_body_is_invalid() {
        let sig = ("X-Hub-Signature-256", VECTOR);
        assert_eq!(
            check(sig, BODY, &["It's a secret to everybody"]),
            Err(VerifyError::Invalid)
        );
        assert_eq!(
            check(sig, b"Hello, World?", &[SECRET]),
            Err(VerifyError::Invalid)
        );
        assert_eq!(
            check(sig, b"Hello, World! ", &[SECRET]),
            Err(VerifyError::Invalid)
        );
        assert_eq!(check(sig, b"", &[SECRET]), Err(VerifyError::Invalid));
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let hex = VECTOR.trim_start_matches("sha256=");
        let cases = [
            "sha256=".to_owned(),
            "sha256".to_owned(),
            hex.to_owned(),
            format!("sha256={}", &hex[..62]),
            format!("sha256={}", &hex[..63]),
            format!("sha256={hex}00"),
            format!("sha256={}", hex.to_ascii_uppercase()),
            format!("SHA256={hex}"),
            format!("sha1={hex}"),
            format!("sha256={}", "zz".repeat(32)),
            format!("sha256=+{}", &hex[1..]),
            "v1,dXg=".to_owned(),
        ];
        for signature in cases {
            assert_eq!(
                check(("X-Hub-Signature-256", &signature), BODY, &[SECRET]),
                Err(VerifyError::Invalid),
                "{signature}"
            );
        }
    }

    #[test]
    fn missing_signature_is_missing() {
        let none = headers(&[("X-GitHub-Event", "push")]);
        let result = verify_any(
            Provider::Github,
            &none,
            BODY,
            &secrets(&[SECRET]),
            &opts(true),
        );
        assert_eq!(result, Err(VerifyError::Missing));
        // A GitLab token sent to a GitHub route is not a signature either.
        assert_eq!(
            check(("X-Gitlab-Token", SECRET), BODY, &[SECRET]),
            Err(VerifyError::Missing)
        );
    }

    #[test]
    fn secret_rotation_accepts_any_configured_secret() {
        let sig = ("X-Hub-Signature-256", VECTOR);
        assert_eq!(check(sig, BODY, &["new secret", SECRET]), Ok(()));
        assert_eq!(check(sig, BODY, &[SECRET, "new secret"]), Ok(()));
        assert_eq!(check(sig, BODY, &["old", "new"]), Err(VerifyError::Invalid));
        assert_eq!(check(sig, BODY, &[]), Err(VerifyError::Invalid));
    }

    #[test]
    fn empty_secret_never_verifies() {
        let signature = format!("sha256={}", hmac_sha256_hex("", BODY));
        assert_eq!(
            check(("X-Hub-Signature-256", &signature), BODY, &[""]),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn sha1_only_when_allowed() {
        let sha1 = format!("sha1={}", sha1_hex(SECRET, BODY));
        let map = headers(&[("X-Hub-Signature", &sha1)]);
        let keys = secrets(&[SECRET]);
        let run = |allow| verify_any(Provider::Github, &map, BODY, &keys, &opts(allow));
        assert_eq!(run(false), Err(VerifyError::Missing));
        assert_eq!(run(true), Ok(()));
        let bad = format!("sha1={}", sha1_hex("other", BODY));
        let map = headers(&[("X-Hub-Signature", &bad)]);
        let result = verify_any(Provider::Github, &map, BODY, &keys, &opts(true));
        assert_eq!(result, Err(VerifyError::Invalid));
        // A SHA-256 MAC in the SHA-1 header (Bitbucket's style) is not GitHub's scheme.
        let map = headers(&[("X-Hub-Signature", VECTOR)]);
        let result = verify_any(Provider::Github, &map, BODY, &keys, &opts(true));
        assert_eq!(result, Err(VerifyError::Invalid));
    }

    #[test]
    fn a_failing_sha256_signature_does_not_fall_back_to_sha1() {
        let sha1 = format!("sha1={}", sha1_hex(SECRET, BODY));
        let wrong = format!("sha256={}", hmac_sha256_hex("other", BODY));
        let map = headers(&[("X-Hub-Signature-256", &wrong), ("X-Hub-Signature", &sha1)]);
        let result = verify_any(
            Provider::Github,
            &map,
            BODY,
            &secrets(&[SECRET]),
            &opts(true),
        );
        assert_eq!(result, Err(VerifyError::Invalid));
    }

    #[test]
    fn real_fixture_verifies_and_parses() {
        let signature = format!("sha256={}", hmac_sha256_hex("s3cret", PUSH_BRANCH_CREATED));
        let map = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
        ]);
        assert_eq!(Provider::detect(&map), Some(Provider::Github));
        let keys = secrets(&["s3cret"]);
        assert_eq!(
            verify_any(
                Provider::Github,
                &map,
                PUSH_BRANCH_CREATED,
                &keys,
                &opts(false)
            ),
            Ok(())
        );
        let mut changed = PUSH_BRANCH_CREATED.to_vec();
        changed[10] ^= 1;
        let result = verify_any(Provider::Github, &map, &changed, &keys, &opts(false));
        assert_eq!(result, Err(VerifyError::Invalid));

        let Ok(Event::Push(push)) = parse_any(Provider::Github, &map, PUSH_BRANCH_CREATED) else {
            panic!("not a push");
        };
        assert_eq!(push.repo_urls, HELLO_WORLD_URLS);
        assert_eq!(
            push.updates,
            [RefUpdate {
                git_ref: "refs/heads/master".into(),
                before: None,
                after: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
                deleted: false,
            }]
        );
    }

    #[test]
    fn tag_created_and_deleted_fixtures() {
        let Ok(Event::Push(created)) = parse_push_event(PUSH_TAG_CREATED) else {
            panic!("not a push");
        };
        assert_eq!(created.repo_urls, HELLO_WORLD_URLS);
        assert_eq!(
            created.updates,
            [RefUpdate {
                git_ref: "refs/tags/simple-tag".into(),
                before: None,
                after: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
                deleted: false,
            }]
        );
        let Ok(Event::Push(deleted)) = parse_push_event(PUSH_TAG_DELETED) else {
            panic!("not a push");
        };
        assert_eq!(
            deleted.updates,
            [RefUpdate {
                git_ref: "refs/tags/simple-tag".into(),
                before: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
                after: None,
                deleted: true,
            }]
        );
    }

    /// The example package has no plain branch update or branch deletion: derive them from the
    /// real payloads by changing only the fields that differ.
    #[test]
    fn branch_update_and_deletion_derived_from_real_payloads() {
        let mut update = json(PUSH_BRANCH_CREATED);
        update["before"] = json!("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c");
        update["created"] = json!(false);
        let body = serde_json::to_vec(&update).expect("serialise");
        let Ok(Event::Push(push)) = parse_push_event(&body) else {
            panic!("not a push");
        };
        let expected = RefUpdate {
            git_ref: "refs/heads/master".into(),
            before: Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
            after: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
            deleted: false,
        };
        assert_eq!(push.updates, [expected]);

        let mut deletion = json(PUSH_TAG_DELETED);
        deletion["ref"] = json!("refs/heads/feature");
        let body = serde_json::to_vec(&deletion).expect("serialise");
        let Ok(Event::Push(push)) = parse_push_event(&body) else {
            panic!("not a push");
        };
        assert_eq!(push.updates[0].git_ref, "refs/heads/feature");
        assert!(push.updates[0].deleted && push.updates[0].after.is_none());

        // `deleted: true` alone marks a deletion too.
        let mut flagged = json(PUSH_BRANCH_CREATED);
        flagged["deleted"] = json!(true);
        let body = serde_json::to_vec(&flagged).expect("serialise");
        let Ok(Event::Push(push)) = parse_push_event(&body) else {
            panic!("not a push");
        };
        assert!(push.updates[0].deleted);
        flagged["deleted"] = json!("yes");
        let body = serde_json::to_vec(&flagged).expect("serialise");
        assert_eq!(parse_push_event(&body), Err(ParseError::Field("deleted")));
    }

    #[test]
    fn ping_and_other_events() {
        let ping = headers(&[("X-GitHub-Event", "ping")]);
        assert_eq!(parse_any(Provider::Github, &ping, PING), Ok(Event::Ping));
        let issues = headers(&[("X-GitHub-Event", "issues")]);
        assert_eq!(
            parse_any(Provider::Github, &issues, ISSUES_OPENED),
            Ok(Event::Ignored("event issues is not handled".into()))
        );
        // An ignored event is not parsed at all: its body does not matter.
        assert!(matches!(
            parse_any(Provider::Github, &issues, b"\xff"),
            Ok(Event::Ignored(_))
        ));
        assert_eq!(
            parse_any(Provider::Github, &headers(&[]), PUSH_TAG_CREATED),
            Err(ParseError::MissingEvent("X-GitHub-Event"))
        );
    }

    #[test]
    fn push_without_repository_urls_is_an_error() {
        let body =
            br#"{"ref": "refs/heads/main", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"}"#;
        assert_eq!(parse_push_event(body), Err(ParseError::Field("repository")));
        let body = br#"{"ref": "refs/heads/main", "repository": {"clone_url": 5, "mirror_url": "https://x"}}"#;
        assert_eq!(parse_push_event(body), Err(ParseError::Field("repository")));
        // A repository that is not an object is refused, whatever JSON it is; broken JSON inside
        // it is "not JSON".
        for repository in [
            "null",
            "\"https://x\"",
            "[{\"clone_url\": \"https://x\"}]",
            "7",
            "true",
        ] {
            let body = format!(r#"{{"ref": "refs/heads/main", "repository": {repository}}}"#);
            assert_eq!(
                parse_push_event(body.as_bytes()),
                Err(ParseError::Field("repository")),
                "{repository}"
            );
        }
        let body =
            br#"{"ref": "refs/heads/main", "repository": {"clone_url": "https://x", "a": [}}"#;
        assert_eq!(parse_push_event(body), Err(ParseError::NotJson));
    }

    #[test]
    fn form_encoded_body_is_verified_raw_and_parsed_from_payload() {
        let json_text = std::str::from_utf8(PUSH_TAG_CREATED).expect("utf-8");
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json_text)
            .finish();
        let signature = format!("sha256={}", hmac_sha256_hex(SECRET, form.as_bytes()));
        let map = headers(&[
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature-256", &signature),
        ]);
        let keys = secrets(&[SECRET]);
        assert_eq!(
            verify_any(Provider::Github, &map, form.as_bytes(), &keys, &opts(false)),
            Ok(())
        );
        // The signature covers the raw form body, not the JSON inside it.
        let result = verify_any(
            Provider::Github,
            &map,
            PUSH_TAG_CREATED,
            &keys,
            &opts(false),
        );
        assert_eq!(result, Err(VerifyError::Invalid));
        let Ok(Event::Push(push)) = parse_any(Provider::Github, &map, form.as_bytes()) else {
            panic!("not a push");
        };
        assert_eq!(push.updates[0].git_ref, "refs/tags/simple-tag");

        let missing = headers(&[
            ("X-GitHub-Event", "push"),
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ]);
        assert_eq!(
            parse_any(Provider::Github, &missing, b"other=1"),
            Err(ParseError::Field("payload"))
        );
        assert_eq!(
            parse_any(Provider::Github, &missing, b"payload=%7B"),
            Err(ParseError::NotJson)
        );
    }
}
