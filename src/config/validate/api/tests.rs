#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{Config, Context, Format, parse_str, validate};

/// Validates YAML `text` as `hookmirror check` does, with the text for the lines.
fn check(text: &str) -> Result<Config, Vec<Problem>> {
    let raw = parse_str(text, Format::Yaml).expect("parses");
    let ctx = Context {
        text: Some(text),
        ..Context::bare(Format::Yaml, "/etc/hookmirror")
    };
    validate(raw, &ctx)
}

fn problems(text: &str) -> Vec<(Option<usize>, String, String)> {
    check(text)
        .expect_err("refused")
        .into_iter()
        .map(|p| (p.line, p.field.unwrap_or_default(), p.message))
        .collect()
}

const REPOS: &str = "repos:\n  - {name: docs, url: /o, directory: /docs, secret: s}\n  - {name: site, url: /o, directory: /site, secret: s}\n";

#[test]
fn a_token_entry_is_checked_key_by_key_with_its_line() {
    let text = format!(
        "api:\n  tokens:\n    - name: good\n      token: t1\n      scopes: [sync]\n    - name: bad\n      sha256: abc\n      scopes: [write, read]\n      expires: 30.06.2027\n    - name: two\n      token: t2\n      token_file: f\n      scopes: [read]\n    - scopes: [read]\n      token: t3\n{REPOS}"
    );
    let p = problems(&text);
    let expect = [
        (Some(7), "api.tokens[bad].sha256", "is not a SHA-256"),
        (Some(8), "api.tokens[bad].scopes", "`write` is not a scope"),
        (
            Some(9),
            "api.tokens[bad].expires",
            "`30.06.2027` is not a date",
        ),
        (
            Some(12),
            "api.tokens[two].token_file",
            "set `token` or `token_file`, not both",
        ),
        (Some(14), "api.tokens[#4].name", "is required"),
    ];
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    for ((line, field, msg), (want_line, want_field, want_msg)) in p.iter().zip(expect) {
        assert_eq!(field, want_field, "{p:#?}");
        assert!(msg.contains(want_msg), "{field}: {msg}");
        assert_eq!(*line, want_line, "{field}");
    }
}

#[test]
fn a_missing_key_points_at_its_token_not_at_the_next_one() {
    let text = format!(
        "api:\n  tokens:\n    - name: a\n      token: x\n    - name: b\n      token: y\n      scopes: [read]\n{REPOS}"
    );
    assert_eq!(
        problems(&text),
        [(
            Some(3),
            "api.tokens[a].scopes".to_string(),
            "is required: one or more of read, sync, admin (e.g. scopes: [sync])".to_string()
        )]
    );
}

#[test]
fn secrets_scopes_and_repos_become_the_model() {
    let sha = hex::encode(token_sha256("from-cli"));
    let text = format!(
        "api:\n  token: legacy\n  tokens:\n    - {{name: ci-docs, sha256: '{}', scopes: [sync], repos: [docs, 'docs-*'], expires: 2027-06-30}}\n    - {{name: mon, token: m, scopes: [READ], expires: '2027-06-30T12:00:00+02:00'}}\n{REPOS}",
        sha.to_uppercase()
    );
    let c = check(&text).unwrap();
    assert!(
        c.api.protect_reads,
        "the single api.token keeps reads protected"
    );
    let [legacy, ci, mon] = &c.api.tokens[..] else {
        panic!("{:?}", c.api.tokens)
    };
    assert_eq!(
        (legacy.name.as_str(), legacy.scopes),
        ("api.token", Scopes::ALL)
    );
    assert_eq!(legacy.sha256, token_sha256("legacy"));
    assert_eq!(ci.sha256, token_sha256("from-cli"));
    assert_eq!(ci.scopes.names(), ["sync"]);
    let globs: Vec<&str> = ci.repos.iter().flatten().map(|p| p.as_str()).collect();
    assert_eq!(globs, ["docs", "docs-*"]);
    assert_eq!(
        ci.expires.unwrap().to_rfc3339(),
        "2027-06-30T00:00:00+00:00"
    );
    assert_eq!(mon.scopes.names(), ["read"]);
    assert_eq!(
        mon.expires.unwrap().to_rfc3339(),
        "2027-06-30T10:00:00+00:00"
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("`docs-*` matches no repository"))
    );
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn protect_reads_defaults_and_needs_a_reader() {
    let only = |api: &str| check(&format!("api:\n{api}{REPOS}"));
    assert!(
        !only("  tokens: [{name: a, token: x, scopes: [sync]}]\n")
            .unwrap()
            .api
            .protect_reads
    );
    assert!(only("  token: x\n").unwrap().api.protect_reads);
    assert!(
        !only("  token: x\n  protect_reads: false\n")
            .unwrap()
            .api
            .protect_reads
    );
    let p = problems(&format!(
        "api:\n  protect_reads: true\n  tokens: [{{name: a, token: x, scopes: [sync]}}]\n{REPOS}"
    ));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].1, "api.protect_reads");
    assert_eq!(p[0].0, Some(2));
    let p = problems(&format!("api:\n  protect_reads: true\n{REPOS}"));
    assert!(
        p[0].2.contains("no token has the `read` or `admin` scope"),
        "{p:?}"
    );
}

