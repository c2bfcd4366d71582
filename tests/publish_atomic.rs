//! `publish: atomic` against the real `hookmirror serve`: a tree per commit beside the
//! directory, `directory` a symlink flipped with one `rename(2)`.
//!
//! - A reader that resolves the link once per pass and reads all 50 files of the tree, in a
//!   loop, during 50 quick pushes that each rewrite every file, never sees two commits at once
//!   (nor a missing file); the same reader against `publish: in_place` does (the test can fail).
//! - `keep` and `grace` decide which replaced trees stay (and a reload changes them);
//!   `on_success` runs after the flip.
//! - `kill -9` at random points of syncs leaves the link naming a complete tree; the next start
//!   removes half-made trees. `HOOKMIRROR_FAULT_ROUNDS` sets the rounds (CI: 12).
//! - A plain checkout in `directory` is refused with how to migrate, and nothing is deleted.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;
use support::daemon::*;
use support::faults::{rounds, seed, write_tree_round};
use support::forge::github_main_push;
use support::{git, wait_until};

const SECRET: &str = "atomic-secret-41c9";
/// Files in the reader test's tree, and about how large each is.
const FILES: usize = 50;
const SIZE: usize = 8192;
const PUSHES: usize = 50;

fn keys(publish: &str, extra: &str) -> String {
    format!(
        "    branch: main\n    provider: github\n    secret: {SECRET}\n    publish: {publish}\n{extra}"
    )
}

/// The path of file `i` of [`write_tree_round`]'s tree.
fn file(i: usize) -> String {
    format!("tree/d{:02}/f{i:05}.txt", i % 40)
}

/// The round each file of the tree under `root` names (`None`: a file could not be read).
fn rounds_in(root: &Path) -> Option<Vec<String>> {
    (0..FILES)
        .map(|i| {
            let text = std::fs::read_to_string(root.join(file(i))).ok()?;
            let first = text.lines().next()?;
            Some(first.rsplit("round ").next()?.to_string())
        })
        .collect()
}

/// What the reader saw.
#[derive(Debug, Default)]
struct Seen {
    reads: usize,
    /// Passes whose files named more than one commit.
    mixed: usize,
    /// Passes where a file was missing or unreadable.
    failed: usize,
}

/// Reads the whole tree through `dir` in a loop until `stop`: the link resolved once per pass,
/// as a web server resolves a document root for a request.
fn reader(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let Ok(root) = std::fs::canonicalize(&dir) else {
                continue;
            };
            seen.reads += 1;
            match rounds_in(&root) {
                None => seen.failed += 1,
                Some(r) if r.iter().any(|x| *x != r[0]) => seen.mixed += 1,
                Some(_) => {}
            }
        }
        seen
    })
}

/// 50 pushes, each rewriting every file and each published before the next, while the reader
/// reads; what it saw.
fn read_during_pushes(publish: &str) -> Seen {
    let remote = Remote::new();
    write_tree_round(&remote.origin, FILES, SIZE, 0);
    let m = Mirror::on(remote)
        .keys(&keys(publish, ""))
        .daemon(Daemon::builder().top("log: {level: info, output: stdout}\n"))
        .start();
    let forms = m.remote.forms();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = reader(m.dir.clone(), stop.clone());
    let mut tip = m.remote.head();
    for round in 1..=PUSHES {
        let before = tip.clone();
        tip = write_tree_round(&m.remote.origin, FILES, SIZE, round);
        let (_, d) = github_main_push(SECRET, &forms, &before, &tip);
        assert_eq!(m.daemon.deliver("/hooks/site", &d).status, 202);
        let published = wait_until(WAIT, || head_of(&m.dir).as_deref() == Some(tip.as_str()));
        assert!(published, "round {round}: {:#}", m.daemon.status("site"));
    }
    stop.store(true, Ordering::Relaxed);
    let seen = handle.join().unwrap();
    let s = m.daemon.wait_idle("site");
    assert_eq!(s["commit"], tip.as_str(), "{s:#}");
    assert!(s["last_error"].is_null(), "{s:#}");
    eprintln!("publish: {publish}: {seen:?}");
    seen
}

#[test]
fn a_reader_never_sees_two_commits_at_once_through_the_link() {
    let seen = read_during_pushes("atomic");
    assert!(seen.reads >= PUSHES, "the reader barely ran: {seen:?}");
    assert_eq!((seen.mixed, seen.failed), (0, 0), "{seen:?}");
}

