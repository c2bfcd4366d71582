//! `hookmirror check` on the publishing keys: each wrong value, missing or unreadable key file is
//! reported with the file, the line and a message saying what is expected; a config using them
//! all passes.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

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

fn ssh_public_key(dir: &Path) -> String {
    let key = dir.join("k");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::read_to_string(dir.join("k.pub")).unwrap()
}

#[test]
fn wrong_verify_values_and_key_files_are_refused_with_their_line() {
    let tmp = scratch("verify-config");
    let d = tmp.path();
    let all = "`all` is not one of none, head, tag";
    refused(d, "    verify:\n      mode: all\n", 7, "verify.mode", all);
    let keys = "needs trusted keys";
    refused(d, "    verify:\n      mode: head\n", 7, "verify.mode", keys);
    let signers = d.join("allowed_signers");
    let body = format!(
        "    verify:\n      mode: tag\n      ssh_allowed_signers: {}\n",
        signers.display()
    );
    let tag = "`tag` verifies the annotated tag the repo follows: set `tag:`";
    refused(d, &body, 7, "verify.mode", tag);
    let head = body.replace("mode: tag", "mode: head");
    let unreadable = format!("cannot read {}", signers.display());
    refused(d, &head, 8, "verify.ssh_allowed_signers", &unreadable);
    std::fs::write(&signers, "dev@example.com ssh-ed25519 AAAAnot-a-key\n").unwrap();
    let unparsed = format!("{}: line 1: not an SSH public key", signers.display());
    refused(d, &head, 8, "verify.ssh_allowed_signers", &unparsed);
    let gpg = d.join("release.asc");
    std::fs::write(&gpg, ssh_public_key(d)).unwrap();
    let body = format!(
        "    verify:\n      mode: head\n      gpg_keys: [{}]\n",
        gpg.display()
    );
    let not_armored = format!("{}: is not an armored OpenPGP public key", gpg.display());
    refused(d, &body, 8, "verify.gpg_keys", &not_armored);
}

#[test]
fn wrong_pre_publish_values_are_refused_with_their_line() {
    let tmp = scratch("check-config");
    let d = tmp.path();
    let body = "    pre_publish:\n      command: []\n";
    refused(d, body, 7, "pre_publish.command", "must name a program");
    let body = "    pre_publish:\n      command: [make]\n      timeout: 0s\n";
    let range = "must be between 1ms and 24h, not 0s";
    refused(d, body, 8, "pre_publish.timeout", range);
}

#[test]
fn a_mirror_refuses_a_checkouts_keys() {
    let tmp = scratch("mirror-config");
    let d = tmp.path();
    let mirror =
        "    mode: mirror\n    branch: main\n    depth: 1\n    on_success:\n      touch: /tmp/x\n";
    let why = "does not apply to `mode: mirror` (a bare repository with every branch and tag, full history, no working tree)";
    refused(d, mirror, 7, "branch", why);
    refused(d, mirror, 8, "depth", why);
    refused(d, mirror, 10, "on_success.touch", why);
    let copy = "`copy` is not one of checkout, mirror";
    refused(d, "    mode: copy\n", 6, "mode", copy);
}

#[test]
fn a_config_with_every_publishing_key_passes() {
    let tmp = scratch("publish-config-ok");
    let d = tmp.path();
    let signers = d.join("allowed_signers");
    let key = ssh_public_key(d);
    let text = format!("# release managers\ndev@example.com namespaces=\"git\" {key}");
    std::fs::write(&signers, text).unwrap();
    let body = format!(
        "    publish: atomic\n    keep: 2\n    grace: 30s\n    verify:\n      mode: head\n      ssh_allowed_signers: {}\n    pre_publish:\n      command: [make, check]\n      timeout: 5m\n",
        signers.display()
    );
    let (code, out) = check(d, &body);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check(
        d,
        "    mode: mirror\n    on_success:\n      command: [sync-offsite]\n",
    );
    assert_eq!(code, 0, "{out}");
}
