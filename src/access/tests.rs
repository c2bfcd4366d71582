#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::tests_support::config;

/// Tokens `<name>-secret` for each name below, on repos docs, docs-api, site.
const YAML: &str = "\
api:
  protect_reads: true
  token: legacy-secret
  tokens:
    - {name: reader, token: reader-secret, scopes: [read]}
    - {name: docs-reader, token: docs-reader-secret, scopes: [read], repos: [docs]}
    - {name: ci-docs, token: ci-docs-secret, scopes: [sync], repos: [docs, 'docs-*']}
    - {name: ci-all, token: ci-all-secret, scopes: [sync]}
    - {name: ops, token: ops-secret, scopes: [admin]}
    - {name: old, token: old-secret, scopes: [sync, read], expires: 2026-06-30}
repos:
  - {name: docs, url: /o, directory: docs, secret: s}
  - {name: docs-api, url: /o, directory: docs-api, secret: s}
  - {name: site, url: /o, directory: site, secret: s}
";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn api() -> Api {
    config(YAML).api
}

/// `decide` as a short string: `ok <name>` or `<status> <kind>`.
fn outcome(api: &Api, token: Option<&str>, need: Need) -> String {
    match decide(api, token, need, now()) {
        Ok(c) => format!("ok {}", c.name()),
        Err(r) => format!("{} {}", r.status(), r.kind()),
    }
}

#[test]
fn each_scope_in_and_out_of_its_repositories() {
    let api = api();
    let cases: &[(&str, Need, &str)] = &[
        ("reader-secret", Need::Read(None), "ok reader"),
        ("reader-secret", Need::Read(Some("site")), "ok reader"),
        ("reader-secret", Need::Sync("site"), "403 forbidden"),
        ("reader-secret", Need::Admin, "403 forbidden"),
        (
            "docs-reader-secret",
            Need::Read(Some("docs")),
            "ok docs-reader",
        ),
        (
            "docs-reader-secret",
            Need::Read(Some("site")),
            "403 forbidden",
        ),
        ("docs-reader-secret", Need::Read(None), "ok docs-reader"),
        ("ci-docs-secret", Need::Sync("docs"), "ok ci-docs"),
        ("ci-docs-secret", Need::Sync("docs-api"), "ok ci-docs"),
        ("ci-docs-secret", Need::Sync("site"), "403 forbidden"),
        (
            "ci-docs-secret",
            Need::Sync("no-such-repo"),
            "403 forbidden",
        ),
        ("ci-docs-secret", Need::Read(Some("docs")), "403 forbidden"),
        ("ci-docs-secret", Need::Admin, "403 forbidden"),
        ("ci-all-secret", Need::Sync("site"), "ok ci-all"),
        ("ci-all-secret", Need::Read(None), "403 forbidden"),
        ("ops-secret", Need::Sync("site"), "ok ops"),
        ("ops-secret", Need::Read(Some("docs")), "ok ops"),
        ("ops-secret", Need::Admin, "ok ops"),
        ("legacy-secret", Need::Sync("site"), "ok api.token"),
        ("legacy-secret", Need::Read(None), "ok api.token"),
        ("legacy-secret", Need::Admin, "ok api.token"),
        ("old-secret", Need::Sync("docs"), "401 expired"),
        ("old-secret", Need::Read(None), "ok old"),
    ];
    for (token, need, want) in cases {
        // `old` expires on 2026-06-30; "now" is 2026-03-01 except where the case says expired.
        let got = if *want == "401 expired" {
            let later = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
            match decide(&api, Some(token), *need, later) {
                Ok(c) => format!("ok {}", c.name()),
                Err(r) => format!("{} {}", r.status(), r.kind()),
            }
        } else {
            outcome(&api, Some(token), *need)
        };
        assert_eq!(&got, want, "{token} {need:?}");
    }
}

#[test]
fn wrong_missing_and_one_byte_off_tokens_are_401() {
    let api = api();
    for need in [Need::Read(None), Need::Sync("docs"), Need::Admin] {
        assert_eq!(outcome(&api, None, need), "401 missing");
        assert_eq!(outcome(&api, Some(""), need), "401 missing");
        assert_eq!(outcome(&api, Some("nope"), need), "401 invalid");
        for off in [
            "ops-secreu",
            "Ops-secret",
            "ops-secret ",
            "ops-secre",
            "ops-secret-",
        ] {
            assert_eq!(outcome(&api, Some(off), need), "401 invalid", "{off}");
        }
    }
}

