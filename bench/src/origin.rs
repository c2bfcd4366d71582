//! The "forge": a bare repository served by `git daemon` on 127.0.0.1, with commits made by
//! plumbing (hash-object, update-index on a scratch index, write-tree, commit-tree) so that
//! making a change costs little and never touches a work tree.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::procs::{Proc, free_port, git, git_cmd, git_with, mkdir, wait_port};

/// Files in the initial tree: DIRS directories of FILES files of about 2 KiB each.
const DIRS: usize = 10;
const FILES: usize = 20;
/// Commits in the initial history.
pub const HISTORY: usize = 300;

pub struct Origin {
    /// Folder served by git daemon (`--base-path`).
    pub base: PathBuf,
    /// `base/origin.git`.
    pub bare: PathBuf,
    index: PathBuf,
    /// Newest commit made (not necessarily what `main` points at).
    pub tip: String,
    n: u64,
}

impl Origin {
    /// A bare repo whose `main` holds DIRS×FILES files and HISTORY commits (written with
    /// `git fast-import`): a real repository has a history, and fetch negotiation depends on it
    /// (a client with few commits sends few `have` lines and gets a single ACK back).
    pub fn new(root: &Path) -> Origin {
        let base = mkdir(&root.join("srv"));
        git(&base, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
        let bare = base.join("origin.git");
        let mut stream = Vec::new();
        let data = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(format!("data {}\n", text.len()).as_bytes());
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        };
        for n in 1..=HISTORY {
            stream.extend_from_slice(b"commit refs/heads/main\n");
            stream.extend_from_slice(format!("mark :{n}\n").as_bytes());
            stream.extend_from_slice(
                format!(
                    "committer Bench <bench@hookmirror.invalid> {} +0000\n",
                    1_700_000_000 + n * 60
                )
                .as_bytes(),
            );
            data(&mut stream, &format!("history {n}"));
            if n == 1 {
                for d in 0..DIRS {
                    for f in 0..FILES {
                        let line = format!(
                            "dir {d} file {f}: the quick brown fox jumps over the lazy dog\n"
                        );
                        stream.extend_from_slice(
                            format!("M 100644 inline src/d{d}/f{f}.txt\n").as_bytes(),
                        );
                        data(&mut stream, &line.repeat(2048 / line.len()));
                    }
                }
                stream.extend_from_slice(b"M 100644 inline README\n");
                data(&mut stream, "hookmirror benchmark repository\n");
            } else {
                stream.extend_from_slice(format!("from :{}\n", n - 1).as_bytes());
                let path = format!("src/d{}/f{}.txt", n % DIRS, (n / DIRS) % FILES);
                let line = format!("history {n}: the quick brown fox jumps over the lazy dog\n");
                stream.extend_from_slice(format!("M 100644 inline {path}\n").as_bytes());
                data(&mut stream, &line.repeat(2048 / line.len()));
            }
            stream.push(b'\n');
        }
        git_with(&bare, &["fast-import", "--quiet"], &[], Some(&stream));
        let tip = git(&bare, &["rev-parse", "refs/heads/main"]);
        let index = root.join("origin.index");
        git_with(
            &bare,
            &["read-tree", "main"],
            &[("GIT_INDEX_FILE", &index)],
            None,
        );
        Origin {
            base,
            bare,
            index,
            tip,
            n: 0,
        }
    }

    /// Makes a commit on top of the newest one that changes one existing file; does not move
    /// `main`. Returns the commit id.
    pub fn make_commit(&mut self) -> String {
        self.n += 1;
        let n = self.n;
        let path = format!(
            "src/d{}/f{}.txt",
            n as usize % DIRS,
            (n as usize / DIRS + 7) % FILES
        );
        let line = format!("change {n}: the quick brown fox jumps over the lazy dog\n");
        let content = line.repeat(2048 / line.len());
        let env: [(&str, &Path); 1] = [("GIT_INDEX_FILE", &self.index)];
        let blob = git_with(
            &self.bare,
            &["hash-object", "-w", "--stdin"],
            &[],
            Some(content.as_bytes()),
        );
        let info = format!("100644,{blob},{path}");
        git_with(
            &self.bare,
            &["update-index", "--cacheinfo", &info],
            &env,
            None,
        );
        let tree = git_with(&self.bare, &["write-tree"], &env, None);
        let msg = format!("change {n}");
        let commit = git(
            &self.bare,
            &["commit-tree", &tree, "-p", &self.tip, "-m", &msg],
        );
        self.tip = commit.clone();
        commit
    }

    /// Moves `main` with `git update-ref` (checking the old value).
    pub fn update_main(&self, new: &str, old: &str) {
        git(&self.bare, &["update-ref", "refs/heads/main", new, old]);
    }

    /// Moves `main` by writing the loose ref the way git does (lock file, then rename): no
    /// process spawn, so a burst of moves is as quick as the webhooks that follow them.
    pub fn write_main(&self, new: &str) {
        let refs = self.bare.join("refs/heads");
        let lock = refs.join("main.lock");
        std::fs::write(&lock, format!("{new}\n")).expect("write main.lock");
        std::fs::rename(&lock, refs.join("main")).expect("rename main.lock");
    }

    pub fn main(&self) -> String {
        git(&self.bare, &["rev-parse", "refs/heads/main"])
    }
}

/// `git daemon` serving `base` (read-only, export-all) on 127.0.0.1.
pub struct GitDaemon {
    pub port: u16,
    _proc: Proc,
}

impl GitDaemon {
    pub fn start(base: &Path, log: &Path) -> GitDaemon {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = git_cmd(base);
            cmd.arg("daemon")
                .arg("--reuseaddr")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg(base)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).expect("git daemon log"));
            let mut p = Proc::spawn("git daemon", &mut cmd);
            if wait_port(port, &mut p, Duration::from_secs(15)) {
                return GitDaemon { port, _proc: p };
            }
        }
        panic!("git daemon did not start; see {}", log.display());
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}
