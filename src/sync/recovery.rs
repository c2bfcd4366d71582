//! Making a checkout directory safe to sync: its state, hookmirror's own lock, what killed syncs
//! left behind (git's lock files, temp packs), and damage set aside. What it does is a
//! [`Recovery`], shown in the log, the status API and the CLI.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository, RepositoryOpenFlags};

use super::error::{ErrorKind, SyncError, from_io};

/// The directory's state before a sync.
pub(super) enum DirState {
    Missing,
    Empty,
    Checkout,
    Foreign(String),
}

/// The prefix of the folder in which a sync makes a new repository (then `<pid>`); see
/// `git::init`. A directory that holds only such folders is empty.
pub(super) const STAGING: &str = ".hookmirror-init-";

pub(super) fn inspect(dir: &Path) -> DirState {
    match std::fs::symlink_metadata(dir) {
        Err(_) => DirState::Missing,
        Ok(m) if !m.is_dir() => DirState::Foreign("it is not a directory".into()),
        Ok(_) => match std::fs::read_dir(dir) {
            Err(e) => DirState::Foreign(format!("it cannot be read: {e}")),
            Ok(entries) => {
                let mut entries = entries
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with(STAGING));
                if entries.next().is_none() {
                    DirState::Empty
                } else if dir.join(".git").exists() {
                    DirState::Checkout
                } else {
                    DirState::Foreign("it is not empty and is not a git checkout".into())
                }
            }
        },
    }
}

/// Something a sync did to bring a checkout back into shape before (or while) syncing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// A lock file git or libgit2 left behind when killed (the path under `.git`).
    LockRemoved(String),
    /// Temporary and orphaned pack files of killed fetches.
    TempFilesRemoved { files: usize, bytes: u64 },
    /// The repository was damaged (`damage`) and moved to `to`; nothing was deleted.
    MovedAside { to: PathBuf, damage: String },
    /// A fresh clone replaced a repository that was moved aside.
    Recloned { commit: String },
    /// A sync was interrupted while it wrote the tree of `commit`; the tree was written again
    /// before anything else.
    PublishRepaired { commit: String },
    /// A sync was interrupted after it published `commit` but before its `on_success` actions
    /// finished; they run again.
    ActionsResumed { commit: String },
    /// `publish: atomic`: trees a killed sync had half written (or half removed), removed.
    HalfMadeTreesRemoved { trees: usize },
}

impl Recovery {
    /// A stable name for the kind of action (for a metrics label and the API).
    pub fn kind(&self) -> &'static str {
        match self {
            Recovery::LockRemoved(_) => "lock_removed",
            Recovery::TempFilesRemoved { .. } => "temp_files_removed",
            Recovery::MovedAside { .. } => "moved_aside",
            Recovery::Recloned { .. } => "recloned",
            Recovery::PublishRepaired { .. } => "publish_repaired",
            Recovery::ActionsResumed { .. } => "actions_resumed",
            Recovery::HalfMadeTreesRemoved { .. } => "half_made_trees_removed",
        }
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |c: &str| c.chars().take(12).collect::<String>();
        match self {
            Recovery::LockRemoved(p) => write!(f, "removed stale {p}"),
            Recovery::TempFilesRemoved { files, bytes } => write!(
                f,
                "removed {files} temporary pack file{} of killed fetches ({bytes} bytes)",
                if *files == 1 { "" } else { "s" }
            ),
            Recovery::MovedAside { to, damage } => write!(
                f,
                "repository was damaged ({damage}); moved it to {}",
                to.display()
            ),
            Recovery::Recloned { commit } => write!(f, "cloned again at {}", short(commit)),
            Recovery::PublishRepaired { commit } => write!(
                f,
                "an interrupted sync had left the tree of {} half-written; wrote it again",
                short(commit)
            ),
            Recovery::ActionsResumed { commit } => write!(
                f,
                "an interrupted sync had not finished the on_success actions for {}; running them",
                short(commit)
            ),
            Recovery::HalfMadeTreesRemoved { trees } => write!(
                f,
                "removed {trees} tree{} a killed sync had half written",
                if *trees == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Lock files git and libgit2 take directly in `.git`.
const GIT_DIR_LOCKS: [&str; 7] = [
    "index.lock",
    "HEAD.lock",
    "packed-refs.lock",
    "shallow.lock",
    "config.lock",
    "FETCH_HEAD.lock",
    "ORIG_HEAD.lock",
];

/// Lock files git or libgit2 left behind when killed, and the temporary pack files of killed
/// fetches. Safe to remove: the caller holds hookmirror's own lock on the repository, so no sync
/// of ours runs, and no other writer is expected — except the `git gc --auto` a sync may have
/// started (see `git::maintain`): while it runs (its `gc.pid` names a live process) nothing is
/// removed.
pub(super) fn remove_leftovers(git_dir: &Path, done: &mut Vec<Recovery>) {
    if gc_running(git_dir) {
        tracing::debug!(dir = %git_dir.display(), "git gc is running; its lock files stay");
        return;
    }
    let mut locks: Vec<PathBuf> = GIT_DIR_LOCKS.iter().map(|n| git_dir.join(n)).collect();
    let mut stack = vec![git_dir.join("refs")];
    while let Some(dir) = stack.pop() {
        for p in entries(&dir) {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                locks.push(p);
            }
        }
    }
    // The indexer's `pack-<id>.idx.lock` and the like.
    let pack_dir = git_dir.join("objects/pack");
    let packs = entries(&pack_dir);
    locks.extend(
        packs
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "lock"))
            .cloned(),
    );
    for p in locks {
        if p.exists() && std::fs::remove_file(&p).is_ok() {
            let rel = p.strip_prefix(git_dir).unwrap_or(&p).display().to_string();
            done.push(Recovery::LockRemoved(rel));
        }
    }

