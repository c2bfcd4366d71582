//! `verify:` against the real `hookmirror serve`, with signatures made by the real tools: git's
//! `commit -S` / `tag -s` with `gpg.format=ssh` (ssh-keygen) and with GnuPG (a key made with
//! `gpg --batch --quick-gen-key` in a temp `GNUPGHOME`).
//!
//! For each kind: an unsigned push, a push signed by an unknown key and a signed push; only the
//! last one is published. An unverified tip leaves the published tree where it was, is a failure
//! in the API (`last_error.kind: unverified`, with the commit, the reason and the key it saw) and
//! is not retried; a key added to the trusted file is in force at the next sync (no reload).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::daemon::*;
use support::forge::{ZEROS, bytes, github, github_main_push, github_push, new_id};
use support::{git, git_env};

const SECRET: &str = "verify-secret-77e1";

/// An SSH key pair made by ssh-keygen: the private key's path and the public line.
struct SshKey {
    path: PathBuf,
    public: String,
    fingerprint: String,
}

fn ssh_key(dir: &Path, name: &str) -> SshKey {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .unwrap_or_else(|_| std::fs::read_to_string(format!("{}.pub", path.display())).unwrap());
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(format!("{}.pub", path.display()))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let fingerprint = listed.split_whitespace().nth(1).unwrap().to_string();
    SshKey {
        path,
        public: public.trim().to_string(),
        fingerprint,
    }
}

/// A commit in the work clone (signed with `sign`'s git options, or not), pushed to `main`.
fn commit(work: &Path, file: &str, sign: &[&str], env: &[(&str, &str)]) -> String {
    std::fs::write(work.join(file), format!("{file}\n")).unwrap();
    git(work, &["add", "--", file]);
    let mut args: Vec<&str> = sign.to_vec();
    args.extend(["commit", "-q", "-m", file]);
    if !sign.is_empty() {
        args.push("-S");
    }
    git_env(work, &args, env);
    git(
        work,
        &["push", "-q", "-f", "origin", "HEAD:refs/heads/main"],
    );
    git(work, &["rev-parse", "HEAD"])
}

fn ssh_signing(key: &SshKey) -> Vec<String> {
    vec![
        "-c".into(),
        "gpg.format=ssh".into(),
        "-c".into(),
        format!("user.signingkey={}", key.path.display()),
    ]
}

/// Pushes `commit` to the daemon and waits for the sync it causes to finish; its status.
fn deliver(server: &Daemon, remote: &Remote, before: &str, after: &str) -> Value {
    let syncs = server.status("site")["syncs"].as_u64().unwrap();
    let (_, d) = github_main_push(SECRET, &remote.forms(), before, after);
    assert_eq!(server.deliver("/hooks/site", &d).status, 202);
    server.wait_syncs("site", syncs + 1)
}

#[track_caller]
fn assert_unverified(s: &Value, commit: &str, reason: &str, published: &str) {
    assert_eq!(s["last_error"]["kind"], "unverified", "{s:#}");
    let msg = s["last_error"]["message"].as_str().unwrap();
    eprintln!("unverified: {msg}");
    assert!(msg.contains(commit) && msg.contains(reason), "{msg}");
    assert_eq!(s["commit"], published, "the published tree stays: {s:#}");
    assert_eq!(s["state"], "idle", "not retried: {s:#}");
}

fn daemon(remote: &Remote, dir: &Path, verify: &str, publish: &str) -> Daemon {
    let keys = format!(
        "    branch: main\n    provider: github\n    secret: {SECRET}\n    publish: {publish}\n    verify:\n{verify}    retry: {{attempts: 3, initial_delay: 0s}}\n"
    );
    Daemon::builder()
        .top("log: {level: info, output: stdout}\n")
        .repo(repo_yaml("site", &remote.url(), dir, &keys))
        .start()
}

