//! The remote is the attacker (issue 19, the remote half): the real binary's one-shot `sync`
//! against servers that misbehave on purpose (tests/support/hostile.rs). What the user sees is
//! asserted: the result line on stdout and its kind, the files on disk, which port received
//! the token, the process's peak memory, how long it took.
//!
//! - defect 1: credentials go only to the configured origin, whatever a redirect says;
//! - defects 2 and 3: an advertisement or a pack that never ends stops at `limits.max_*` with
//!   kind `too_large`, under 100 MB of memory; a pack header declaring too many objects is
//!   refused at once;
//! - defect 11: an SSH server that accepts and never speaks fails at `stall_timeout` (or
//!   `sync_timeout`), not after a fixed 15 s;
//! - defect 13: a remote's `ERR` (and side-band 3) is kind `refused`, tried once;
//! - defect 5 (the remote side): the remote's words and its default branch's name never put a
//!   line break or a terminal code on stdout.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::daemon::{hookmirror_command, scratch};
use support::hostile::{Act, HostileGit, HostileHttp, Measured, Silent, run_measured};
use support::{Origin, git};

/// The test's ceiling on memory (the issue's bound).
const MAX_RSS_KIB: u64 = 100 * 1024;
/// A run past this much memory is killed: a regression must not take the machine with it.
const KILL_ABOVE_KIB: u64 = 400 * 1024;
/// A run longer than this is killed.
const RUN_LIMIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "hm-secret-token-19";

/// A config of one repository `h` at `url` in `home/h`, retried fast; `extra` holds more of
/// its keys (indented 4).
fn config(home: &Path, url: &str, extra: &str) -> PathBuf {
    let text = format!(
        "log: {{level: info}}\nrepos:\n  - name: h\n    url: '{url}'\n    directory: '{}'\n    insecure_no_secret: true\n    retry: {{attempts: 3, initial_delay: 10ms, max_delay: 20ms}}\n{extra}",
        home.join("h").display()
    );
    let path = home.join("hookmirror.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `hookmirror sync --config CONFIG`, measured.
fn sync(home: &Path, config: &Path) -> Measured {
    let mut cmd = hookmirror_command(home);
    cmd.arg("sync").arg("--config").arg(config);
    run_measured(cmd, KILL_ABOVE_KIB, RUN_LIMIT)
}

/// The run failed with `kind` on its one result line; returns that line.
fn failed_with<'a>(run: &'a Measured, kind: &str) -> &'a str {
    assert!(run.killed.is_none(), "{}", run.show());
    assert_eq!(run.code, Some(1), "{}", run.show());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one result line\n{}", run.show());
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields[..2], ["h", "FAILED"], "{}", run.show());
    assert!(
        fields[2].starts_with(&format!("{kind}: ")),
        "kind {kind}\n{}",
        run.show()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.show());
    lines[0]
}