#[test]
fn clashing_names_and_secrets_and_doubtful_entries_are_refused() {
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let cases = [
        (
            "  tokens:\n    - {name: a, token: x, scopes: [read]}\n    - {name: a, token: y, scopes: [read]}\n",
            "api.tokens[a].name",
            "names two tokens",
        ),
        (
            "  token: x\n  tokens:\n    - {name: b, token: x, scopes: [read]}\n",
            "api.tokens[b].sha256",
            "the same token as `api.token`",
        ),
        (
            "  tokens:\n    - {name: a, token: x, scopes: [admin], repos: [docs]}\n",
            "api.tokens[a].repos",
            "an admin token reaches every repository",
        ),
        (
            "  tokens:\n    - {name: a, token: x, scopes: [sync], repos: []}\n",
            "api.tokens[a].repos",
            "is empty",
        ),
        (
            "  tokens:\n    - {name: a, token: x, scopes: [sync], repos: ['[docs']}\n",
            "api.tokens[a].repos",
            "is not a name or glob",
        ),
        (
            "  tokens:\n    - {name: a, token: x, scopes: []}\n",
            "api.tokens[a].scopes",
            "is required",
        ),
        (
            "  tokens:\n    - {name: a, token: x}\n",
            "api.tokens[a].scopes",
            "is required",
        ),
        (
            "  tokens:\n    - {name: a, scopes: [read]}\n",
            "api.tokens[a].sha256",
            "a token needs `sha256`",
        ),
        (
            "  tokens:\n    - {name: 'a b', token: x, scopes: [read]}\n",
            "api.tokens[#1].name",
            "not a usable name",
        ),
        (
            "  tokens:\n    - {name: a, token: '', scopes: [read]}\n",
            "api.tokens[a].token",
            "is empty",
        ),
        (
            &format!("  tokens:\n    - {{name: a, sha256: {empty}, scopes: [read]}}\n"),
            "api.tokens[a].sha256",
            "an empty token",
        ),
    ];
    for (api, field, msg) in cases {
        let p = problems(&format!("api:\n{api}{REPOS}"));
        assert_eq!(p.len(), 1, "{api}: {p:#?}");
        assert_eq!(p[0].1, field, "{api}: {p:#?}");
        assert!(p[0].2.contains(msg), "{api}: {p:#?}");
    }
}

#[test]
fn toml_dates_and_json_strings_work() {
    let toml = "[api]\n[[api.tokens]]\nname = \"a\"\ntoken = \"x\"\nscopes = [\"sync\"]\nexpires = 2027-06-30\n[[repos]]\nname = \"docs\"\nurl = \"/o\"\ndirectory = \"/d\"\nsecret = \"s\"\n";
    let c = validate(
        parse_str(toml, Format::Toml).unwrap(),
        &Context::bare(Format::Toml, "/"),
    )
    .unwrap();
    assert_eq!(
        c.api.tokens[0].expires.unwrap().to_rfc3339(),
        "2027-06-30T00:00:00+00:00"
    );
    let toml = toml.replace("2027-06-30", "2027-06-30T12:00:00Z");
    let c = validate(
        parse_str(&toml, Format::Toml).unwrap(),
        &Context::bare(Format::Toml, "/"),
    )
    .unwrap();
    assert_eq!(
        c.api.tokens[0].expires.unwrap().to_rfc3339(),
        "2027-06-30T12:00:00+00:00"
    );
    let json = r#"{"api": {"tokens": [{"name": "a", "token": "x", "scopes": ["sync"], "expires": "2027-06-30"}]}, "repos": [{"name": "docs", "url": "/o", "directory": "/d", "secret": "s"}]}"#;
    let c = validate(
        parse_str(json, Format::Json).unwrap(),
        &Context::bare(Format::Json, "/"),
    )
    .unwrap();
    assert!(c.api.tokens[0].expires.is_some());
}