#[test]
fn ssh_signed_commits_only_are_published() {
    let remote = Remote::new();
    let work = scratch("verify-ssh");
    let (trusted, stranger) = (
        ssh_key(work.path(), "trusted"),
        ssh_key(work.path(), "stranger"),
    );
    let signers = work.path().join("allowed_signers");
    std::fs::write(&signers, format!("dev@example.com {}\n", trusted.public)).unwrap();
    let w = &remote.origin.work;
    let sign = |k: &SshKey| ssh_signing(k);
    let first = commit(w, "a", &as_strs(&sign(&trusted)), &[]);
    let dir = work.path().join("site");
    let verify = format!(
        "      mode: head\n      ssh_allowed_signers: {}\n",
        signers.display()
    );
    for publish in ["atomic", "in_place"] {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&dir);
        let _ = std::fs::remove_dir_all(format!("{}.hookmirror", dir.display()));
        // The tip at start is signed by the trusted key: published.
        git(w, &["reset", "-q", "--hard", &first]);
        git(w, &["push", "-q", "-f", "origin", "HEAD:refs/heads/main"]);
        let server = daemon(&remote, &dir, &verify, publish);
        server.wait_head("site", &dir, &first);

        let unsigned = commit(w, "b", &[], &[]);
        let s = deliver(&server, &remote, &first, &unsigned);
        assert_unverified(&s, &unsigned, "it is not signed", &first);
        assert_eq!(head_of(&dir).as_deref(), Some(first.as_str()));
        assert_eq!(s["failures"], 1, "{s:#}");

        let by_stranger = commit(w, "c", &as_strs(&sign(&stranger)), &[]);
        let s = deliver(&server, &remote, &unsigned, &by_stranger);
        let reason = format!(
            "signed by SSH key {}, which is not an allowed signer",
            stranger.fingerprint
        );
        assert_unverified(&s, &by_stranger, &reason, &first);

        // The trusted key's signature over another commit's content: badly signed.
        let good = commit(w, "d0", &as_strs(&sign(&trusted)), &[]);
        let raw = support::try_git(w, &["cat-file", "commit", &good]).stdout;
        let raw = String::from_utf8(raw)
            .unwrap()
            .replace("\n\nd0\n", "\n\nd0, edited\n");
        let forged_file = work.path().join("forged");
        std::fs::write(&forged_file, raw).unwrap();
        let forged = git(
            w,
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                forged_file.to_str().unwrap(),
            ],
        );
        git(
            w,
            &[
                "push",
                "-q",
                "-f",
                "origin",
                &format!("{forged}:refs/heads/main"),
            ],
        );
        let s = deliver(&server, &remote, &by_stranger, &forged);
        let reason = format!(
            "the SSH signature by key {} does not verify over it",
            trusted.fingerprint
        );
        assert_unverified(&s, &forged, &reason, &first);

        let signed = commit(w, "d", &as_strs(&sign(&trusted)), &[]);
        let s = deliver(&server, &remote, &forged, &signed);
        assert!(s["last_error"].is_null(), "{s:#}");
        server.wait_head("site", &dir, &signed);
        assert!(
            server.logs().contains(&trusted.fingerprint),
            "the signer's key is logged"
        );

        // A key added to the file is trusted from the next sync on (the file is read each time).
        let next = commit(w, "e", &as_strs(&sign(&stranger)), &[]);
        let s = deliver(&server, &remote, &signed, &next);
        assert_unverified(&s, &next, "not an allowed signer", &signed);
        std::fs::write(
            &signers,
            format!(
                "dev@example.com {}\nops@example.com namespaces=\"git\" {}\n",
                trusted.public, stranger.public
            ),
        )
        .unwrap();
        let s = deliver(&server, &remote, &signed, &next);
        assert!(s["last_error"].is_null(), "{s:#}");
        server.wait_head("site", &dir, &next);
        std::fs::write(&signers, format!("dev@example.com {}\n", trusted.public)).unwrap();
        server.assert_clean_logs(&[SECRET]);
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// GnuPG in a temp home: makes keys, signs; the agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        // Short: gpg-agent's socket path must fit in a sockaddr_un.
        let home = tempfile::Builder::new()
            .prefix("hm-gpg-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Gpg { home }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new signing key without a passphrase; its fingerprint.
    fn key(&self, uid: &str) -> String {
        self.run(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]);
        let listed = self.run(&["--with-colons", "--list-keys", uid]);
        listed
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .unwrap()
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("GNUPGHOME", self.home.path().to_str().unwrap())]
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

