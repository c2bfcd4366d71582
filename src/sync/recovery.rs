//! Making a checkout directory safe to sync: its state, stale and own locks, and damage set aside.

use std::fs::File;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository, RepositoryOpenFlags};

use super::error::{ErrorKind, SyncError};

/// The directory's state before a sync.
pub(super) enum DirState {
    Missing,
    Empty,
    Checkout,
    Foreign(String),
}

pub(super) fn inspect(dir: &Path) -> DirState {
    match std::fs::symlink_metadata(dir) {
        Err(_) => DirState::Missing,
        Ok(m) if !m.is_dir() => DirState::Foreign("it is not a directory".into()),
        Ok(_) => match std::fs::read_dir(dir) {
            Err(e) => DirState::Foreign(format!("it cannot be read: {e}")),
            Ok(mut entries) => {
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

/// Lock files git leaves behind when killed. Safe to remove: the caller holds hookmirror's own
/// lock on the repository, so no sync of ours is running, and no other writer is expected.
pub(super) fn remove_stale_locks(git_dir: &Path, notes: &mut Vec<String>) {
    for name in [
        "index.lock",
        "HEAD.lock",
        "packed-refs.lock",
        "shallow.lock",
        "config.lock",
        "FETCH_HEAD.lock",
        "ORIG_HEAD.lock",
    ] {
        let p = git_dir.join(name);
        if p.exists() && std::fs::remove_file(&p).is_ok() {
            notes.push(format!("removed stale {name}"));
        }
    }
    let mut stack = vec![git_dir.join("refs")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") && std::fs::remove_file(&p).is_ok()
            {
                let rel = p.strip_prefix(git_dir).unwrap_or(&p).display().to_string();
                notes.push(format!("removed stale {rel}"));
            }
        }
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

/// Moves a damaged checkout aside to `<dir>.corrupt-<timestamp>` and notes it with `damage`; the
/// caller clones again. Nothing is deleted.
pub(super) fn move_aside(
    dir: &Path,
    damage: &str,
    notes: &mut Vec<String>,
) -> Result<(), SyncError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut aside = PathBuf::from(format!("{}.corrupt-{stamp}", dir.display()));
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{}.corrupt-{stamp}-{n}", dir.display()));
        n += 1;
    }
    std::fs::rename(dir, &aside).map_err(|e| {
        SyncError::new(
            ErrorKind::Other,
            format!(
                "cannot move damaged repository {} aside: {e}",
                dir.display()
            ),
        )
    })?;
    notes.push(format!(
        "repository was damaged ({damage}); moved it to {} and cloned again",
        aside.display()
    ));
    Ok(())
}

/// hookmirror's own lock on a checkout, held for the whole sync (released on drop). It stops a
/// one-shot `hookmirror sync` and the daemon from working on one directory at once.
pub(super) struct DirLock(#[allow(dead_code)] File);

pub(super) fn lock_dir(git_dir: &Path) -> Result<DirLock, SyncError> {
    let path = git_dir.join("hookmirror.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            SyncError::new(
                ErrorKind::Other,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
    file.lock().map_err(|e| {
        SyncError::new(
            ErrorKind::Other,
            format!("cannot lock {}: {e}", path.display()),
        )
    })?;
    Ok(DirLock(file))
}
