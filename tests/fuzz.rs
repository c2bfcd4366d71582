//! Property-based fuzzing (proptest) of what unauthenticated input reaches: every webhook
//! verifier and parser, the config loader, remote URLs and ref names. Properties: nothing
//! panics; a signed body verifies and any one-byte change does not; a mutated real delivery never
//! verifies with the original signature; `redact` never leaves a password; ref-name validity
//! agrees with `git check-ref-format`.
//!
//! Cases per property: 64 in CI; `PROPTEST_CASES=100000 cargo test --test fuzz --release` for a
//! long run.

#![allow(clippy::unwrap_used)]

mod support;

use hookmirror::config::{Context, Format, parse_str, validate};
use hookmirror::secret::Secret;
use hookmirror::webhook::{self, Provider, VerifyOptions};
use hookmirror::{refname, url};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use support::forge::*;

/// 64 cases per property unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const PROVIDERS: [Provider; 5] = [
    Provider::Github,
    Provider::Gitlab,
    Provider::Gitea,
    Provider::Bitbucket,
    Provider::Standard,
];

const SECRET: &str = "fuzz-secret-4c1d";
/// A Standard Webhooks signing secret (`whsec_` + base64 of the key).
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_750_000_000;

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            map.append(k, v);
        }
    }
    map
}

/// Everything the intake does with a delivery before and after verification.
fn exercise(headers: &HeaderMap, body: &[u8]) {
    let _ = Provider::detect(headers);
    let _ = webhook::delivery_id(headers);
    let secrets = [Secret::new(SECRET), Secret::new(WHSEC)];
    for provider in PROVIDERS {
        for allow_sha1 in [false, true] {
            let opts = VerifyOptions {
                allow_sha1,
                now_unix: NOW,
            };
            let _ = webhook::verify(provider, headers, body, &secrets, &opts);
        }
        if let Ok(webhook::Event::Push(push)) = webhook::parse(provider, headers, body) {
            for u in &push.updates {
                assert!(u.git_ref.starts_with("refs/") && refname::is_valid(&u.git_ref));
            }
        }
    }
}

/// Header names the forges use, and a few random ones.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("X-GitHub-Event".to_string()),
        Just("X-Hub-Signature-256".to_string()),
        Just("X-Hub-Signature".to_string()),
        Just("X-Gitlab-Event".to_string()),
        Just("X-Gitlab-Token".to_string()),
        Just("X-Gitea-Event".to_string()),
        Just("X-Gitea-Signature".to_string()),
        Just("X-Forgejo-Event".to_string()),
        Just("X-Forgejo-Signature".to_string()),
        Just("X-Event-Key".to_string()),
        Just("webhook-id".to_string()),
        Just("webhook-timestamp".to_string()),
        Just("webhook-signature".to_string()),
        Just("Content-Type".to_string()),
        Just("X-GitHub-Delivery".to_string()),
        "[a-zA-Z-]{1,20}",
    ]
}

/// Header values: the shapes forges send (events, `sha256=` + hex, `v1,` + base64, numbers) and
/// anything printable.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("push".to_string()),
        Just("Push Hook".to_string()),
        Just("System Hook".to_string()),
        Just("repo:push".to_string()),
        Just("repo:refs_changed".to_string()),
        Just("application/x-www-form-urlencoded".to_string()),
        "sha(1|256)=[0-9a-f]{0,70}",
        "v1,[A-Za-z0-9+/=]{0,50}( v1,[A-Za-z0-9+/=]{0,50})?",
        "-?[0-9]{1,20}",
        "[ -~]{0,80}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((header_name(), header_value()), 0..8)
}

/// Signs a body as one forge does.
type Signer = fn(Vec<u8>) -> Delivery;