#[test]
fn openpgp_signed_commits_only_are_published() {
    let gpg = Gpg::new();
    let trusted = gpg.key("Release <release@example.com>");
    let stranger = gpg.key("Stranger <stranger@example.com>");
    let remote = Remote::new();
    let work = scratch("verify-gpg");
    let key_file = work.path().join("release.asc");
    std::fs::write(&key_file, gpg.run(&["--armor", "--export", &trusted])).unwrap();
    let w = &remote.origin.work;
    let signing = |fpr: &str| {
        vec![
            "-c".to_string(),
            "gpg.program=gpg".into(),
            "-c".into(),
            format!("user.signingkey={fpr}"),
        ]
    };
    let env = gpg.env();
    let first = commit(w, "a", &as_strs(&signing(&trusted)), &env);
    let dir = work.path().join("site");
    let verify = format!(
        "      mode: head\n      gpg_keys: [{}]\n",
        key_file.display()
    );
    let server = daemon(&remote, &dir, &verify, "atomic");
    server.wait_head("site", &dir, &first);

    let unsigned = commit(w, "b", &[], &[]);
    let s = deliver(&server, &remote, &first, &unsigned);
    assert_unverified(&s, &unsigned, "it is not signed", &first);

    let by_stranger = commit(w, "c", &as_strs(&signing(&stranger)), &env);
    let s = deliver(&server, &remote, &unsigned, &by_stranger);
    let reason = format!("signed by OpenPGP key {stranger}, which is not among the trusted keys");
    assert_unverified(&s, &by_stranger, &reason, &first);

    let signed = commit(w, "d", &as_strs(&signing(&trusted)), &env);
    let s = deliver(&server, &remote, &by_stranger, &signed);
    assert!(s["last_error"].is_null(), "{s:#}");
    server.wait_head("site", &dir, &signed);
    assert!(
        server.logs().contains(&trusted),
        "the signer's key is logged"
    );
    server.assert_clean_logs(&[SECRET]);
}

#[test]
fn tag_mode_verifies_the_annotated_tag() {
    let remote = Remote::new();
    let work = scratch("verify-tag");
    let trusted = ssh_key(work.path(), "trusted");
    let signers = work.path().join("allowed_signers");
    std::fs::write(&signers, format!("rel@example.com {}\n", trusted.public)).unwrap();
    let w = &remote.origin.work;
    let sign = ssh_signing(&trusted);
    let tag = |signed: bool| {
        let mut args = as_strs(&sign);
        args.extend(["tag", "-f", "-m", "release"]);
        args.push(if signed { "-s" } else { "-a" });
        args.push("live");
        git(w, &args);
        git(
            w,
            &[
                "push",
                "-q",
                "-f",
                "origin",
                "refs/tags/live:refs/tags/live",
            ],
        );
        (
            git(w, &["rev-parse", "live"]),
            git(w, &["rev-parse", "live^{commit}"]),
        )
    };
    let (_, first) = tag(true);
    let dir = work.path().join("site");
    let keys = format!(
        "    tag: live\n    provider: github\n    secret: {SECRET}\n    verify:\n      mode: tag\n      ssh_allowed_signers: {}\n",
        signers.display()
    );
    let server = Daemon::builder()
        .repo(repo_yaml("site", &remote.url(), &dir, &keys))
        .start();
    server.wait_head("site", &dir, &first);
    let push_tag = |after: &str| {
        let syncs = server.status("site")["syncs"].as_u64().unwrap();
        let body = bytes(&github_push(
            &remote.forms(),
            "refs/tags/live",
            ZEROS,
            after,
        ));
        let d = github(SECRET, "push", &new_id(), body);
        assert_eq!(server.deliver("/hooks/site", &d).status, 202);
        server.wait_syncs("site", syncs + 1)
    };
    // The commits themselves are unsigned: only the tag counts.
    commit(w, "b", &[], &[]);
    let (unsigned_tag, _) = tag(false);
    let s = push_tag(&unsigned_tag);
    assert_unverified(&s, &unsigned_tag, "it is not signed", &first);
    commit(w, "c", &[], &[]);
    let (signed_tag, next) = tag(true);
    let s = push_tag(&signed_tag);
    assert!(s["last_error"].is_null(), "{s:#}");
    server.wait_head("site", &dir, &next);
}