#[test]
fn refusals_name_what_is_lacking_never_the_reachable_repos() {
    let api = api();
    let r = decide(&api, Some("ci-docs-secret"), Need::Sync("site"), now()).unwrap_err();
    assert_eq!(
        r.message(),
        "token `ci-docs` lacks access to repository `site`"
    );
    assert!(!r.message().contains("docs-*"));
    let r = decide(&api, Some("ci-docs-secret"), Need::Admin, now()).unwrap_err();
    assert_eq!(r.message(), "token `ci-docs` lacks the `admin` scope");
    let r = decide(&api, Some("wrong"), Need::Admin, now()).unwrap_err();
    assert_eq!(r.message(), "the token is not valid");
}

#[test]
fn expiry_starts_at_midnight_utc_of_the_date() {
    let api = api();
    let at = |h, m, s| Utc.with_ymd_and_hms(2026, 6, 29, h, m, s).unwrap();
    let ok = decide(&api, Some("old-secret"), Need::Sync("docs"), at(23, 59, 59));
    assert!(ok.is_ok());
    let midnight = Utc.with_ymd_and_hms(2026, 6, 30, 0, 0, 0).unwrap();
    let r = decide(&api, Some("old-secret"), Need::Sync("docs"), midnight).unwrap_err();
    assert_eq!(
        r.message(),
        "token `old` expired at 2026-06-30 00:00:00 UTC"
    );
    assert_eq!(
        api.expired(midnight)
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["old"]
    );
}

#[test]
fn open_reads_check_nothing_and_no_tokens_disable_writes() {
    let open = config(&YAML.replace("protect_reads: true", "protect_reads: false")).api;
    for token in [None, Some("nope"), Some("ci-docs-secret")] {
        assert_eq!(outcome(&open, token, Need::Read(Some("site"))), "ok -");
        assert!(
            decide(&open, token, Need::Read(None), now())
                .unwrap()
                .may_read("site")
        );
    }
    assert_eq!(
        outcome(&open, Some("nope"), Need::Sync("docs")),
        "401 invalid"
    );
    let none = config("repos:\n  - {name: docs, url: /o, directory: docs, secret: s}\n").api;
    assert!(!none.protect_reads);
    assert_eq!(outcome(&none, None, Need::Read(None)), "ok -");
    assert_eq!(
        outcome(&none, Some("x"), Need::Sync("docs")),
        "403 disabled"
    );
    assert_eq!(outcome(&none, Some("x"), Need::Admin), "403 disabled");
}

#[test]
fn list_answers_are_filtered_to_the_readable_repos() {
    let api = api();
    let c = decide(&api, Some("docs-reader-secret"), Need::Read(None), now()).unwrap();
    assert!(c.may_read("docs") && !c.may_read("site") && !c.may_read("docs-api"));
    let c = decide(&api, Some("ops-secret"), Need::Read(None), now()).unwrap();
    assert!(c.may_read("site"));
}

#[test]
fn credentials_come_as_bearer_or_as_the_basic_password() {
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    assert_eq!(credential("Bearer abc").as_deref(), Some("abc"));
    assert_eq!(credential("bearer  abc ").as_deref(), Some("abc"));
    assert_eq!(credential("BEARER abc").as_deref(), Some("abc"));
    assert_eq!(credential(&basic("anyone:abc")).as_deref(), Some("abc"));
    assert_eq!(
        credential(&basic(":a:b")).as_deref(),
        Some("a:b"),
        "the first colon splits"
    );
    assert_eq!(credential(&basic("no-colon")), None);
    assert_eq!(credential("Basic %%%"), None);
    assert_eq!(credential("Token abc"), None);
    assert_eq!(credential("abc"), None);
}

#[test]
fn identify_finds_each_token_by_its_digest() {
    let api = api();
    for t in &api.tokens {
        let secret = if t.name == "api.token" {
            "legacy-secret".to_string()
        } else {
            format!("{}-secret", t.name)
        };
        assert_eq!(
            identify(&api.tokens, &secret).map(|f| f.name.as_str()),
            Some(t.name.as_str())
        );
    }
    assert!(identify(&api.tokens, "ci-docs-secreT").is_none());
    assert!(identify(&[], "x").is_none());
}

#[test]
fn a_disabled_token_matches_nothing() {
    let mut api = api();
    let ops = api.tokens.iter_mut().find(|t| t.name == "ops").unwrap();
    ops.disabled = Some("cannot read ops.token".into());
    assert_eq!(
        outcome(&api, Some("ops-secret"), Need::Admin),
        "401 invalid"
    );
    assert_eq!(
        outcome(&api, Some("reader-secret"), Need::Read(None)),
        "ok reader"
    );
}