/// (what, fixture, signer) for every real fixture in tests/fixtures/webhooks.
fn fixtures() -> Vec<(&'static str, &'static str, Signer)> {
    vec![
        ("github push", GITHUB_PUSH, |b| {
            github(SECRET, "push", "id", b)
        }),
        ("github tag", GITHUB_PUSH_TAG, |b| {
            github(SECRET, "push", "id", b)
        }),
        ("github ping", GITHUB_PING, |b| {
            github(SECRET, "ping", "id", b)
        }),
        ("github issues", GITHUB_ISSUES, |b| {
            github(SECRET, "issues", "id", b)
        }),
        ("gitlab push", GITLAB_PUSH, |b| {
            gitlab_signed(WHSEC, "Push Hook", "id", NOW, b)
        }),
        ("gitlab tag", GITLAB_TAG_PUSH, |b| {
            gitlab_signed(WHSEC, "Tag Push Hook", "id", NOW, b)
        }),
        ("gitlab system push", GITLAB_SYSTEM_PUSH, |b| {
            gitlab_signed(WHSEC, "System Hook", "id", NOW, b)
        }),
        ("gitlab repository update", GITLAB_SYSTEM_UPDATE, |b| {
            gitlab_signed(WHSEC, "System Hook", "id", NOW, b)
        }),
        ("gitea", GITEA_PUSH, |b| gitea(SECRET, "id", b)),
        ("forgejo", GITEA_PUSH, |b| forgejo(SECRET, "id", b)),
        ("bitbucket cloud", BITBUCKET_CLOUD_PUSH, |b| {
            bitbucket_cloud(SECRET, "repo:push", "id", b)
        }),
        ("bitbucket dc", BITBUCKET_DC_CHANGED, |b| {
            bitbucket_dc(SECRET, "repo:refs_changed", "id", b)
        }),
        ("standard", GITHUB_PUSH, |b| {
            standard(WHSEC, "msg_1", NOW, b)
        }),
    ]
}

/// Verifies `d` with the detected provider (GitLab signing tokens: as GitLab).
fn verifies(d: &Delivery) -> bool {
    let map = header_map(&d.headers);
    let provider = Provider::detect(&map).unwrap();
    let opts = VerifyOptions {
        allow_sha1: false,
        now_unix: NOW,
    };
    let secrets = [Secret::new(SECRET), Secret::new(WHSEC)];
    webhook::verify(provider, &map, &d.body, &secrets, &opts).is_ok()
}

