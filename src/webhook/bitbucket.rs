//! Bitbucket Cloud (`repo:push`) and Data Center (`repo:refs_changed`), `X-Hub-Signature` sha256.

use http::HeaderMap;
use serde_json::Value;

use super::json::parse_object;
use super::mac::{HmacSha256, verify_hex_mac};
use super::{
    Event, ParseError, Push, RefUpdate, VerifyError, array, checked_ref, event_header, git_ref,
    header, ignored, oid, optional_object, push_url, ref_update,
};
use crate::secret::Secret;

pub(super) const EVENT: &str = "x-event-key";
/// Bitbucket signs with HMAC-SHA256 but names the header without `-256`.
const SIGNATURE: &str = "x-hub-signature";

/// `X-Hub-Signature: sha256=<hex>` over the raw body.
pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[impl AsRef<Secret>],
) -> Result<(), VerifyError> {
    let value = header(headers, SIGNATURE).ok_or(VerifyError::Missing)?;
    let hex = value.strip_prefix("sha256=").ok_or(VerifyError::Invalid)?;
    verify_hex_mac::<HmacSha256>(secrets, body, hex)
}

pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Event, ParseError> {
    match event_header(headers, "X-Event-Key")? {
        "repo:push" => cloud_push(&parse_object(body)?),
        "repo:refs_changed" => data_center_refs_changed(&parse_object(body)?).map(Event::Push),
        "diagnostics:ping" => Ok(Event::Ping),
        other => Ok(ignored("event", other)),
    }
}

/// Cloud: `push.changes[]` of `{old, new}`, each `null` or `{type: branch|tag, name,
/// target.hash}`; `new: null` is a deletion. Changes of other ref types are skipped.
fn cloud_push(payload: &Value) -> Result<Event, ParseError> {
    let changes = optional_object(payload, "push")?
        .map(|push| array(push, "changes"))
        .transpose()?
        .ok_or(ParseError::Field("push"))?;
    let mut updates = Vec::new();
    for change in changes {
        if let Some(update) = cloud_change(change)? {
            updates.push(update);
        }
    }
    if updates.is_empty() {
        return Ok(Event::Ignored(
            "push carries no branch or tag changes".to_owned(),
        ));
    }
    let mut repo_urls = Vec::new();
    if let Some(repository) = optional_object(payload, "repository")? {
        let links = repository.get("links");
        push_hrefs(&mut repo_urls, links.and_then(|links| links.get("html")));
        push_hrefs(&mut repo_urls, links.and_then(|links| links.get("clone")));
    }
    if repo_urls.is_empty() {
        return Err(ParseError::Field("repository"));
    }
    Ok(Event::Push(Push { repo_urls, updates }))
}

fn cloud_change(change: &Value) -> Result<Option<RefUpdate>, ParseError> {
    let side = |key| change.get(key).filter(|side| !side.is_null());
    let (old, new) = (side("old"), side("new"));
    let named = new.or(old).ok_or(ParseError::Field("push.changes[].new"))?;
    let name = named
        .get("name")
        .and_then(Value::as_str)
        .ok_or(ParseError::Field("push.changes[].name"))?;
    let git_ref = match named.get("type").and_then(Value::as_str) {
        Some("branch") => format!("refs/heads/{name}"),
        Some("tag") => format!("refs/tags/{name}"),
        Some(_) => return Ok(None),
        None => return Err(ParseError::Field("push.changes[].type")),
    };
    let git_ref = checked_ref(git_ref, "push.changes[].name")?;
    let hash = |side: Option<&Value>, field| {
        oid(side.and_then(|side| side.pointer("/target/hash")), field)
    };
    let before = hash(old, "push.changes[].old.target.hash")?;
    let after = hash(new, "push.changes[].new.target.hash")?;
    Ok(Some(ref_update(git_ref, before, after, new.is_none())))
}