    // libgit2 receives a pack into `objects/pack/pack_git2_XXXXXX` and renames it to
    // `pack-<id>.pack` before it writes the `.idx`; loose objects go through
    // `objects/tmp_object_git2_XXXXXX`. A kill leaves the temp file, or a pack without its index,
    // which no reader uses.
    let is_temp = |p: &Path, prefix: &str| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    };
    let orphan_pack = |p: &Path| {
        is_temp(p, "pack-")
            && p.extension().is_some_and(|x| x == "pack")
            && !p.with_extension("idx").exists()
    };
    let temp: Vec<PathBuf> = packs
        .into_iter()
        .filter(|p| is_temp(p, "pack_git2_") || orphan_pack(p))
        .chain(
            entries(&git_dir.join("objects"))
                .into_iter()
                .filter(|p| is_temp(p, "tmp_object_git2_")),
        )
        .collect();
    let (mut files, mut bytes) = (0, 0);
    for p in temp {
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        if std::fs::remove_file(&p).is_ok() {
            files += 1;
            bytes += size;
        }
    }
    if files > 0 {
        done.push(Recovery::TempFilesRemoved { files, bytes });
    }
}

/// The paths in `dir` (none when it cannot be read).
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|es| es.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// True when `git gc` runs in this repository: its `gc.pid` ("<pid> <host>") names a live
/// process.
fn gc_running(git_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(git_dir.join("gc.pid")) else {
        return false;
    };
    let Some(pid) = text
        .split_whitespace()
        .next()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Opens the checkout at exactly `dir`: never a repository in a parent directory, which would
/// be someone else's.
pub(super) fn open_exact(dir: &Path) -> Result<Repository, git2::Error> {
    Repository::open_ext(
        dir,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&str>(),
    )
}

/// Opens the checkout at exactly `dir` and checks that HEAD, its commit and tree can be read. An
/// error here means the repository is damaged.
pub(super) fn open_checked(dir: &Path) -> Result<Repository, git2::Error> {
    let repo = open_exact(dir)?;
    match repo.head() {
        Ok(head) => {
            let commit = head.peel_to_commit()?;
            commit.tree()?;
        }
        Err(e) if e.code() == ErrorCode::UnbornBranch => {}
        Err(e) => return Err(e),
    }
    drop(repo);
    open_exact(dir)
}

/// Moves a damaged checkout aside to `<dir>.corrupt-<timestamp>`, noting why; the caller clones
/// again. Nothing is deleted.
pub(super) fn move_aside(
    dir: &Path,
    damage: &str,
    done: &mut Vec<Recovery>,
) -> Result<(), SyncError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut aside = PathBuf::from(format!("{}.corrupt-{stamp}", dir.display()));
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{}.corrupt-{stamp}-{n}", dir.display()));
        n += 1;
    }
    std::fs::rename(dir, &aside).map_err(|e| {
        from_io(
            &format!("cannot move damaged repository {} aside", dir.display()),
            &e,
        )
    })?;
    done.push(Recovery::MovedAside {
        to: aside,
        damage: damage.to_string(),
    });
    Ok(())
}

/// The git directory of the checkout at `dir`: `.git`, or where a `.git` file points.
pub(super) fn git_dir_of(dir: &Path) -> PathBuf {
    let dot_git = dir.join(".git");
    if dot_git.is_dir() {
        return dot_git;
    }
    open_exact(dir)
        .map(|r| r.path().to_path_buf())
        .unwrap_or(dot_git)
}

/// The name of hookmirror's lock file in a git directory.
const LOCK_FILE: &str = "hookmirror.lock";

/// hookmirror's own lock on a checkout, held for the whole sync and its actions (released on
/// drop). It stops a one-shot `hookmirror sync` and the daemon from working on one directory at
/// once; everything that removes or moves files of a checkout runs under it.
pub(super) struct DirLock(#[allow(dead_code)] File);

/// Takes hookmirror's lock in `git_dir`, waiting for it when `wait`, else failing with
/// [`ErrorKind::Busy`] while another process holds it. `Ok(None)` when the lock file is no
/// longer the one at its path once the lock is taken — whoever held it moved the directory
/// aside — or the git directory is gone: inspect the directory again.
pub(super) fn lock(git_dir: &Path, wait: bool) -> Result<Option<DirLock>, SyncError> {
    let path = git_dir.join(LOCK_FILE);
    match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(file) => acquire(file, &path, wait),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(from_io(&format!("cannot open {}", path.display()), &e)),
    }
}

