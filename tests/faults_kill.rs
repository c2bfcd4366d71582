//! Fault suite, kills: `kill -9` of `hookmirror serve`, and of a one-shot `hookmirror sync`, at
//! random points while it brings a 2,000-file checkout to a commit that rewrites every file —
//! mid-clone (every fifth round starts from no checkout), mid-fetch, mid-checkout, mid-actions.
//! After each kill the daemon is started again (with `initialise: false` or `true`, in turn) and
//! the forge redelivers the same push, or the one-shot sync is run again. Every round must
//! converge: the API shows the commit that is HEAD, `git status` is clean (nothing modified,
//! nothing untracked), `git fsck` passes, no lock file or temp pack is left, nothing was moved
//! aside, and `on_success` ran for the commit. Before the redelivery, an API that shows a clean
//! checkout must not be looking at a half-written one.
//!
//! `HOOKMIRROR_FAULT_ROUNDS` sets the rounds per test (CI: 20; the long run: 500);
//! `HOOKMIRROR_FAULT_SEED` replays a run's random kill points (each test prints its seed).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use support::daemon::*;
use support::faults::{leftovers, rounds, seed, write_tree_round};
use support::forge::github_main_push;
use support::{git, try_git};

const SECRET: &str = "faults-kill-secret";
/// Files in the tree, and about how large each is: checking it out takes a while.
const FILES: usize = 2000;
const SIZE: usize = 1024;
/// Rounds per test in CI.
const CI_ROUNDS: usize = 20;

/// The repo's keys: `on_success` appends the commit it ran for to `log`.
fn keys(log: &Path) -> String {
    format!(
        "    branch: main\n    provider: github\n    secret: {SECRET}\n    on_success:\n      command: ['sh', '-c', 'echo \"$HOOKMIRROR_NEW\" >> {}']\n",
        log.display()
    )
}

/// A checkout, the origin it follows, and where `on_success` writes.
struct Setup {
    remote: Remote,
    work: tempfile::TempDir,
    dir: PathBuf,
    log: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let remote = Remote::new();
        write_tree_round(&remote.origin, FILES, SIZE, 0);
        let work = scratch("kill");
        let dir = work.path().join("big");
        let log = work.path().join("on_success.log");
        Setup {
            remote,
            work,
            dir,
            log,
        }
    }

    fn repo(&self) -> String {
        repo_yaml("big", &self.remote.url(), &self.dir, &keys(&self.log))
    }

    fn daemon(&self, initialise: bool) -> Daemon {
        Daemon::builder()
            .top(&format!(
                "initialise: {initialise}\nlog: {{level: info, output: stdout}}\n"
            ))
            .repo(self.repo())
            .start()
    }

    /// `git status` of the checkout without taking any lock (the daemon may be at work).
    fn status(&self) -> String {
        git(
            &self.dir,
            &[
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=all",
            ],
        )
    }

    /// Everything a converged round must show, at `commit`.
    #[track_caller]
    fn assert_converged(&self, round: usize, commit: &str, api: Option<&serde_json::Value>) {
        assert_eq!(
            head_of(&self.dir).as_deref(),
            Some(commit),
            "round {round}: HEAD"
        );
        let status = self.status();
        assert!(
            status.is_empty(),
            "round {round}: git status is not clean:\n{}",
            status.lines().take(10).collect::<Vec<_>>().join("\n")
        );
        let fsck = try_git(&self.dir, &["fsck", "--no-progress", "--no-dangling"]);
        assert!(
            fsck.status.success(),
            "round {round}: git fsck: {}",
            String::from_utf8_lossy(&fsck.stderr)
        );
        let sample = std::fs::read_to_string(self.dir.join("tree/d07/f00007.txt")).unwrap();
        let want = git(
            &self.dir,
            &["show", &format!("{commit}:tree/d07/f00007.txt")],
        );
        assert_eq!(sample.trim_end(), want, "round {round}: a file's content");
        let left = leftovers(&self.dir.join(".git"));
        assert!(left.is_empty(), "round {round}: left behind: {left:?}");
        let aside: Vec<_> = std::fs::read_dir(self.work.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert!(
            aside.is_empty(),
            "round {round}: a kill is no damage, yet {aside:?}"
        );
        let ran = support::read_file_lossy(&self.log);
        assert_eq!(
            ran.lines().last(),
            Some(commit),
            "round {round}: on_success ran for the commit"
        );
        if let Some(s) = api {
            assert_eq!(s["commit"], commit, "round {round}: {s:#}");
            assert!(s["last_error"].is_null(), "round {round}: {s:#}");
        }
    }
}