/// Data Center: `changes[]` of `{ref.id | refId, fromHash, toHash, type: ADD|UPDATE|DELETE}`.
fn data_center_refs_changed(payload: &Value) -> Result<Push, ParseError> {
    let updates = array(payload, "changes")?
        .iter()
        .map(|change| {
            let id = change.pointer("/ref/id").or_else(|| change.get("refId"));
            let git_ref = git_ref(id, "changes[].ref.id")?;
            let before = oid(change.get("fromHash"), "changes[].fromHash")?;
            let after = oid(change.get("toHash"), "changes[].toHash")?;
            let deleted = change.get("type").and_then(Value::as_str) == Some("DELETE");
            Ok(ref_update(git_ref, before, after, deleted))
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let mut repo_urls = Vec::new();
    if let Some(repository) = optional_object(payload, "repository")? {
        let links = repository.get("links");
        push_hrefs(&mut repo_urls, links.and_then(|links| links.get("clone")));
        push_hrefs(&mut repo_urls, links.and_then(|links| links.get("self")));
    }
    if repo_urls.is_empty() {
        return Err(ParseError::Field("repository"));
    }
    Ok(Push { repo_urls, updates })
}

/// The `href`s of a Bitbucket link: `{"href": …}` (Cloud) or `[{"href": …}, …]` (Data Center,
/// Cloud `clone`).
fn push_hrefs(urls: &mut Vec<String>, link: Option<&Value>) {
    match link {
        Some(Value::Array(links)) => {
            for link in links {
                push_url(urls, link.get("href"));
            }
        }
        Some(link) => push_url(urls, link.get("href")),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{headers, hmac_sha256_hex, json, secrets};
    use super::super::{Provider, VerifyOptions, parse as parse_any, verify as verify_any};
    use super::*;

    const CLOUD_PUSH: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/bitbucket/cloud_repo_push.json");
    const DC_REFS_CHANGED: &[u8] =
        include_bytes!("../../tests/fixtures/webhooks/bitbucket/dc_repo_refs_changed.json");
    const SECRET: &str = "bitbucket secret";

    fn check(map: &HeaderMap, body: &[u8], keys: &[&str]) -> Result<(), VerifyError> {
        let opts = VerifyOptions {
            allow_sha1: true,
            now_unix: 0,
        };
        verify_any(Provider::Bitbucket, map, body, &secrets(keys), &opts)
    }

    fn cloud(body: &[u8]) -> Result<Event, ParseError> {
        parse_any(
            Provider::Bitbucket,
            &headers(&[("X-Event-Key", "repo:push")]),
            body,
        )
    }

    #[test]
    fn signature_is_sha256_in_x_hub_signature() {
        let signature = format!("sha256={}", hmac_sha256_hex(SECRET, CLOUD_PUSH));
        let map = headers(&[
            ("X-Event-Key", "repo:push"),
            ("X-Request-UUID", "9f2e4a1c-0000-4000-8000-000000000001"),
            ("X-Hub-Signature", &signature),
        ]);
        assert_eq!(Provider::detect(&map), Some(Provider::Bitbucket));
        assert_eq!(check(&map, CLOUD_PUSH, &[SECRET]), Ok(()));
        assert_eq!(check(&map, CLOUD_PUSH, &["previous", SECRET]), Ok(()));
        assert_eq!(
            check(&map, CLOUD_PUSH, &["previous"]),
            Err(VerifyError::Invalid)
        );
        assert_eq!(
            check(&map, DC_REFS_CHANGED, &[SECRET]),
            Err(VerifyError::Invalid)
        );
        let hex = signature.trim_start_matches("sha256=");
        for bad in [
            "sha256=".to_owned(),
            hex.to_owned(),
            format!("sha1={hex}"),
            format!("sha256={}", &hex[..40]),
            format!("sha256={}", hex.to_ascii_uppercase()),
        ] {
            let map = headers(&[("X-Hub-Signature", &bad)]);
            assert_eq!(
                check(&map, CLOUD_PUSH, &[SECRET]),
                Err(VerifyError::Invalid),
                "{bad}"
            );
        }
        // GitHub's header name is not Bitbucket's.
        let map = headers(&[("X-Hub-Signature-256", &signature)]);
        assert_eq!(
            check(&map, CLOUD_PUSH, &[SECRET]),
            Err(VerifyError::Missing)
        );
    }

    #[test]
    fn cloud_push_fixture_carries_every_change() {
        let Ok(Event::Push(push)) = cloud(CLOUD_PUSH) else {
            panic!("not a push");
        };
        assert_eq!(push.repo_urls, ["https://bitbucket.org/example-team/site"]);
        assert_eq!(
            push.updates,
            [
                RefUpdate {
                    git_ref: "refs/heads/main".into(),
                    before: Some("fbab3b5d23a52ef9ff5aab32d6ae7900b09dc7e3".into()),
                    after: Some("f751ee2296101fe282649ee8ce92c17a160ea828".into()),
                    deleted: false,
                },
                RefUpdate {
                    git_ref: "refs/tags/v2.0.0".into(),
                    before: None,
                    after: Some("f751ee2296101fe282649ee8ce92c17a160ea828".into()),
                    deleted: false,
                },
                RefUpdate {
                    git_ref: "refs/heads/feature/old-header".into(),
                    before: Some("7d3bdf938456088e59dce13fefa2c594c7935431".into()),
                    after: None,
                    deleted: true,
                },
            ]
        );
    }

    #[test]
    fn cloud_push_hostile_changes() {
        let mut payload = json(CLOUD_PUSH);
        payload["push"]["changes"][0]["new"]["name"] = json!("../x");
        let body = serde_json::to_vec(&payload).expect("serialise");
        assert_eq!(cloud(&body), Err(ParseError::BadRef("push.changes[].name")));
        for name in [json!("x.lock"), json!("a\nb"), json!("a b"), json!(7)] {
            payload["push"]["changes"][0]["new"]["name"] = name.clone();
            let body = serde_json::to_vec(&payload).expect("serialise");
            assert!(cloud(&body).is_err(), "{name}");
        }

        let mut payload = json(CLOUD_PUSH);
        payload["push"]["changes"][0]["new"]["type"] = json!("named_branch");
        payload["push"]["changes"][1]["new"]["type"] = json!("bookmark");
        payload["push"]["changes"][2]["old"]["type"] = json!("bookmark");
        let body = serde_json::to_vec(&payload).expect("serialise");
        assert!(matches!(cloud(&body), Ok(Event::Ignored(_))));

        let mut payload = json(CLOUD_PUSH);
        payload["push"]["changes"][0]["new"]["target"]["hash"] = json!("abc");
        let body = serde_json::to_vec(&payload).expect("serialise");
        assert_eq!(
            cloud(&body),
            Err(ParseError::BadCommit("push.changes[].new.target.hash"))
        );

        let mut payload = json(CLOUD_PUSH);
        payload["repository"] = json!(null);
        let body = serde_json::to_vec(&payload).expect("serialise");
        assert_eq!(cloud(&body), Err(ParseError::Field("repository")));

        assert_eq!(cloud(br#"{"push": null}"#), Err(ParseError::Field("push")));
        assert_eq!(
            cloud(br#"{"push": {"changes": 1}}"#),
            Err(ParseError::Field("changes"))
        );
        assert_eq!(
            cloud(br#"{"push": {"changes": [{"old": null, "new": null}]}}"#),
            Err(ParseError::Field("push.changes[].new"))
        );
    }

    #[test]
    fn data_center_refs_changed_fixture() {
        let map = headers(&[
            ("X-Event-Key", "repo:refs_changed"),
            ("X-Request-Id", "r-1"),
        ]);
        let Ok(Event::Push(push)) = parse_any(Provider::Bitbucket, &map, DC_REFS_CHANGED) else {
            panic!("not a push");
        };
        assert_eq!(
            push.repo_urls,
            [
                "ssh://git@bitbucket.example.net:7999/web/site.git",
                "https://bitbucket.example.net/scm/web/site.git",
                "https://bitbucket.example.net/projects/WEB/repos/site/browse",
            ]
        );
        assert_eq!(
            push.updates,
            [
                RefUpdate {
                    git_ref: "refs/heads/main".into(),
                    before: Some("fbab3b5d23a52ef9ff5aab32d6ae7900b09dc7e3".into()),
                    after: Some("f751ee2296101fe282649ee8ce92c17a160ea828".into()),
                    deleted: false,
                },
                RefUpdate {
                    git_ref: "refs/heads/feature/old-header".into(),
                    before: Some("7d3bdf938456088e59dce13fefa2c594c7935431".into()),
                    after: None,
                    deleted: true,
                },
            ]
        );
    }

    #[test]
    fn data_center_delete_type_and_ref_id_fallback() {
        let map = headers(&[("X-Event-Key", "repo:refs_changed")]);
        let body = br#"{"changes": [{"refId": "refs/tags/v1", "fromHash": "f751ee2296101fe282649ee8ce92c17a160ea828",
                        "type": "DELETE"}],
                        "repository": {"links": {"clone": [{"href": "https://bb.example.net/scm/p/r.git"}]}}}"#;
        let Ok(Event::Push(push)) = parse_any(Provider::Bitbucket, &map, body) else {
            panic!("not a push");
        };
        assert_eq!(push.updates[0].git_ref, "refs/tags/v1");
        assert!(push.updates[0].deleted);
        let bad = br#"{"changes": [{"ref": {"id": "--upload-pack=x"}}], "repository": {}}"#;
        assert_eq!(
            parse_any(Provider::Bitbucket, &map, bad),
            Err(ParseError::BadRef("changes[].ref.id"))
        );
        let numeric = br#"{"changes": [{"ref": {"id": 1}}]}"#;
        assert_eq!(
            parse_any(Provider::Bitbucket, &map, numeric),
            Err(ParseError::Field("changes[].ref.id"))
        );
    }

    #[test]
    fn ping_and_other_events() {
        let ping = headers(&[("X-Event-Key", "diagnostics:ping")]);
        assert_eq!(
            parse_any(Provider::Bitbucket, &ping, b"{\"test\": true}"),
            Ok(Event::Ping)
        );
        let pr = headers(&[("X-Event-Key", "pullrequest:created")]);
        assert_eq!(
            parse_any(Provider::Bitbucket, &pr, b"{}"),
            Ok(Event::Ignored(
                "event pullrequest:created is not handled".into()
            ))
        );
        assert_eq!(
            parse_any(Provider::Bitbucket, &headers(&[]), CLOUD_PUSH),
            Err(ParseError::MissingEvent("X-Event-Key"))
        );
    }
}