#[test]
fn turning_verify_on_by_reload_checks_the_published_tip_at_once() {
    let remote = Remote::new();
    let work = scratch("verify-reload");
    let trusted = ssh_key(work.path(), "trusted");
    let signers = work.path().join("allowed_signers");
    std::fs::write(&signers, format!("dev@example.com {}\n", trusted.public)).unwrap();
    let dir = work.path().join("site");
    let keys = |verify: &str| {
        let keys =
            format!("    branch: main\n    provider: github\n    secret: {SECRET}\n{verify}");
        config_text("", &[repo_yaml("site", &remote.url(), &dir, &keys)])
    };
    let server = Daemon::builder().config(&keys("")).start();
    let unsigned = remote.head();
    server.wait_head("site", &dir, &unsigned);
    let verify = format!(
        "    verify:\n      mode: head\n      ssh_allowed_signers: {}\n",
        signers.display()
    );
    server.replace_config(&keys(&verify));
    server.wait_reloads(1);
    let s = server.wait_for("site", "the resync after the reload", |s| {
        !s["last_error"].is_null()
    });
    assert_unverified(&s, &unsigned, "it is not signed", &unsigned);
    let w = &remote.origin.work;
    let signed = commit(w, "a", &as_strs(&ssh_signing(&trusted)), &[]);
    let s = deliver(&server, &remote, &unsigned, &signed);
    assert!(s["last_error"].is_null(), "{s:#}");
    server.wait_head("site", &dir, &signed);
}

/// A trusted, validly signed tag object of an old release, pointed to by the followed tag's
/// name (what whoever controls the remote, or the path to it, can do), is not published: the
/// tag object's own name (which the signature covers) must be the followed tag's. It used to
/// publish the old release, since its signature verified.
#[test]
fn tag_mode_refuses_a_signed_tag_replayed_under_another_name() {
    let remote = Remote::new();
    let work = scratch("verify-replay");
    let trusted = ssh_key(work.path(), "trusted");
    let signers = work.path().join("allowed_signers");
    std::fs::write(&signers, format!("rel@example.com {}\n", trusted.public)).unwrap();
    let w = &remote.origin.work;
    let sign = ssh_signing(&trusted);
    let signed_tag = |name: &str| {
        let mut args = as_strs(&sign);
        args.extend(["tag", "-f", "-m", "release", "-s", name]);
        git(w, &args);
        let r = format!("refs/tags/{name}:refs/tags/{name}");
        git(w, &["push", "-q", "-f", "origin", &r]);
        git(w, &["rev-parse", name])
    };
    // An old release, signed and trusted; then the release the repo follows.
    commit(w, "old", &[], &[]);
    let old_release = signed_tag("v0.9");
    commit(w, "new", &[], &[]);
    signed_tag("live");
    let published = git(w, &["rev-parse", "live^{commit}"]);
    let dir = work.path().join("site");
    let keys = format!(
        "    tag: live\n    provider: github\n    secret: {SECRET}\n    verify:\n      mode: tag\n      ssh_allowed_signers: {}\n",
        signers.display()
    );
    let server = Daemon::builder()
        .repo(repo_yaml("site", &remote.url(), &dir, &keys))
        .start();
    server.wait_head("site", &dir, &published);

    // `live` now names the old release's tag object.
    let bare = &remote.origin.bare;
    git(bare, &["update-ref", "refs/tags/live", &old_release]);
    let syncs = server.status("site")["syncs"].as_u64().unwrap();
    let body = bytes(&github_push(
        &remote.forms(),
        "refs/tags/live",
        ZEROS,
        &old_release,
    ));
    let d = github(SECRET, "push", &new_id(), body);
    assert_eq!(server.deliver("/hooks/site", &d).status, 202);
    let s = server.wait_syncs("site", syncs + 1);
    assert_unverified(&s, &old_release, "is tag `v0.9`", &published);
    assert_eq!(head_of(&dir).as_deref(), Some(published.as_str()));
}
