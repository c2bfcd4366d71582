//! Issue 14, against the real binary and real git remotes: scoped, expiring, hashed API tokens
//! (each scope in and out of its repositories, expired, wrong, one byte off), `protect_reads`
//! with bearer and basic auth, a removed token refused right after a reload, `hookmirror token
//! new`, and `?force=true` repairing a checkout whose files were edited by hand.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use hookmirror::config::{Context, Format, Repo, parse_str, validate};
use hookmirror::sync::{SyncOptions, sync_once};
use support::{Origin, git, rev_parse};

fn engine_repo(url: &str, dir: &Path, extra: &str) -> Repo {
    let text = format!(
        "repos:\n  - name: t\n    url: '{url}'\n    directory: '{}'\n    insecure_no_secret: true\n{extra}",
        dir.display()
    );
    let raw = parse_str(&text, Format::Yaml).unwrap();
    let mut c = validate(raw, &Context::bare(Format::Yaml, "/")).unwrap();
    c.repos.remove(0)
}

/// Edits `file` in place keeping its size and modification time, as a hand edit within the
/// same second may: the index's cached stat data then still says "unchanged".
fn edit_keeping_stat(path: &Path, content: &str) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(before.len() as usize, content.len());
    std::fs::write(path, content).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
}

/// The engine's repair path: a forced sync rewrites every file that differs from the commit,
/// also one whose size and time did not change, while HEAD stays at the tip.
#[test]
fn a_forced_sync_rewrites_files_edited_by_hand_while_head_stayed() {
    hookmirror::sync::init_libgit2();
    let origin = Origin::new();
    origin.commit("index.html", "<h1>release</h1>\n");
    let tip = origin.commit("app/config.txt", "mode=prod\n");
    let tmp = support::daemon::scratch("force-engine");
    let dir = tmp.path().join("site");
    let r = engine_repo(&origin.url(), &dir, "");
    sync_once(&r, &SyncOptions::default()).unwrap();
    assert_eq!(rev_parse(&dir, "HEAD").unwrap(), tip);

    // Hand damage: a changed file (same size, same time), a changed file (new size), a deleted
    // file, an untracked file.
    edit_keeping_stat(&dir.join("index.html"), "<h1>HACKED!</h1>\n");
    std::fs::write(dir.join("app/config.txt"), "mode=debug\nextra=1\n").unwrap();
    std::fs::remove_file(dir.join("README")).unwrap();
    std::fs::write(dir.join("stray.txt"), "left by hand\n").unwrap();

    // With the tip as hint (a redelivered webhook) the sync may skip everything; forced, it
    // may not.
    let s = sync_once(
        &r,
        &SyncOptions {
            hints: Some(vec![tip.clone()]),
            force: true,
        },
    )
    .unwrap();
    assert!(s.fetched && !s.changed(), "{s:?}");
    assert_eq!(rev_parse(&dir, "HEAD").unwrap(), tip);
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).unwrap(),
        "<h1>release</h1>\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app/config.txt")).unwrap(),
        "mode=prod\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).unwrap(),
        "initial\n"
    );
    assert_eq!(git(&dir, &["status", "--porcelain"]), "?? stray.txt");
}