/// A random point within `span`.
fn point(rng: &mut fastrand::Rng, span: Duration) -> Duration {
    span.mul_f64(rng.f64())
}

#[test]
fn kill_9_of_the_daemon_at_random_points_always_converges() {
    let s = Setup::new();
    let mut rng = fastrand::Rng::with_seed(seed("daemon kills"));
    let forms = s.remote.forms();

    // An undisturbed round first, to know how long a sync of the whole tree takes.
    let mut tip = s.remote.head();
    let server = s.daemon(true);
    server.wait_head("big", &s.dir, &tip);
    let before = tip.clone();
    tip = write_tree_round(&s.remote.origin, FILES, SIZE, 1);
    let (_, d) = github_main_push(SECRET, &forms, &before, &tip);
    let t = Instant::now();
    assert_eq!(server.deliver("/hooks/big", &d).status, 202);
    server.wait_head("big", &s.dir, &tip);
    let span = t.elapsed().mul_f64(1.3);
    drop(server);
    eprintln!("a sync of the whole tree takes {span:?} / 1.3");

    let rounds = rounds(CI_ROUNDS);
    let mut interrupted = 0;
    for round in 2..rounds + 2 {
        if round % 5 == 0 {
            std::fs::remove_dir_all(&s.dir).unwrap();
        }
        let before = tip.clone();
        tip = write_tree_round(&s.remote.origin, FILES, SIZE, round);
        let (_, d) = github_main_push(SECRET, &forms, &before, &tip);
        let server = s.daemon(false);
        assert_eq!(server.deliver("/hooks/big", &d).status, 202);
        std::thread::sleep(point(&mut rng, span));
        server.signal(Signal::SIGKILL);
        server.wait_exit(WAIT).expect("killed");
        drop(server);

        let initialise = round % 2 == 0;
        let server = s.daemon(initialise);
        if !initialise {
            // Nothing runs: what the API shows must be so.
            let st = server.status("big");
            if s.dir.join(".git").exists() && !s.status().is_empty() {
                interrupted += 1;
                assert_eq!(
                    st["last_error"]["kind"], "interrupted",
                    "round {round}: a half-written tree shown as fine: {st:#}"
                );
            }
        }
        // The forge did not get its answer in time (or wants to be sure): the same delivery.
        let r = server.deliver("/hooks/big", &d);
        assert!(
            r.status == 202 || r.status == 200,
            "round {round}: {} {}",
            r.status,
            r.text
        );
        let st = server.wait_for("big", "the pushed commit, idle and fine", |st| {
            st["commit"] == tip.as_str() && idle(st) && st["last_error"].is_null()
        });
        s.assert_converged(round, &tip, Some(&st));
        server.assert_clean_logs(&[SECRET]);
    }
    eprintln!("{rounds} rounds, {interrupted} found half-written after the kill");
}

/// `hookmirror sync` with `config`, in its own process group.
fn one_shot(config: &Path, home: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    hookmirror_command(home)
        .args(["sync", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_of_a_one_shot_sync_at_random_points_always_converges() {
    let s = Setup::new();
    let mut rng = fastrand::Rng::with_seed(seed("one-shot kills"));
    let home = scratch("home");
    let config = home.path().join("hookmirror.yaml");
    std::fs::write(
        &config,
        with_listen(support::free_port(), &config_text("", &[s.repo()])),
    )
    .unwrap();

    let mut tip = String::new();
    let mut span = Duration::ZERO;
    for round in 0..2 {
        tip = write_tree_round(&s.remote.origin, FILES, SIZE, round + 1);
        let t = Instant::now();
        let out = one_shot(&config, home.path()).wait_with_output().unwrap();
        span = t.elapsed().mul_f64(1.3);
        assert!(out.status.success(), "{out:?}");
    }
    s.assert_converged(1, &tip, None);
    eprintln!("a one-shot sync of the whole tree takes {span:?} / 1.3");

    let rounds = rounds(CI_ROUNDS);
    for round in 3..rounds + 3 {
        if round % 5 == 0 {
            std::fs::remove_dir_all(&s.dir).unwrap();
        }
        tip = write_tree_round(&s.remote.origin, FILES, SIZE, round);
        let mut child = one_shot(&config, home.path());
        std::thread::sleep(point(&mut rng, span));
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();

        let out = one_shot(&config, home.path()).wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: the sync after the kill failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("big\tok\t"), "round {round}: {stdout}");
        s.assert_converged(round, &tip, None);
    }
}
