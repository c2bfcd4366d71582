//! Fault suite, a full disk: the checkout lives on a small tmpfs the test mounts (root needed;
//! without it the test says why and passes by skipping), and the real `hookmirror serve` syncs
//! it while the filesystem is full, once while it fetches (a pack that does not fit) and once
//! while it writes the tree (a 3 MB file with only 1.5 MB free). Each time the sync is a
//! failure of kind `disk_full`, never a success; HEAD and the API stay at the last complete
//! commit; `on_success` does not run. Once space is freed, the forge's redelivery repairs the
//! checkout: HEAD, the API and the files agree, `git status` is clean, and `on_success` runs
//! for the new commit.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use serde_json::Value;
use support::daemon::*;
use support::faults::{Tmpfs, leftovers};
use support::forge::{Delivery, github_main_push};
use support::{git, read_file_lossy};

const SECRET: &str = "faults-disk-secret";

fn status(dir: &Path) -> String {
    git(
        dir,
        &[
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--untracked-files=all",
        ],
    )
}

/// Sends `d` and waits for the sync it causes to fail; returns the status.
#[track_caller]
fn fails_with_disk_full(server: &Daemon, d: &Delivery, failures: u64) -> Value {
    let r = server.deliver("/hooks/site", d);
    assert_eq!(r.status, 202, "{}", r.text);
    let s = server.wait_for("site", "a failed sync", |s| {
        s["failures"].as_u64() > Some(failures) && idle(s)
    });
    assert_eq!(s["last_error"]["kind"], "disk_full", "{s:#}");
    let message = s["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("No space left on device"), "{message}");
    eprintln!("disk_full: {message}");
    s
}

#[test]
fn a_full_disk_during_fetch_or_checkout_fails_as_disk_full_and_is_repaired() {
    let fs = match Tmpfs::mount("24m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs for the disk-full test: {why}");
            return;
        }
    };
    let remote = Remote::new();
    let origin = &remote.origin;
    let dir = fs.dir.join("site");
    let outside = scratch("disk");
    let log = outside.path().join("on_success.log");
    let keys = format!(
        "    branch: main\n    provider: github\n    secret: {SECRET}\n    on_success:\n      command: ['sh', '-c', 'echo \"$HOOKMIRROR_NEW\" >> {}']\n",
        log.display()
    );
    let server = Daemon::builder()
        .top("log: {level: info, output: stdout}\n")
        .repo(repo_yaml("site", &remote.url(), &dir, &keys))
        .start();
    let c0 = remote.head();
    server.wait_head("site", &dir, &c0);
    let forms = remote.forms();

    // 1. The fetch does not fit: 3 MB of random hex packs to about 1.6 MB; 512 KiB are free.
    let mut bytes = vec![0u8; 3 * 1024 * 1024 / 2];
    fastrand::fill(&mut bytes);
    let c1 = origin.commit("random.txt", &hex::encode(&bytes));
    fs.fill_leaving(512 * 1024);
    let (_, d1) = github_main_push(SECRET, &forms, &c0, &c1);
    let s = fails_with_disk_full(&server, &d1, 0);
    assert_eq!(s["commit"], c0.as_str(), "{s:#}");
    assert_eq!(head_of(&dir).as_deref(), Some(c0.as_str()));
    assert_eq!(status(&dir), "", "nothing of the new commit is in the tree");
    assert_eq!(read_file_lossy(&log).lines().last(), Some(c0.as_str()));

    fs.unfill();
    // The delivery failed, so the forge's redelivery is processed again.
    assert_eq!(server.deliver("/hooks/site", &d1).status, 202);
    let s = server.wait_for("site", "the repaired sync", |s| {
        s["commit"] == c1.as_str() && idle(s) && s["last_error"].is_null()
    });
    assert_eq!(head_of(&dir).as_deref(), Some(c1.as_str()), "{s:#}");
    assert_eq!(
        std::fs::read_to_string(dir.join("random.txt")).unwrap(),
        hex::encode(&bytes)
    );
    assert_eq!(status(&dir), "");
    assert_eq!(read_file_lossy(&log).lines().last(), Some(c1.as_str()));
    assert!(leftovers(&dir.join(".git")).is_empty());

    // 2. The tree does not fit: a 3 MB file that packs to almost nothing, 1.5 MB free.
    let line = "the same line, again and again, so that the pack stays small\n";
    let big = line.repeat(3 * 1024 * 1024 / line.len());
    let c2 = origin.commit("big.txt", &big);
    fs.fill_leaving(1536 * 1024);
    let failures = s["failures"].as_u64().unwrap();
    let (_, d2) = github_main_push(SECRET, &forms, &c1, &c2);
    let s = fails_with_disk_full(&server, &d2, failures);
    assert_eq!(
        s["commit"],
        c1.as_str(),
        "the API keeps the last complete commit: {s:#}"
    );
    assert_eq!(head_of(&dir).as_deref(), Some(c1.as_str()));
    let cut = std::fs::metadata(dir.join("big.txt")).map_or(0, |m| m.len());
    assert!(cut < big.len() as u64, "big.txt was written whole ({cut})");
    assert_eq!(
        read_file_lossy(&log).lines().last(),
        Some(c1.as_str()),
        "on_success did not run for a tree that was not written"
    );
    // A delivery that names a commit the checkout does not show must not be taken as done.
    let failures = s["failures"].as_u64().unwrap();
    let s = fails_with_disk_full(&server, &d2, failures);
    assert_eq!(s["commit"], c1.as_str());

    fs.unfill();
    assert_eq!(server.deliver("/hooks/site", &d2).status, 202);
    let s = server.wait_for("site", "the repaired tree", |s| {
        s["commit"] == c2.as_str() && idle(s) && s["last_error"].is_null()
    });
    assert_eq!(head_of(&dir).as_deref(), Some(c2.as_str()));
    assert_eq!(
        std::fs::metadata(dir.join("big.txt")).unwrap().len(),
        big.len() as u64
    );
    assert_eq!(status(&dir), "");
    assert_eq!(read_file_lossy(&log).lines().last(), Some(c2.as_str()));
    let kinds: Vec<&str> = s["last_recovery"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"publish_repaired"), "{s:#}");
    assert!(s["recoveries"].as_u64() >= Some(1), "{s:#}");
    assert!(
        server.logs().contains("recovered the checkout"),
        "a WARN line says so"
    );
    assert!(leftovers(&dir.join(".git")).is_empty());
    server.assert_clean_logs(&[SECRET]);
}
