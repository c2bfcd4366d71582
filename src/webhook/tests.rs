//! Unit tests of the dispatch: forge detection, verification and parsing across forges.

use super::test_support::headers;
use super::*;

const ZEROS: &str = "0000000000000000000000000000000000000000";

#[test]
fn detect_prefers_gitea_and_forgejo_over_their_github_copies() {
    let gitea = headers(&[
        ("X-GitHub-Event", "push"),
        ("X-Gogs-Event", "push"),
        ("X-Gitea-Event", "push"),
        ("X-Hub-Signature-256", "sha256=00"),
    ]);
    assert_eq!(Provider::detect(&gitea), Some(Provider::Gitea));
    let forgejo = headers(&[("X-GitHub-Event", "push"), ("X-Forgejo-Event", "push")]);
    assert_eq!(Provider::detect(&forgejo), Some(Provider::Gitea));
}

#[test]
fn detect_each_forge_from_its_event_header() {
    let cases = [
        (
            headers(&[("X-GitHub-Event", "push")]),
            Some(Provider::Github),
        ),
        (
            headers(&[("X-Gitlab-Event", "Push Hook")]),
            Some(Provider::Gitlab),
        ),
        (
            headers(&[("X-Event-Key", "repo:push")]),
            Some(Provider::Bitbucket),
        ),
        (
            headers(&[("webhook-id", "msg_1"), ("webhook-signature", "v1,AA==")]),
            Some(Provider::Standard),
        ),
        // GitLab signing tokens send Standard Webhooks headers too: GitLab wins.
        (
            headers(&[
                ("X-Gitlab-Event", "Push Hook"),
                ("webhook-id", "msg_1"),
                ("webhook-signature", "v1,AA=="),
            ]),
            Some(Provider::Gitlab),
        ),
        (headers(&[("webhook-id", "msg_1")]), None),
        (headers(&[("Content-Type", "application/json")]), None),
    ];
    for (map, expected) in cases {
        assert_eq!(Provider::detect(&map), expected, "{map:?}");
    }
}

#[test]
fn provider_from_str_and_serde_names() {
    for (text, provider) in [
        ("github", Provider::Github),
        ("gitlab", Provider::Gitlab),
        ("gitea", Provider::Gitea),
        ("forgejo", Provider::Gitea),
        ("Forgejo", Provider::Gitea),
        ("bitbucket", Provider::Bitbucket),
        ("standard", Provider::Standard),
    ] {
        assert_eq!(text.parse::<Provider>(), Ok(provider));
    }
    assert_eq!("gogs".parse::<Provider>(), Err(UnknownProvider));
    assert_eq!("".parse::<Provider>(), Err(UnknownProvider));
    assert_eq!(
        serde_json::to_string(&Provider::Gitea).ok().as_deref(),
        Some("\"gitea\"")
    );
    let forgejo: Provider = serde_json::from_str("\"forgejo\"").expect("alias");
    assert_eq!(forgejo, Provider::Gitea);
    for provider in [Provider::Github, Provider::Bitbucket, Provider::Standard] {
        assert_eq!(provider.as_str().parse::<Provider>(), Ok(provider));
    }
}

