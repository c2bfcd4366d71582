//! `hookmirror check` on the publishing keys: each wrong value, missing or unreadable key file is
//! reported with the file, the line and a message saying what is expected; a config using them
//! all passes.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::daemon::{hookmirror_command, scratch};

/// `hookmirror check` on `body` (a repo's keys after the common ones), written to `dir`:
/// exit code and everything it printed.
fn check(dir: &Path, body: &str) -> (i32, String) {
    let config = dir.join("hookmirror.yaml");
    let text = format!(
        "repos:\n  - name: site\n    url: /srv/git/site.git\n    directory: {}/site\n    secret: s\n{body}",
        dir.display()
    );
    std::fs::write(&config, text).unwrap();
    let out = hookmirror_command(dir)
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), all)
}

#[track_caller]
fn refused(dir: &Path, body: &str, line: usize, field: &str, message: &str) {
    let (code, out) = check(dir, body);
    assert_ne!(code, 0, "{body}\n{out}");
    let want = format!("hookmirror.yaml:{line}: repo `site`: `{field}`: {message}");
    assert!(out.contains(&want), "want {want:?} in:\n{out}");
}

#[test]
fn wrong_publish_values_are_refused_with_their_line() {
    let tmp = scratch("publish-config");
    let d = tmp.path();
    let sideways = "`sideways` is not one of in_place, atomic";
    refused(d, "    publish: sideways\n", 6, "publish", sideways);
    let only = "applies to `publish: atomic` only";
    refused(d, "    keep: 3\n", 6, "keep", only);
    let body = "    publish: atomic\n    keep: 500\n";
    refused(d, body, 7, "keep", "must be between 0 and 100, not 500");
    let body = "    publish: atomic\n    grace: soon\n";
    refused(d, body, 7, "grace", "`soon` is not a duration");
    let body = "    publish: atomic\n    submodules: true\n";
    let why = "is not supported with `publish: atomic`";
    refused(d, body, 7, "submodules", why);
}

#[test]
fn a_config_with_every_publishing_key_passes() {
    let tmp = scratch("publish-config-ok");
    let d = tmp.path();
    let body = "    publish: atomic\n    keep: 2\n    grace: 30s\n".to_string();
    let (code, out) = check(d, &body);
    assert_eq!(code, 0, "{out}");
}