fn attempts(line: &str) -> &str {
    line.split('\t').nth(3).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Defect 1: credentials
// ---------------------------------------------------------------------------------------------

#[test]
fn credentials_go_only_to_the_configured_origin_whatever_a_redirect_says() {
    let ours = Origin::new();
    ours.commit("ours.txt", "the configured origin\n");
    let theirs = Origin::new();
    theirs.commit("theirs.txt", "another port\n");
    let theirs_bare = theirs.bare.clone();
    let other = HostileHttp::start(move |_| Act::Real {
        repo: theirs_bare.clone(),
        symref: None,
    });
    let b = other.port();
    let auth = format!("    auth: {{username: deploy, token: {TOKEN}}}\n");

    // (what, Location given the configured port, followed?)
    type Case = (&'static str, fn(u16, u16) -> String, bool);
    let cases: [Case; 6] = [
        (
            "same origin",
            |_, _| "/real/r.git/info/refs?service=git-upload-pack".into(),
            true,
        ),
        (
            "other port",
            |_, b| format!("http://127.0.0.1:{b}/q/r.git/info/refs?service=git-upload-pack"),
            false,
        ),
        (
            "?@",
            |a, b| {
                format!(
                    "http://127.0.0.1:{b}?@127.0.0.1:{a}/q/r.git/info/refs?service=git-upload-pack"
                )
            },
            false,
        ),
        (
            "#@",
            |a, b| {
                format!(
                    "http://127.0.0.1:{b}#@127.0.0.1:{a}/q/r.git/info/refs?service=git-upload-pack"
                )
            },
            false,
        ),
        (
            "userinfo",
            |a, _| {
                format!("http://evil:pw@127.0.0.1:{a}/real/r.git/info/refs?service=git-upload-pack")
            },
            false,
        ),
        (
            "scheme change",
            |a, _| format!("https://127.0.0.1:{a}/real/r.git/info/refs?service=git-upload-pack"),
            false,
        ),
    ];
    for (what, location, followed) in cases {
        let home = scratch("redirect");
        let ours_bare = ours.bare.clone();
        let slot = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
        let loc = slot.clone();
        let configured = HostileHttp::start(move |r| {
            if r.target.starts_with("/real/") {
                Act::Real {
                    repo: ours_bare.clone(),
                    symref: None,
                }
            } else {
                Act::Redirect(loc.get().cloned().unwrap_or_default())
            }
        });
        slot.set(location(configured.port(), b)).unwrap();
        let conf = config(home.path(), &configured.url(), &auth);
        let run = sync(home.path(), &conf);
        let dir = home.path().join("h");
        assert!(
            other.authorized().is_empty() && other.requests().is_empty(),
            "{what}: port {b} was sent {:?}\n{}",
            other.requests(),
            run.show()
        );
        assert!(
            !dir.join("theirs.txt").exists(),
            "{what}: another port's content"
        );
        assert!(
            !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
            "{what}: the token was printed\n{}",
            run.show()
        );
        if followed {
            assert_eq!(run.code, Some(0), "{what}\n{}", run.show());
            assert!(dir.join("ours.txt").is_file(), "{what}\n{}", run.show());
            // The login went with every request to the configured origin, GET and POST.
            let seen = configured.requests();
            assert!(seen.iter().any(|r| r.method == "POST"), "{seen:?}");
            assert!(seen.iter().all(|r| r.authorization.is_some()), "{seen:?}");
        } else {
            let line = failed_with(&run, "transient");
            assert!(line.contains("not followed"), "{what}: {line}");
            assert!(
                !configured
                    .requests()
                    .iter()
                    .any(|r| r.target.starts_with("/real/")),
                "{what}: the redirect was followed\n{}",
                run.show()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Defects 2 and 3: sizes and memory
// ---------------------------------------------------------------------------------------------

/// The run failed with `too_large`, tried once, naming `key`, within the memory bound.
fn too_large(run: &Measured, key: &str) {
    let line = failed_with(run, "too_large");
    assert!(line.contains(key), "names {key}: {line}");
    assert_eq!(attempts(line), "1 attempt", "not retried: {line}");
    assert!(
        run.peak_kib < MAX_RSS_KIB,
        "peak RSS {} MiB\n{}",
        run.peak_kib / 1024,
        run.show()
    );
    eprintln!(
        "{key}: failed after {:?}, peak RSS {} MiB",
        run.elapsed,
        run.peak_kib / 1024
    );
}

#[test]
fn an_endless_advertisement_stops_at_its_limit_in_bounded_memory() {
    // Default limits, over git:// and smart HTTP: hookmirror's negotiation keeps only the
    // tracked ref, and stops at limits.max_advertisement (64MiB).
    let git_remote = HostileGit::start(Act::EndlessAdvertisement);
    let home = scratch("endless-adv");
    let run = sync(
        home.path(),
        &config(home.path(), &git_remote.url(), "    sync_timeout: 60s\n"),
    );
    too_large(&run, "limits.max_advertisement");
    let http_remote = HostileHttp::start(|_| Act::EndlessAdvertisement);
    let home = scratch("endless-adv-http");
    let run = sync(
        home.path(),
        &config(home.path(), &http_remote.url(), "    sync_timeout: 60s\n"),
    );
    too_large(&run, "limits.max_advertisement");
    // libgit2's fetch over hookmirror's transport (`depth` takes it) keeps every ref it reads:
    // held by the stream's count of refs.
    let home = scratch("endless-adv-libgit2");
    let extra = "    sync_timeout: 60s\n    depth: 1\n    limits: {max_refs: 100000}\n";
    let run = sync(home.path(), &config(home.path(), &git_remote.url(), extra));
    too_large(&run, "limits.max_refs");
}

/// Bytes of the files under `dir`.
fn disk_use(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_use(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

#[test]
fn a_pack_that_never_ends_stops_at_max_pack_in_bounded_memory_and_disk() {
    // A valid header (100,000 objects), those objects, then more without end.
    let act = Act::Pack {
        declared: 100_000,
        objects: None,
    };
    let extra = "    sync_timeout: 60s\n    limits: {max_pack: 24MiB}\n";
    let git_remote = HostileGit::start(act.clone());
    let http_remote = HostileHttp::start(move |_| act.clone());
    // hookmirror's negotiation over git:// and HTTP; libgit2's own transport, held by its
    // progress callback.
    let libgit2 = format!("{extra}    transport: libgit2\n");
    for (what, url, extra) in [
        ("git://", git_remote.url(), extra),
        ("http", http_remote.url(), extra),
        ("libgit2", git_remote.url(), libgit2.as_str()),
    ] {
        let home = scratch("endless-pack");
        too_large(
            &sync(home.path(), &config(home.path(), &url, extra)),
            "limits.max_pack",
        );
        // What was received is not left behind.
        let used = disk_use(&home.path().join("h"));
        assert!(used < 1 << 20, "{what}: {used} bytes left in the checkout");
    }
}

#[test]
fn a_pack_header_declaring_too_many_objects_is_refused_at_once() {
    let remote = HostileGit::start(Act::Pack {
        declared: u32::MAX,
        objects: Some(0),
    });
    for extra in ["", "    transport: libgit2\n"] {
        let home = scratch("objects");
        let run = sync(home.path(), &config(home.path(), &remote.url(), extra));
        too_large(&run, "limits.max_objects (5000000)");
        assert!(
            run.stdout.contains("declares 4294967295 objects"),
            "{}",
            run.show()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Defect 11: SSH that never speaks
// ---------------------------------------------------------------------------------------------

#[test]
fn an_ssh_server_that_never_speaks_fails_at_stall_or_sync_timeout() {
    let silent = Silent::start();
    let home = scratch("ssh-silent");
    let key = home.path().join("id_ed25519");
    support::run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    );
    let known = home.path().join("known_hosts");
    std::fs::write(&known, "").unwrap();
    let url = format!("ssh://git@127.0.0.1:{}/r.git", silent.port());
    let auth = format!(
        "    auth: {{ssh_key: '{}', known_hosts: '{}'}}\n    retry: {{attempts: 1}}\n",
        key.display(),
        known.display()
    );
    // (timeouts, the limit the message names, the most the run may take)
    for (timeouts, names, within) in [
        (
            "    stall_timeout: 2s\n    sync_timeout: 60s\n",
            "stall_timeout (2s)",
            8,
        ),
        (
            "    stall_timeout: 60s\n    sync_timeout: 3s\n",
            "sync_timeout",
            9,
        ),
    ] {
        let text = format!(
            "log: {{level: info}}\nrepos:\n  - name: h\n    url: '{url}'\n    directory: '{}'\n    insecure_no_secret: true\n{auth}{timeouts}",
            home.path().join("h").display()
        );
        let conf = home.path().join("hookmirror.yaml");
        std::fs::write(&conf, text).unwrap();
        let run = sync(home.path(), &conf);
        let line = failed_with(&run, "timeout");
        assert!(line.contains(names), "names {names}: {line}");
        assert!(
            run.elapsed < Duration::from_secs(within),
            "took {:?} (the fixed 15 s?)\n{}",
            run.elapsed,
            run.show()
        );
    }
    assert!(silent.connections() >= 2);
}

// ---------------------------------------------------------------------------------------------
// Defects 13 and 5: a remote's refusal, and its words
// ---------------------------------------------------------------------------------------------

/// Text a remote could send to forge a log line or move a terminal's cursor.
const FORGED: &[u8] = b"access denied\nINFO sync repo=h result=\"ok\"\r\x1b[2J\x1b[31mowned";

/// Nothing of `FORGED` reached stdout raw; its escaped form did.
fn escaped_on_one_line(run: &Measured) {
    assert!(
        !run.stdout.contains(['\r', '\u{1b}']) && run.stdout.lines().count() == 1,
        "raw control characters on stdout\n{}",
        run.show()
    );
    assert!(
        !run.stderr.contains('\u{1b}')
            && !run
                .stderr
                .lines()
                .any(|l| l.starts_with("INFO sync repo=h")),
        "a forged line in the log\n{}",
        run.show()
    );
}

#[test]
fn a_remote_s_err_is_a_refusal_tried_once_and_its_words_stay_on_one_line() {
    let err = HostileGit::start(Act::Err(FORGED.to_vec()));
    let home = scratch("err");
    let run = sync(home.path(), &config(home.path(), &err.url(), ""));
    let line = failed_with(&run, "refused");
    assert_eq!(attempts(line), "1 attempt", "{line}");
    assert!(line.contains("access denied\\nINFO sync"), "{line}");
    escaped_on_one_line(&run);
    assert_eq!(err.connections(), 1, "not retried");

    // Side-band 3 in the answer, over smart HTTP.
    let band3 = HostileHttp::start(|_| Act::Band3(FORGED.to_vec()));
    let home = scratch("band3");
    let run = sync(home.path(), &config(home.path(), &band3.url(), ""));
    let line = failed_with(&run, "refused");
    assert_eq!(attempts(line), "1 attempt", "{line}");
    assert!(line.contains("\\u{1b}[2J"), "{line}");
    escaped_on_one_line(&run);
}

#[test]
fn a_default_branch_named_with_control_characters_is_not_followed_and_shown_escaped() {
    let origin = Origin::new();
    let tip = origin.commit("index.html", "v1\n");
    let remote = HostileGit::start(Act::Real {
        repo: origin.bare.clone(),
        symref: Some(b"refs/heads/ma\x1b[2Jin\rINFO\nforged".to_vec()),
    });
    let home = scratch("symref");
    let run = sync(home.path(), &config(home.path(), &remote.url(), ""));
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_eq!(git(&home.path().join("h"), &["rev-parse", "HEAD"]), tip);
    // Not a name git would take: HEAD is followed detached, and the name shown escaped (it is
    // escaped where it enters; the log quotes a value with backslashes, doubling them).
    let fields: Vec<&str> = run.stdout.trim_end().split('\t').collect();
    assert_eq!(fields[..2], ["h", "ok"], "{}", run.show());
    assert_eq!(fields[3], "HEAD", "{}", run.show());
    assert!(
        run.stderr
            .contains(r#"symref="refs/heads/ma\\u{1b}[2Jin\\rINFO\\nforged""#),
        "{}",
        run.show()
    );
    escaped_on_one_line(&run);
}