#[test]
fn delivery_id_takes_the_first_present_header() {
    let gitea = headers(&[
        ("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
        ("X-GitHub-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
    ]);
    assert_eq!(
        delivery_id(&gitea).as_deref(),
        Some("f6266f16-1bf3-46a5-9ea4-602e06ead473")
    );
    let gitlab = headers(&[("Idempotency-Key", " key-1 "), ("webhook-id", "msg_2")]);
    assert_eq!(delivery_id(&gitlab).as_deref(), Some("key-1"));
    let standard = headers(&[("webhook-id", "msg_2")]);
    assert_eq!(delivery_id(&standard).as_deref(), Some("msg_2"));
    let bitbucket = headers(&[("X-Request-UUID", "u-1"), ("X-Request-Id", "r-1")]);
    assert_eq!(delivery_id(&bitbucket).as_deref(), Some("u-1"));
}

#[test]
fn delivery_id_none_when_absent_empty_or_too_long() {
    assert_eq!(delivery_id(&headers(&[])), None);
    assert_eq!(delivery_id(&headers(&[("X-GitHub-Delivery", "  ")])), None);
    let long = "a".repeat(MAX_DELIVERY_ID + 1);
    assert_eq!(delivery_id(&headers(&[("X-GitHub-Delivery", &long)])), None);
    let max = "a".repeat(MAX_DELIVERY_ID);
    assert_eq!(
        delivery_id(&headers(&[("X-GitHub-Delivery", &max)])),
        Some(max)
    );
}

#[test]
fn verify_errors_never_print_secrets_or_macs() {
    for error in [
        VerifyError::Missing,
        VerifyError::Invalid,
        VerifyError::Stale,
    ] {
        let text = error.to_string();
        assert!(text.len() < 40 && !text.contains('='), "{text}");
    }
}

/// A GitHub-style push body with `ref` set to the raw JSON `ref_json`.
fn push_with_ref(ref_json: &str) -> String {
    format!(
        r#"{{"ref": {ref_json}, "before": "{ZEROS}", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
           "repository": {{"clone_url": "https://example.com/a/b.git"}}}}"#
    )
}

#[test]
fn hostile_bodies_are_parse_errors_for_github_style_forges() {
    let bad_refs = [
        r#""--upload-pack=x""#,
        r#""refs/heads/../x""#,
        r#""refs/heads/a\u0000b""#,
        r#""refs/heads/a\nb""#,
        r#""refs/heads/main.lock""#,
        r#""refs/heads/""#,
        r#""main""#,
        r#""""#,
    ];
    let forges = [
        (Provider::Github, ("X-GitHub-Event", "push")),
        (Provider::Gitea, ("X-Gitea-Event", "push")),
        (Provider::Standard, ("webhook-id", "msg_1")),
    ];
    for (provider, event) in forges {
        let map = headers(&[event]);
        let run = |body: &str| parse(provider, &map, body.as_bytes());
        assert_eq!(run("not json"), Err(ParseError::NotJson), "{provider:?}");
        assert_eq!(run(""), Err(ParseError::NotJson));
        assert_eq!(run("[1, 2]"), Err(ParseError::NotObject));
        assert_eq!(run(&push_with_ref("7")), Err(ParseError::Field("ref")));
        assert_eq!(run(&push_with_ref("null")), Err(ParseError::Field("ref")));
        for bad in bad_refs {
            assert_eq!(
                run(&push_with_ref(bad)),
                Err(ParseError::BadRef("ref")),
                "{bad}"
            );
        }
        let null_repo = r#"{"ref": "refs/heads/main", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "repository": null}"#;
        assert_eq!(run(null_repo), Err(ParseError::Field("repository")));
        let bad_after = r#"{"ref": "refs/heads/main", "after": "xyz", "repository": {"url": "u"}}"#;
        assert_eq!(run(bad_after), Err(ParseError::BadCommit("after")));
        let numeric_after = r#"{"ref": "refs/heads/main", "after": 5, "repository": {"url": "u"}}"#;
        assert_eq!(run(numeric_after), Err(ParseError::BadCommit("after")));
    }
}

