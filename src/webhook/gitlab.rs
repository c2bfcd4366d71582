//! GitLab: `X-Gitlab-Token` or signing tokens (Standard Webhooks), push/tag push/system hooks.

use http::HeaderMap;
use serde_json::Value;

use super::json::parse_object;
use super::mac::{any_secret, token_matches};
use super::{
    Event, ParseError, Push, VerifyError, VerifyOptions, array, event_header, git_ref, ignored,
    oid, optional_object, push_urls, ref_update, standard,
};
use crate::secret::Secret;

pub(super) const EVENT: &str = "x-gitlab-event";
const TOKEN: &str = "x-gitlab-token";

/// URL forms in `project` (`url`, `ssh_url`, `http_url` and `homepage` are older aliases).
pub(super) const PROJECT_URL_KEYS: &[&str] = &[
    "git_http_url",
    "git_ssh_url",
    "web_url",
    "http_url",
    "ssh_url",
    "url",
    "homepage",
];
/// URL forms in the older `repository` object.
pub(super) const REPOSITORY_URL_KEYS: &[&str] = &["url", "git_http_url", "git_ssh_url", "homepage"];

/// A signing token (a `whsec_` secret) verifies `webhook-signature` as Standard Webhooks; any
/// secret may equal `X-Gitlab-Token`. Either one verifying is enough.
pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[impl AsRef<Secret>],
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let signing_tokens = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|secret| secret.expose().starts_with(standard::SECRET_PREFIX));
    let signature = (headers.contains_key(standard::SIGNATURE)
        && signing_tokens.clone().next().is_some())
    .then(|| standard::verify_with(headers, body, signing_tokens, opts.now_unix));
    let token = headers.get(TOKEN).map(|sent| {
        any_secret(secrets.iter().map(AsRef::as_ref), |secret| {
            token_matches(sent.as_bytes(), secret)
        })
    });
    match (signature, token) {
        (Some(Ok(())), _) | (_, Some(true)) => Ok(()),
        (Some(Err(VerifyError::Stale)), _) => Err(VerifyError::Stale),
        (None, None) => Err(VerifyError::Missing),
        (Some(Err(error)), None) => Err(error),
        (_, Some(false)) => Err(VerifyError::Invalid),
    }
}

pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Event, ParseError> {
    match event_header(headers, "X-Gitlab-Event")? {
        "Push Hook" | "Tag Push Hook" => parse_push(&parse_object(body)?).map(Event::Push),
        "System Hook" => system_hook(&parse_object(body)?),
        other => Ok(ignored("event", other)),
    }
}

/// System hooks name their event in the body (`event_name`, newer ones also `object_kind`).
fn system_hook(payload: &Value) -> Result<Event, ParseError> {
    let kind = payload
        .get("event_name")
        .or_else(|| payload.get("object_kind"))
        .and_then(Value::as_str)
        .ok_or(ParseError::Field("event_name"))?;
    match kind {
        "push" | "tag_push" => parse_push(payload).map(Event::Push),
        "repository_update" => repository_update(payload),
        other => Ok(ignored("system hook", other)),
    }
}

/// `Push Hook`, `Tag Push Hook` and system hook `push`/`tag_push`: one ref; `after` of zeros is a
/// deletion.
fn parse_push(payload: &Value) -> Result<Push, ParseError> {
    let git_ref = git_ref(payload.get("ref"), "ref")?;
    let before = oid(payload.get("before"), "before")?;
    let after = oid(payload.get("after"), "after")?;
    Ok(Push {
        repo_urls: repo_urls(payload)?,
        updates: vec![ref_update(git_ref, before, after, false)],
    })
}