/// Locks `file`, opened at `path`; `None` when, by the time the lock is ours, `path` names
/// another file (or none).
fn acquire(file: File, path: &Path, wait: bool) -> Result<Option<DirLock>, SyncError> {
    let failed = |e: &std::io::Error| from_io(&format!("cannot lock {}", path.display()), e);
    if wait {
        file.lock().map_err(|e| failed(&e))?;
    } else {
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let checkout = path.parent().and_then(Path::parent).unwrap_or(path);
                return Err(SyncError::new(
                    ErrorKind::Busy,
                    format!(
                        "another process (a one-shot `hookmirror sync`?) is syncing {}",
                        checkout.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(&e)),
        }
    }
    let same = match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
        _ => false,
    };
    Ok(same.then_some(DirLock(file)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn git_dir() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path().join("d/.git");
        std::fs::create_dir_all(g.join("objects/pack")).unwrap();
        std::fs::create_dir_all(g.join("refs/heads")).unwrap();
        (tmp, g)
    }

    #[test]
    fn leftovers_of_killed_syncs_are_removed_and_listed() {
        let (_tmp, g) = git_dir();
        for f in [
            "index.lock",
            "refs/heads/main.lock",
            "objects/pack/pack-1.idx.lock",
        ] {
            std::fs::write(g.join(f), "").unwrap();
        }
        std::fs::write(g.join("objects/pack/pack_git2_Ab12Cd"), vec![0u8; 1000]).unwrap();
        std::fs::write(g.join("objects/tmp_object_git2_x"), vec![0u8; 10]).unwrap();
        std::fs::write(g.join("objects/pack/pack-2.pack"), vec![0u8; 100]).unwrap();
        // A complete pack stays.
        std::fs::write(g.join("objects/pack/pack-3.pack"), "p").unwrap();
        std::fs::write(g.join("objects/pack/pack-3.idx"), "i").unwrap();
        let mut done = Vec::new();
        remove_leftovers(&g, &mut done);
        let mut locks: Vec<String> = done
            .iter()
            .filter_map(|r| match r {
                Recovery::LockRemoved(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        locks.sort();
        assert_eq!(
            locks,
            [
                "index.lock",
                "objects/pack/pack-1.idx.lock",
                "refs/heads/main.lock"
            ]
        );
        assert!(done.contains(&Recovery::TempFilesRemoved {
            files: 3,
            bytes: 1110
        }));
        assert!(g.join("objects/pack/pack-3.pack").exists());
        assert!(g.join("objects/pack/pack-3.idx").exists());
        assert!(!g.join("objects/pack/pack_git2_Ab12Cd").exists());
    }

    #[test]
    fn a_running_gc_keeps_its_locks() {
        let (_tmp, g) = git_dir();
        std::fs::write(g.join("packed-refs.lock"), "").unwrap();
        std::fs::write(g.join("gc.pid"), format!("{} host\n", std::process::id())).unwrap();
        let mut done = Vec::new();
        remove_leftovers(&g, &mut done);
        assert!(done.is_empty() && g.join("packed-refs.lock").exists());
        // A gc.pid of a process that is gone (pid_max is at most 2^22) does not count.
        std::fs::write(g.join("gc.pid"), "4194305 host\n").unwrap();
        remove_leftovers(&g, &mut done);
        assert_eq!(done, [Recovery::LockRemoved("packed-refs.lock".into())]);
    }

    #[test]
    fn the_lock_excludes_and_notices_a_move_aside() {
        let (tmp, g) = git_dir();
        let held = lock(&g, false).unwrap().unwrap();
        let e = lock(&g, false).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Busy, "{e:?}");
        let checkout = tmp.path().join("d").display().to_string();
        assert!(e.message.ends_with(&checkout), "{e:?}");
        // A waiter opened the lock file; the holder moves the directory aside, a new one takes
        // its place, and the holder lets go: the waiter gets the old file's lock, which no
        // longer guards the checkout at the path.
        let path = g.join(LOCK_FILE);
        let waiter = File::options().write(true).open(&path).unwrap();
        std::fs::rename(tmp.path().join("d"), tmp.path().join("aside")).unwrap();
        std::fs::create_dir_all(&g).unwrap();
        let new_holder = lock(&g, false).unwrap().unwrap();
        drop(held);
        assert!(acquire(waiter, &path, true).unwrap().is_none());
        drop(new_holder);
        assert!(lock(&g, true).unwrap().is_some());
        assert!(lock(&tmp.path().join("gone/.git"), true).unwrap().is_none());
    }
}