#[test]
fn parse_errors_are_short_and_do_not_echo_input() {
    let map = headers(&[("X-GitHub-Event", "push")]);
    let secret_looking = format!(r#"{{"ref": "--upload-pack={}"}}"#, "x".repeat(10_000));
    let error = parse(Provider::Github, &map, secret_looking.as_bytes()).expect_err("bad ref");
    let text = error.to_string();
    assert!(text.len() < 60 && !text.contains("upload-pack"), "{text}");
}

/// Truncated and byte-flipped fixtures, under every provider and event header, never panic.
#[test]
fn mangled_fixtures_never_panic() {
    const FIXTURES: [&[u8]; 10] = [
        include_bytes!("../../tests/fixtures/webhooks/github/push_branch_created.json"),
        include_bytes!("../../tests/fixtures/webhooks/github/push_tag_deleted.json"),
        include_bytes!("../../tests/fixtures/webhooks/github/ping.json"),
        include_bytes!("../../tests/fixtures/webhooks/gitlab/push_hook.json"),
        include_bytes!("../../tests/fixtures/webhooks/gitlab/tag_push_hook.json"),
        include_bytes!("../../tests/fixtures/webhooks/gitlab/system_hook_push.json"),
        include_bytes!("../../tests/fixtures/webhooks/gitlab/system_hook_repository_update.json"),
        include_bytes!("../../tests/fixtures/webhooks/gitea/push.json"),
        include_bytes!("../../tests/fixtures/webhooks/bitbucket/cloud_repo_push.json"),
        include_bytes!("../../tests/fixtures/webhooks/bitbucket/dc_repo_refs_changed.json"),
    ];
    let deliveries = [
        (Provider::Github, headers(&[("X-GitHub-Event", "push")])),
        (
            Provider::Gitlab,
            headers(&[("X-Gitlab-Event", "Push Hook")]),
        ),
        (
            Provider::Gitlab,
            headers(&[("X-Gitlab-Event", "System Hook")]),
        ),
        (Provider::Gitea, headers(&[("X-Gitea-Event", "push")])),
        (
            Provider::Bitbucket,
            headers(&[("X-Event-Key", "repo:push")]),
        ),
        (
            Provider::Bitbucket,
            headers(&[("X-Event-Key", "repo:refs_changed")]),
        ),
        (Provider::Standard, headers(&[])),
    ];
    let mut pushes = 0;
    for fixture in FIXTURES {
        let mut bodies: Vec<Vec<u8>> = (0..fixture.len())
            .step_by(97)
            .map(|end| fixture[..end].to_vec())
            .collect();
        for at in (0..fixture.len()).step_by(41) {
            for byte in [0, b'"', b'\\', b'[', b'{', b'0', 0xff] {
                let mut mangled = fixture.to_vec();
                mangled[at] = byte;
                bodies.push(mangled);
            }
        }
        bodies.push(fixture.to_vec());
        for (provider, map) in &deliveries {
            for body in &bodies {
                if let Ok(Event::Push(push)) = parse(*provider, map, body) {
                    pushes += 1;
                    assert!(push.updates.iter().all(|update| {
                        update.git_ref.starts_with("refs/") && refname::is_valid(&update.git_ref)
                    }));
                }
            }
        }
    }
    assert!(
        pushes > 100,
        "the mangled bodies should still parse sometimes: {pushes}"
    );
}

#[test]
fn oid_accepts_sha1_and_sha256_ids_only() {
    let v = |s: &str| Value::String(s.to_owned());
    assert_eq!(oid(None, "f"), Ok(Oid::Absent));
    assert_eq!(oid(Some(&Value::Null), "f"), Ok(Oid::Absent));
    assert_eq!(oid(Some(&v(ZEROS)), "f"), Ok(Oid::Zero));
    assert_eq!(oid(Some(&v(&"0".repeat(64))), "f"), Ok(Oid::Zero));
    let upper = "6113728F27AE82C7B1A177C8D03F9E96E0ADF246";
    assert_eq!(
        oid(Some(&v(upper)), "f"),
        Ok(Oid::Id(upper.to_ascii_lowercase()))
    );
    let sha256 = "ab".repeat(32);
    assert_eq!(oid(Some(&v(&sha256)), "f"), Ok(Oid::Id(sha256.clone())));
    for bad in [
        "6113728",
        &"g".repeat(40),
        &"a".repeat(41),
        "--upload-pack=x",
    ] {
        assert_eq!(
            oid(Some(&v(bad)), "f"),
            Err(ParseError::BadCommit("f")),
            "{bad}"
        );
    }
    assert_eq!(
        oid(Some(&Value::Bool(true)), "f"),
        Err(ParseError::BadCommit("f"))
    );
}

#[test]
fn ignored_reasons_are_printable_and_short() {
    let Event::Ignored(reason) = ignored("event", &format!("a\nb{}", "x".repeat(500))) else {
        panic!("not ignored");
    };
    assert!(
        reason.starts_with("event a?b") && reason.len() < 100,
        "{reason}"
    );
}