/// A body changed in one of several ways (flip, set, insert, delete, truncate) at `at`.
fn mutate(body: &[u8], how: u8, at: usize, byte: u8) -> Vec<u8> {
    let mut b = body.to_vec();
    if b.is_empty() {
        return vec![byte];
    }
    let at = at % b.len();
    match how % 5 {
        0 => b[at] ^= byte | 1,
        1 => b[at] = if b[at] == byte { byte ^ 0x20 } else { byte },
        2 => b.insert(at, byte),
        3 => {
            b.remove(at);
        }
        _ => b.truncate(at),
    }
    b
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_deliveries_never_panic(headers in headers(), body in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&header_map(&headers), &body);
    }

    #[test]
    fn random_json_deliveries_never_panic(
        headers in headers(),
        body in r#"\{("(ref|before|after|repository|project|push|changes|object_kind|commits|deleted)": ?(null|true|"[ -~]{0,20}"|\[\]|\{\}|[0-9]{1,3}|\{"(url|clone_url|links|git_http_url)": ?"[ -~]{0,20}"\}),? ?){0,6}\}"#,
    ) {
        exercise(&header_map(&headers), body.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic_nor_verify(which in 0usize..13, how in any::<u8>(), at in any::<usize>(), byte in any::<u8>()) {
        let all = fixtures();
        let (name, text, sign) = all[which % all.len()];
        let original = sign(bytes(&fixture(text)));
        prop_assert!(verifies(&original), "{name}: the original verifies");
        let body = mutate(&original.body, how, at, byte);
        let changed = original.clone().with_body(body.clone());
        if body != original.body {
            prop_assert!(!verifies(&changed), "{name}: a changed body verified");
        }
        exercise(&header_map(&changed.headers), &body);
    }

    #[test]
    fn signed_bodies_verify_and_any_one_byte_change_fails(
        body in proptest::collection::vec(any::<u8>(), 1..400),
        at in any::<usize>(),
        flip in 1u8..=255,
        scheme in 0usize..6,
    ) {
        let sign = |b: Vec<u8>| match scheme {
            0 => github(SECRET, "push", "id", b),
            1 => gitea(SECRET, "id", b),
            2 => forgejo(SECRET, "id", b),
            3 => bitbucket_cloud(SECRET, "repo:push", "id", b),
            4 => gitlab_signed(WHSEC, "Push Hook", "id", NOW, b),
            _ => standard(WHSEC, "msg_1", NOW, b),
        };
        let d = sign(body.clone());
        prop_assert!(verifies(&d));
        let mut changed = body;
        let at = at % changed.len();
        changed[at] ^= flip;
        prop_assert!(!verifies(&d.with_body(changed)));
    }

    #[test]
    fn random_configs_never_panic(text in "[ -~\n\t]{0,300}", format in 0u8..3) {
        load(&text, format);
    }

    #[test]
    fn mutated_example_configs_never_panic(which in 0usize..4, how in any::<u8>(), at in any::<usize>(), byte in 0x20u8..0x7f) {
        let (text, format) = [
            (include_str!("../config/example.yaml"), 0),
            (include_str!("../config/example.toml"), 1),
            (include_str!("../config/example.json"), 2),
            (include_str!("../config/gwg-compatible.yaml"), 0),
        ][which];
        let mutated = mutate(text.as_bytes(), how, at, byte);
        if let Ok(text) = String::from_utf8(mutated) {
            load(&text, format);
        }
    }

    #[test]
    fn random_urls_never_panic(text in "[ -~]{0,60}") {
        urls(&text);
    }

    #[test]
    fn url_shaped_text_never_panics(
        text in "(ssh|https?|git|file|ext|git\\+ssh)?(://)?([a-z:@%]{0,8}@)?[a-z0-9.\\[\\]:-]{0,20}(:[0-9]{0,6})?(/[a-zA-Z0-9._~-]{0,8}){0,4}(\\.git)?/?",
    ) {
        urls(&text);
    }

    #[test]
    fn redaction_never_leaves_a_password(
        scheme in prop_oneof![Just("https"), Just("http"), Just("ssh"), Just("git")],
        user in "[a-z][a-z0-9-]{0,10}",
        password in "[A-Z0-9_]{8,24}",
        host in "[a-z][a-z0-9.-]{0,20}",
        port in proptest::option::of(1u16..),
        path in "(/[a-z0-9._-]{1,10}){0,4}",
        with_user in any::<bool>(),
    ) {
        // Over ssh:// and git:// a bare userinfo is the user name (`git@`), not a token.
        prop_assume!(with_user || scheme.starts_with("http"));
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let userinfo = if with_user { format!("{user}:{password}") } else { password.clone() };
        let u = format!("{scheme}://{userinfo}@{host}{port}{path}");
        prop_assert!(!url::redact(&u).contains(&password), "{}", url::redact(&u));
        prop_assert!(!url::without_credentials(&u).contains(&password));
        let text = format!("fatal: unable to access '{u}': 403");
        prop_assert!(!url::redact_in_text(&text).contains(&password));
        if let Some(remote) = url::RemoteUrl::parse(u.clone()) {
            prop_assert!(!remote.to_string().contains(&password));
            let debug = format!("{remote:?}");
            prop_assert!(!debug.contains(&password));
            prop_assert!(!remote.redacted().contains(&password));
        }
    }
}

/// `text` as a config in format 0 (YAML), 1 (TOML) or 2 (JSON): parsed and validated.
fn load(text: &str, format: u8) {
    let format = [Format::Yaml, Format::Toml, Format::Json][usize::from(format % 3)];
    if let Ok(raw) = parse_str(text, format) {
        let _ = validate(raw, &Context::bare(format, "/etc/hookmirror"));
    }
}

fn urls(text: &str) {
    let _ = url::parse(text);
    let _ = url::match_key(text);
    let _ = url::redact(text);
    let _ = url::without_credentials(text);
    let _ = url::redact_in_text(text);
    if let Some(remote) = url::RemoteUrl::parse(text) {
        let _ = (remote.match_key(), remote.redacted(), remote.scheme());
    }
}

/// Ref names built from the pieces git's rules are about.
fn ref_piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("a"),
        2 => Just("main"),
        2 => Just("/"),
        2 => Just("."),
        1 => Just(".."),
        1 => Just(".lock"),
        1 => Just("@"),
        1 => Just("@{"),
        1 => Just("{"),
        1 => Just("-"),
        1 => Just("~"),
        1 => Just("^"),
        1 => Just(":"),
        1 => Just("?"),
        1 => Just("*"),
        1 => Just("["),
        1 => Just("\\"),
        1 => Just(" "),
        1 => Just("\t"),
        1 => Just("\u{7f}"),
        1 => Just("é"),
        1 => Just("//"),
    ]
}

proptest! {
    // Each case runs `git`: fewer of them.
    #![proptest_config(ProptestConfig { cases: config().cases.min(128), ..config() })]

    #[test]
    fn ref_name_validity_agrees_with_git(pieces in proptest::collection::vec(ref_piece(), 1..6)) {
        let name = format!("refs/heads/{}", pieces.concat());
        let git = std::process::Command::new("git")
            .args(["check-ref-format", &name])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .unwrap()
            .success();
        prop_assert_eq!(refname::is_valid(&name), git, "{:?}", name);
    }
}