/// System hook `repository_update`: one event per push with `changes[]` of `{before, after, ref}`.
fn repository_update(payload: &Value) -> Result<Event, ParseError> {
    let updates = array(payload, "changes")?
        .iter()
        .map(|change| {
            let git_ref = git_ref(change.get("ref"), "changes[].ref")?;
            let before = oid(change.get("before"), "changes[].before")?;
            let after = oid(change.get("after"), "changes[].after")?;
            Ok(ref_update(git_ref, before, after, false))
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    if updates.is_empty() {
        return Ok(Event::Ignored(
            "system hook repository_update without changes".to_owned(),
        ));
    }
    Ok(Event::Push(Push {
        repo_urls: repo_urls(payload)?,
        updates,
    }))
}

/// The URLs of `project` and `repository`; at least one must be present.
fn repo_urls(payload: &Value) -> Result<Vec<String>, ParseError> {
    let mut urls = Vec::new();
    if let Some(project) = optional_object(payload, "project")? {
        push_urls(&mut urls, project, PROJECT_URL_KEYS);
    }
    if let Some(repository) = optional_object(payload, "repository")? {
        push_urls(&mut urls, repository, REPOSITORY_URL_KEYS);
    }
    if urls.is_empty() {
        Err(ParseError::Field("project"))
    } else {
        Ok(urls)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::super::test_support::{headers, hmac_sha256_hex, secrets};
    use super::super::{Provider, RefUpdate, parse as parse_any, verify as verify_any};
    use super::*;

    const PUSH_HOOK: &[u8] = include_bytes!("../../tests/fixtures/webhooks/gitlab/push_hook.json");
    const TAG_PUSH_HOOK: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/gitlab/tag_push_hook.json");
    const SYSTEM_PUSH: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/gitlab/system_hook_push.json");
    const SYSTEM_REPOSITORY_UPDATE: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/gitlab/system_hook_repository_update.json");

    const TOKEN_SECRET: &str = "gitlab-token-1";
    const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_700_000_000;

    fn opts() -> VerifyOptions {
        VerifyOptions {
            allow_sha1: true,
            now_unix: NOW,
        }
    }

    fn check(map: &HeaderMap, body: &[u8], keys: &[&str]) -> Result<(), VerifyError> {
        verify_any(Provider::Gitlab, map, body, &secrets(keys), &opts())
    }

    /// Standard Webhooks headers signed with `secret`, computed independently of `standard.rs`.
    fn signed_headers(secret: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        use hmac::{KeyInit, Mac};
        let key = BASE64
            .decode(secret.trim_start_matches("whsec_"))
            .expect("base64 secret");
        let mut mac = super::super::mac::HmacSha256::new_from_slice(&key).expect("any key size");
        mac.update(format!("msg_gl1.{timestamp}.").as_bytes());
        mac.update(body);
        let signature = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
        headers(&[
            ("X-Gitlab-Event", "Push Hook"),
            ("webhook-id", "msg_gl1"),
            ("webhook-timestamp", &timestamp.to_string()),
            ("webhook-signature", &signature),
        ])
    }

    fn site_urls() -> Vec<String> {
        [
            "https://gitlab.example.com/infra/site.git",
            "git@gitlab.example.com:infra/site.git",
            "https://gitlab.example.com/infra/site",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn token_must_equal_a_secret() {
        let map = headers(&[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", TOKEN_SECRET),
        ]);
        assert_eq!(check(&map, PUSH_HOOK, &[TOKEN_SECRET]), Ok(()));
        assert_eq!(check(&map, PUSH_HOOK, &["old-token", TOKEN_SECRET]), Ok(()));
        assert_eq!(
            check(&map, PUSH_HOOK, &["gitlab-token-2"]),
            Err(VerifyError::Invalid)
        );
        assert_eq!(
            check(&map, PUSH_HOOK, &["gitlab-token-10"]),
            Err(VerifyError::Invalid)
        );
        assert_eq!(
            check(&map, PUSH_HOOK, &["gitlab-token"]),
            Err(VerifyError::Invalid)
        );
        assert_eq!(check(&map, PUSH_HOOK, &[]), Err(VerifyError::Invalid));
        let empty = headers(&[("X-Gitlab-Token", "")]);
        assert_eq!(check(&empty, PUSH_HOOK, &[""]), Err(VerifyError::Invalid));
        assert_eq!(
            check(&empty, PUSH_HOOK, &[TOKEN_SECRET]),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn github_signature_sent_to_gitlab_is_missing() {
        let signature = format!("sha256={}", hmac_sha256_hex(TOKEN_SECRET, PUSH_HOOK));
        let map = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
        ]);
        assert_eq!(
            check(&map, PUSH_HOOK, &[TOKEN_SECRET]),
            Err(VerifyError::Missing)
        );
        let map = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert_eq!(
            check(&map, PUSH_HOOK, &[TOKEN_SECRET]),
            Err(VerifyError::Missing)
        );
        // A MAC in the token header is just a wrong token.
        let map = headers(&[("X-Gitlab-Token", &signature)]);
        assert_eq!(
            check(&map, PUSH_HOOK, &[TOKEN_SECRET]),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn signing_token_verifies_as_standard_webhooks() {
        let map = signed_headers(SIGNING_SECRET, NOW - 10, PUSH_HOOK);
        assert_eq!(Provider::detect(&map), Some(Provider::Gitlab));
        assert_eq!(check(&map, PUSH_HOOK, &[SIGNING_SECRET]), Ok(()));
        assert_eq!(
            check(&map, PUSH_HOOK, &[TOKEN_SECRET, SIGNING_SECRET]),
            Ok(())
        );
        let mut changed = PUSH_HOOK.to_vec();
        changed[0] = b' ';
        assert_eq!(
            check(&map, &changed, &[SIGNING_SECRET]),
            Err(VerifyError::Invalid)
        );
        let other = "whsec_c2VjcmV0LXR3bw==";
        assert_eq!(check(&map, PUSH_HOOK, &[other]), Err(VerifyError::Invalid));
        // Without a whsec_ secret the signature is not looked at, and there is no token.
        assert_eq!(
            check(&map, PUSH_HOOK, &[TOKEN_SECRET]),
            Err(VerifyError::Missing)
        );
        let stale = signed_headers(SIGNING_SECRET, NOW - 301, PUSH_HOOK);
        assert_eq!(
            check(&stale, PUSH_HOOK, &[SIGNING_SECRET]),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn token_or_signature_either_verifies() {
        let mut map = signed_headers(SIGNING_SECRET, NOW, PUSH_HOOK);
        map.insert(TOKEN, http::HeaderValue::from_static(TOKEN_SECRET));
        assert_eq!(
            check(&map, PUSH_HOOK, &[TOKEN_SECRET, SIGNING_SECRET]),
            Ok(())
        );
        // Bad signature, good token.
        assert_eq!(check(&map, b"{}", &[TOKEN_SECRET, SIGNING_SECRET]), Ok(()));
        // Bad signature, bad token.
        assert_eq!(
            check(&map, b"{}", &["nope", SIGNING_SECRET]),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn push_hook_fixture() {
        let map = headers(&[("X-Gitlab-Event", "Push Hook")]);
        let Ok(Event::Push(push)) = parse_any(Provider::Gitlab, &map, PUSH_HOOK) else {
            panic!("not a push");
        };
        assert_eq!(push.repo_urls, site_urls());
        assert_eq!(
            push.updates,
            [RefUpdate {
                git_ref: "refs/heads/main".into(),
                before: Some("a48922fe9d766338be6618c3a9b319bbeb55c3ea".into()),
                after: Some("a82a8b503311c656e99381eca230b179f87ba262".into()),
                deleted: false,
            }]
        );
    }

    #[test]
    fn tag_push_hook_fixture() {
        let map = headers(&[("X-Gitlab-Event", "Tag Push Hook")]);
        let Ok(Event::Push(push)) = parse_any(Provider::Gitlab, &map, TAG_PUSH_HOOK) else {
            panic!("not a push");
        };
        let mut urls = site_urls();
        urls.push("ssh://git@gitlab.example.com/infra/site.git".into());
        assert_eq!(push.repo_urls, urls);
        assert_eq!(
            push.updates,
            [RefUpdate {
                git_ref: "refs/tags/v1.4.0".into(),
                before: None,
                after: Some("f4524b497a97c2da08aee4e6d052aa1d4e778ee5".into()),
                deleted: false,
            }]
        );
    }

    #[test]
    fn system_hook_push_deleting_a_branch() {
        let map = headers(&[("X-Gitlab-Event", "System Hook")]);
        let Ok(Event::Push(push)) = parse_any(Provider::Gitlab, &map, SYSTEM_PUSH) else {
            panic!("not a push");
        };
        assert_eq!(push.repo_urls, site_urls());
        assert_eq!(
            push.updates,
            [RefUpdate {
                git_ref: "refs/heads/preview".into(),
                before: Some("a82a8b503311c656e99381eca230b179f87ba262".into()),
                after: None,
                deleted: true,
            }]
        );
    }

    #[test]
    fn system_hook_repository_update_carries_every_change() {
        let map = headers(&[("X-Gitlab-Event", "System Hook")]);
        let Ok(Event::Push(push)) = parse_any(Provider::Gitlab, &map, SYSTEM_REPOSITORY_UPDATE)
        else {
            panic!("not a push");
        };
        assert_eq!(push.repo_urls, site_urls());
        assert_eq!(
            push.updates,
            [
                RefUpdate {
                    git_ref: "refs/heads/main".into(),
                    before: Some("a48922fe9d766338be6618c3a9b319bbeb55c3ea".into()),
                    after: Some("a82a8b503311c656e99381eca230b179f87ba262".into()),
                    deleted: false,
                },
                RefUpdate {
                    git_ref: "refs/tags/v1.4.0".into(),
                    before: None,
                    after: Some("f4524b497a97c2da08aee4e6d052aa1d4e778ee5".into()),
                    deleted: false,
                },
            ]
        );
        let bad = br#"{"event_name": "repository_update", "project": {"web_url": "u"},
                       "changes": [{"ref": "refs/heads/../x", "after": null}]}"#;
        assert_eq!(
            parse_any(Provider::Gitlab, &map, bad),
            Err(ParseError::BadRef("changes[].ref"))
        );
        let empty = br#"{"event_name": "repository_update", "changes": []}"#;
        assert!(matches!(
            parse_any(Provider::Gitlab, &map, empty),
            Ok(Event::Ignored(_))
        ));
        let not_list = br#"{"event_name": "repository_update", "changes": {}}"#;
        assert_eq!(
            parse_any(Provider::Gitlab, &map, not_list),
            Err(ParseError::Field("changes"))
        );
    }

    #[test]
    fn other_events_are_ignored() {
        let issue = headers(&[("X-Gitlab-Event", "Issue Hook")]);
        assert_eq!(
            parse_any(Provider::Gitlab, &issue, b"not even json"),
            Ok(Event::Ignored("event Issue Hook is not handled".into()))
        );
        let system = headers(&[("X-Gitlab-Event", "System Hook")]);
        let project_create = br#"{"event_name": "project_create", "name": "x"}"#;
        assert_eq!(
            parse_any(Provider::Gitlab, &system, project_create),
            Ok(Event::Ignored(
                "system hook project_create is not handled".into()
            ))
        );
        let merge_request = br#"{"object_kind": "merge_request"}"#;
        assert!(matches!(
            parse_any(Provider::Gitlab, &system, merge_request),
            Ok(Event::Ignored(_))
        ));
        assert_eq!(
            parse_any(Provider::Gitlab, &system, br#"{"event_name": 3}"#),
            Err(ParseError::Field("event_name"))
        );
        assert_eq!(
            parse_any(Provider::Gitlab, &headers(&[]), PUSH_HOOK),
            Err(ParseError::MissingEvent("X-Gitlab-Event"))
        );
    }

    #[test]
    fn hostile_push_hooks() {
        let map = headers(&[("X-Gitlab-Event", "Push Hook")]);
        let run = |body: &str| parse_any(Provider::Gitlab, &map, body.as_bytes());
        assert_eq!(run("<html>"), Err(ParseError::NotJson));
        assert_eq!(run("\"push\""), Err(ParseError::NotObject));
        let urls = r#""project": {"git_http_url": "https://gitlab.example.com/a/b.git"}"#;
        assert_eq!(
            run(&format!(r#"{{"ref": 1, {urls}}}"#)),
            Err(ParseError::Field("ref"))
        );
        for bad in [
            r#""--upload-pack=x""#,
            r#""refs/heads/x.lock""#,
            r#""refs/heads/a\nb""#,
        ] {
            let body = format!(r#"{{"ref": {bad}, {urls}}}"#);
            assert_eq!(run(&body), Err(ParseError::BadRef("ref")), "{bad}");
        }
        assert_eq!(
            run(r#"{"ref": "refs/heads/main", "project": null, "repository": null}"#),
            Err(ParseError::Field("project"))
        );
        assert_eq!(
            run(r#"{"ref": "refs/heads/main"}"#),
            Err(ParseError::Field("project"))
        );
        assert_eq!(
            run(r#"{"ref": "refs/heads/main", "project": {"web_url": "u"}, "repository": null}"#),
            Err(ParseError::Field("repository"))
        );
    }
}