#[test]
fn the_same_reader_sees_a_mix_in_place() {
    let seen = read_during_pushes("in_place");
    assert!(
        seen.mixed + seen.failed > 0,
        "in place, a reader during 50 rewrites of every file should catch one half-written: {seen:?}"
    );
}

/// The trees in the store beside `dir`, sorted.
fn trees(dir: &Path) -> Vec<String> {
    let store = PathBuf::from(format!("{}.hookmirror", dir.display()));
    let mut names: Vec<String> = std::fs::read_dir(store.join("trees"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn replaced_trees_stay_per_keep_and_grace_and_on_success_runs_after_the_flip() {
    let work = scratch("atomic-keep");
    let log = work.path().join("on_success.log");
    // The command reads the published tree through the link: after the flip it is the new one.
    let on_success = format!(
        "    on_success:\n      command: ['sh', '-c', 'echo \"$HOOKMIRROR_NEW $(head -n 1 \"$HOOKMIRROR_DIR/tree/d00/f00000.txt\")\" >> {}']\n",
        log.display()
    );
    let remote = Remote::new();
    write_tree_round(&remote.origin, FILES, 64, 0);
    let config = |grace: &str, keep: usize, url: &str, dir: &Path| {
        let extra = format!("    keep: {keep}\n    grace: {grace}\n{on_success}");
        config_text(
            "log: {level: info, output: stdout}\n",
            &[repo_yaml("site", url, dir, &keys("atomic", &extra))],
        )
    };
    let m = Mirror::on(remote)
        .config(|url, dir| config("1h", 2, url, dir))
        .start();
    let forms = m.remote.forms();
    let meta = std::fs::symlink_metadata(&m.dir).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "{} is a symlink",
        m.dir.display()
    );
    let mut tip = m.remote.head();
    let mut commits = vec![tip.clone()];
    let push = |tip: &mut String, round: usize| {
        let before = tip.clone();
        *tip = write_tree_round(&m.remote.origin, FILES, 64, round);
        let (_, d) = github_main_push(SECRET, &forms, &before, tip);
        assert_eq!(m.daemon.deliver("/hooks/site", &d).status, 202);
        m.daemon.wait_head("site", &m.dir, tip);
    };
    for round in 1..=4 {
        push(&mut tip, round);
        commits.push(tip.clone());
        let ran = support::read_file_lossy(&log);
        assert_eq!(
            ran.lines().last(),
            Some(format!("{tip} file 0 round {round}").as_str()),
            "on_success saw the new tree through the link"
        );
    }
    // Within the grace period every tree stays.
    assert_eq!(trees(&m.dir).len(), 5, "{:?}", trees(&m.dir));

    // A reload: no grace, keep 1. The next sync keeps the published tree and one before it.
    let body = config("0s", 1, &m.remote.url(), &m.dir);
    m.daemon.replace_config(&body);
    m.daemon.wait_reloads(1);
    push(&mut tip, 5);
    commits.push(tip.clone());
    let want: Vec<String> = {
        let mut v = vec![commits[4].clone(), commits[5].clone()];
        v.sort();
        v
    };
    assert_eq!(trees(&m.dir), want);
    // What is published is exactly the commit.
    let root = std::fs::canonicalize(&m.dir).unwrap();
    let r = rounds_in(&root).unwrap();
    assert!(r.iter().all(|x| x == "5"), "{r:?}");
}

#[test]
fn kill_9_at_random_points_leaves_the_link_on_a_complete_tree() {
    const BIG: usize = 1500;
    let remote = Remote::new();
    write_tree_round(&remote.origin, BIG, 512, 0);
    let work = scratch("atomic-kill");
    let dir = work.path().join("big");
    let repo = repo_yaml(
        "big",
        &remote.url(),
        &dir,
        &keys("atomic", "    grace: 0s\n"),
    );
    let daemon = |initialise: bool| {
        Daemon::builder()
            .top(&format!(
                "initialise: {initialise}\nlog: {{level: info, output: stdout}}\n"
            ))
            .repo(repo.clone())
            .start()
    };
    let forms = remote.forms();
    let mut rng = fastrand::Rng::with_seed(seed("atomic kills"));
    let mut tip = remote.head();
    let server = daemon(true);
    server.wait_head("big", &dir, &tip);
    let t = std::time::Instant::now();
    let before = tip.clone();
    tip = write_tree_round(&remote.origin, BIG, 512, 1);
    let (_, d) = github_main_push(SECRET, &forms, &before, &tip);
    assert_eq!(server.deliver("/hooks/big", &d).status, 202);
    server.wait_head("big", &dir, &tip);
    let span = t.elapsed().mul_f64(1.3);
    drop(server);

    // A tree named by a commit is whole: every file names the same round, all are there.
    let complete = |round_of: &dyn Fn(&str) -> Option<usize>| {
        let root = std::fs::canonicalize(&dir).unwrap();
        let name = root.file_name().unwrap().to_string_lossy().into_owned();
        let round = round_of(&name[..40]).expect("the link names a commit of the origin");
        let mut files = 0;
        for e in walk(&root.join("tree")) {
            let text = std::fs::read_to_string(&e).unwrap();
            assert!(
                text.starts_with("file ")
                    && text
                        .lines()
                        .next()
                        .unwrap()
                        .ends_with(&format!(" round {round}")),
                "{} in the tree of round {round}: {:?}",
                e.display(),
                text.lines().next()
            );
            files += 1;
        }
        assert_eq!(files, BIG, "every file of round {round} is there");
    };
    let mut history = vec![(remote.head(), 1usize)];
    let mut found_half_made = 0;
    for round in 2..rounds(12) + 2 {
        let before = tip.clone();
        tip = write_tree_round(&remote.origin, BIG, 512, round);
        history.push((tip.clone(), round));
        let (_, d) = github_main_push(SECRET, &forms, &before, &tip);
        let server = daemon(false);
        assert_eq!(server.deliver("/hooks/big", &d).status, 202);
        std::thread::sleep(span.mul_f64(rng.f64()));
        server.signal(Signal::SIGKILL);
        server.wait_exit(WAIT).expect("killed");
        drop(server);
        // Right after the kill: the link names a complete tree (the old commit or the new).
        complete(&|c: &str| history.iter().find(|(h, _)| h == c).map(|(_, r)| *r));
        if trees(&dir).iter().any(|t| t.starts_with('.')) {
            found_half_made += 1;
        }
        let server = daemon(false);
        let r = server.deliver("/hooks/big", &d);
        assert!(
            r.status == 202 || r.status == 200,
            "{} {}",
            r.status,
            r.text
        );
        let st = server.wait_for("big", "the pushed commit, idle and fine", |st| {
            st["commit"] == tip.as_str() && idle(st) && st["last_error"].is_null()
        });
        assert_eq!(head_of(&dir).as_deref(), Some(tip.as_str()), "{st:#}");
        complete(&|c: &str| (c == tip).then_some(round));
        let left: Vec<String> = trees(&dir)
            .into_iter()
            .filter(|t| t.starts_with('.'))
            .collect();
        assert!(
            left.is_empty(),
            "round {round}: half-made trees left: {left:?}"
        );
        let store = PathBuf::from(format!("{}.hookmirror", dir.display()));
        assert!(!store.join("link.tmp").exists(), "round {round}");
        server.assert_clean_logs(&[SECRET]);
    }
    eprintln!(
        "kills that left a half-made tree behind (removed by the next start): {found_half_made}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_plain_checkout_in_the_directory_is_refused_with_how_to_migrate() {
    let remote = Remote::new();
    let work = scratch("atomic-refuse");
    let dir = work.path().join("site");
    git(work.path(), &["clone", "-q", &remote.origin.url(), "site"]);
    let server = Daemon::builder()
        .repo(repo_yaml("site", &remote.url(), &dir, &keys("atomic", "")))
        .start();
    let st = server.wait_for("site", "a failed sync", |s| !s["last_error"].is_null());
    assert_eq!(st["last_error"]["kind"], "foreign_directory", "{st:#}");
    let msg = st["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("an in-place checkout"), "{msg}");
    assert!(
        msg.contains(&format!("mv {} {}.old", dir.display(), dir.display())),
        "{msg}"
    );
    assert!(
        dir.join(".git").is_dir() && dir.join("README").is_file(),
        "nothing deleted"
    );
    // Migrated as the message says: the next sync publishes through the link.
    std::fs::rename(&dir, work.path().join("site.old")).unwrap();
    let head = remote.head();
    let (_, d) = github_main_push(SECRET, &remote.forms(), &head, &head);
    assert_eq!(server.deliver("/hooks/site", &d).status, 202);
    server.wait_head("site", &dir, &remote.head());
    assert!(
        std::fs::symlink_metadata(&dir)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn force_publishes_a_fresh_tree_of_the_same_commit() {
    let token = "atomic-ops-token-7f3a9c2e5b1d";
    let m = Mirror::on(Remote::new())
        .keys(&keys("atomic", ""))
        .daemon(
            Daemon::builder()
                .top(&format!("api: {{token: {token}}}\n"))
                .token(token),
        )
        .start();
    let tip = m.remote.head();
    let before = std::fs::read_link(&m.dir).unwrap();
    let readme = std::fs::read_to_string(m.dir.join("README")).unwrap();
    // Edited by hand through the link: the published tree no longer is the commit's.
    std::fs::write(m.dir.join("README"), "defaced\n").unwrap();
    let r = m
        .daemon
        .post_auth("/api/repos/site/sync?force=true&wait=true", Some(token));
    let v = r.expect(200);
    assert_eq!(
        (&v["ok"], &v["changed"]),
        (&true.into(), &false.into()),
        "{v:#}"
    );
    assert_eq!(v["commit"], tip.as_str(), "{v:#}");
    let after = std::fs::read_link(&m.dir).unwrap();
    assert_ne!(after, before, "a fresh tree");
    assert_eq!(head_of(&m.dir).as_deref(), Some(tip.as_str()));
    assert_eq!(
        std::fs::read_to_string(m.dir.join("README")).unwrap(),
        readme
    );
    assert_eq!(
        trees(&m.dir).len(),
        2,
        "the defaced tree is kept as the replaced one"
    );
}

/// Which replaced trees stay is decided on every sync, also one that changes nothing, and a
/// forced sync's replaced copy of the published commit is no rollback tree: with `keep: 1`,
/// `grace: 2s`, the first sync after the grace period removes what is beyond `keep` though it
/// brings nothing new (it used to remove old trees only after a new flip), and a forced sync
/// keeps the one rollback tree (it used to count the previous copy of the same commit as the
/// kept tree and remove the rollback tree).
#[test]
fn unchanged_and_forced_syncs_sweep_but_keep_the_rollback_tree() {
    let token = "atomic-sweep-token-3b8e1d";
    let m = Mirror::on(Remote::new())
        .keys(&keys("atomic", "    keep: 1\n    grace: 2s\n"))
        .daemon(
            Daemon::builder()
                .top(&format!("api: {{token: {token}}}\n"))
                .token(token),
        )
        .start();
    let sync = |query: &str| {
        let v = m
            .daemon
            .post_auth(
                &format!("/api/repos/site/sync?wait=true{query}"),
                Some(token),
            )
            .expect(200);
        assert_eq!(v["ok"], true, "{v:#}");
    };
    let past_grace = || std::thread::sleep(std::time::Duration::from_millis(2300));
    let c0 = m.remote.head();
    let c1 = m.remote.advance("one");
    sync("");
    let c2 = m.remote.advance("two");
    sync("");
    let mut all = vec![c0, c1.clone(), c2.clone()];
    all.sort();
    assert_eq!(
        trees(&m.dir),
        all,
        "within the grace period every tree stays"
    );

    past_grace();
    sync("");
    let mut want = vec![c1.clone(), c2.clone()];
    want.sort();
    assert_eq!(
        trees(&m.dir),
        want,
        "an unchanged sync after the grace period"
    );

    sync("&force=true");
    let forced = std::fs::read_link(&m.dir).unwrap();
    let forced = forced.file_name().unwrap().to_string_lossy().into_owned();
    assert!(forced.starts_with(&format!("{c2}-")), "{forced}");
    let left = trees(&m.dir);
    assert!(left.contains(&c1), "the rollback tree stays: {left:?}");
    assert_eq!(
        left.len(),
        3,
        "the replaced copy stays within grace: {left:?}"
    );

    past_grace();
    sync("");
    let mut want = vec![c1, forced];
    want.sort();
    assert_eq!(trees(&m.dir), want);
    assert_eq!(head_of(&m.dir).as_deref(), Some(c2.as_str()));
}
