//! Atomic publishing (`publish: atomic`): the repository is a bare one beside the directory
//! (`<directory>.hookmirror/repo.git`), each published commit is checked out into a tree of its
//! own (`<directory>.hookmirror/trees/<commit>`), and `directory` is a symlink to the published
//! tree, replaced with one `rename(2)` of a new symlink over it. A reader that resolves the link
//! once sees one whole commit, never a mix.
//!
//! Crash safety: a tree is made under a temporary name and renamed into place only once it is
//! complete, so a tree named by a commit is always whole; the link only ever names such a tree;
//! a kill leaves at worst a half-made temporary tree (or temporary link), removed by the next
//! sync under the lock. Earlier trees: the `keep` most recently replaced stay, older ones are
//! removed once they were replaced `grace` ago (by the first sync after that), so a reader in
//! the middle of a request finishes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};

use super::credentials::AuthState;
use super::error::{ErrorKind, SyncError, classify, from_io};
use super::fetch::fetch;
use super::git::{
    Locked, SyncOptions, Synced, check_remote, has_actions, missing_hints, stored_url, up_to_date,
};
use super::publish::{self, Found, Marker};
use super::recovery::{Recovery, STAGING, lock, remove_leftovers};
use crate::config::Repo;

/// Appended to the directory's name for the folder beside it that holds the repository and the
/// trees.
pub const STORE_SUFFIX: &str = ".hookmirror";
/// The bare repository in the store.
const REPO: &str = "repo.git";
/// The published trees, one per commit.
const TREES: &str = "trees";
/// When each replaced tree stopped being published: an empty file per tree, its mtime.
const RETIRED: &str = "retired";
/// A tree being written (`trees/.new-<name>`); never published under this name.
const NEW_PREFIX: &str = ".new-";
/// A tree being removed (`trees/.old-<name>`), renamed first so it never looks complete.
const OLD_PREFIX: &str = ".old-";
/// The new symlink before it is renamed over the directory.
const LINK_TMP: &str = "link.tmp";

/// The store beside `dir`: `<dir>.hookmirror`.
pub fn store_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(STORE_SUFFIX);
    dir.with_file_name(name)
}

/// Syncs `repo` through its store and flips the link; keeps the lock (see [`Locked`]).
pub(super) fn sync_locked(
    repo: &Repo,
    opts: &SyncOptions,
    limits: super::transport::Limits,
    done: &mut Vec<Recovery>,
) -> Result<Locked, SyncError> {
    let dir = &repo.directory;
    refuse_plain_directory(dir)?;
    let store = store_of(dir);
    let git = open_or_init(&store, repo)?;
    let Some(held) = lock(git.path(), !opts.no_wait)? else {
        return Err(SyncError::new(
            ErrorKind::Other,
            format!(
                "{} was replaced while this sync waited for its lock",
                store.display()
            ),
        ));
    };
    remove_leftovers(git.path(), done);
    remove_half_made(&store, done);
    check_remote(&git, repo)?;
    let now = publish::linked(dir);
    let mut old = now;
    if let Found::Marker(m) = publish::read_marker(git.path())
        && Some(m.new) == now
    {
        // Flipped, but the actions did not finish: they run for what this sync publishes.
        if has_actions(repo) {
            done.push(Recovery::ActionsResumed {
                commit: m.new.to_string(),
            });
        }
        old = m.old;
    }
    let locked = |synced: Synced| Locked::new(synced, git.path().to_path_buf(), held);
    let unchanged = |fetched: bool, remote_ref: String, new: Oid| Synced {
        old: old.map(|o| o.to_string()),
        new: new.to_string(),
        remote_ref,
        cloned: false,
        fetched,
        notes: Vec::new(),
        missing_hints: Vec::new(),
        refs_changed: Vec::new(),
    };
    // A sync that changes nothing still removes trees replaced `grace` ago: the first sync
    // after the grace period does, whatever it brings.
    let sweep_published = || {
        if let Some(current) = published_tree(dir) {
            sweep(&store, &current, repo.deploy.keep, repo.deploy.grace);
        }
    };
    if let Some(now) = now
        && up_to_date(&git, opts, now)
    {
        sweep_published();
        let remote_ref = repo.target.remote_ref().unwrap_or_else(|| "HEAD".into());
        return Ok(locked(unchanged(false, remote_ref, now)));
    }
    let (remote_ref, commit) = fetch(&git, repo, limits)?;
    super::verify::check(&git, repo, commit)?;
    let missing_hints = missing_hints(&git, opts, commit);
    if now == Some(commit) && !opts.force {
        sweep_published();
        let synced = Synced {
            missing_hints,
            ..unchanged(true, remote_ref, commit)
        };
        return Ok(locked(synced));
    }
    let marker = Marker {
        old,
        new: commit,
        remote_ref: remote_ref.clone(),
    };
    publish::write_marker(git.path(), &marker)?;
    let (tree, made) = build_tree(&git, &store, commit, opts.force)?;
    if let Some(check) = &repo.deploy.pre_publish {
        let checked = super::pre_publish::run(repo, check, &tree, &remote_ref, old, commit);
        if checked.is_err() && made {
            remove_tree(&tree);
        }
        checked?;
    }
    flip(dir, &store, &tree)?;
    let current = tree.file_name().unwrap_or_default().to_string_lossy();
    sweep(&store, &current, repo.deploy.keep, repo.deploy.grace);
    let notes = super::git::maintain(git.path()).into_iter().collect();
    Ok(locked(Synced {
        old: old.map(|o| o.to_string()),
        new: commit.to_string(),
        remote_ref,
        cloned: now.is_none(),
        fetched: true,
        notes,
        missing_hints,
        refs_changed: Vec::new(),
    }))
}

/// `directory` must be our symlink (or missing). An empty directory is removed (`rmdir` fails
/// on anything else); a directory with files in it, a file or a symlink of someone else's is
/// refused, never deleted.
fn refuse_plain_directory(dir: &Path) -> Result<(), SyncError> {
    match std::fs::symlink_metadata(dir) {
        Err(_) => Ok(()),
        Ok(m) if m.file_type().is_symlink() && is_ours(dir) => Ok(()),
        Ok(m) if m.is_dir() && std::fs::remove_dir(dir).is_ok() => Ok(()),
        Ok(m) => {
            let what = match (
                m.file_type().is_symlink(),
                m.is_dir(),
                dir.join(".git").exists(),
            ) {
                (true, _, _) => "a symlink to somewhere else",
                (false, true, true) => "an in-place checkout",
                (false, true, false) => "a directory with files in it",
                _ => "a file",
            };
            let store = store_of(dir);
            Err(SyncError::new(
                ErrorKind::ForeignDirectory,
                format!(
                    "refusing to use {d}: `publish: atomic` makes it a symlink to a tree per commit in {s}, but it is {what}, and hookmirror never deletes what it did not create. To migrate: move it away (`mv {d} {d}.old`; a web server keeps serving until the first sync, a second later), let the next sync clone into {s} and flip the link, then remove {d}.old",
                    d = dir.display(),
                    s = store.display(),
                ),
            ))
        }
    }
}

/// The name of the tree the link `dir` names (`<commit>`, or `<commit>-<nanos>` for a tree made
/// by the repair path).
fn published_tree(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// The commit a tree's name is for (a tree made by the repair path has a suffix).
fn commit_of(tree: &str) -> &str {
    tree.split_once('-').map_or(tree, |(commit, _)| commit)
}

/// Whether the symlink `dir` is one [`flip`] made: it names a tree in the store beside it.
fn is_ours(dir: &Path) -> bool {
    let store = store_of(dir);
    let trees = Path::new(store.file_name().unwrap_or_default()).join(TREES);
    std::fs::read_link(dir).is_ok_and(|t| t.parent() == Some(trees.as_path()))
}

/// Opens the store's bare repository, making it (in a staging folder moved into place whole,
/// so a kill never leaves half a repository) when missing.
fn open_or_init(store: &Path, repo: &Repo) -> Result<Repository, SyncError> {
    let err = |e: git2::Error| classify(e, &AuthState::default());
    let path = store.join(REPO);
    if !path.exists() {
        std::fs::create_dir_all(store)
            .map_err(|e| from_io(&format!("cannot create {}", store.display()), &e))?;
        super::git::remove_stale_staging(store);
        let staging = store.join(format!("{STAGING}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let made = Repository::init_bare(&staging)
            .and_then(|git| git.remote(&repo.remote, &stored_url(&repo.url)).map(|_| ()))
            .map_err(err);
        let moved = made.and_then(|()| match std::fs::rename(&staging, &path) {
            Ok(()) => Ok(()),
            Err(_) if path.exists() => Ok(()),
            Err(e) => Err(from_io(&format!("cannot create {}", path.display()), &e)),
        });
        let _ = std::fs::remove_dir_all(&staging);
        moved?;
    }
    Repository::open_bare(&path).map_err(err)
}

/// Removes what a killed sync left in the store: half-made trees, trees half-removed, the
/// temporary link. Runs under the lock, so no other sync is writing them.
fn remove_half_made(store: &Path, done: &mut Vec<Recovery>) {
    let trees = store.join(TREES);
    let mut removed = 0;
    for e in std::fs::read_dir(&trees).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with(NEW_PREFIX) || name.starts_with(OLD_PREFIX))
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    let _ = std::fs::remove_file(store.join(LINK_TMP));
    if removed > 0 {
        done.push(Recovery::HalfMadeTreesRemoved { trees: removed });
    }
}

/// The tree of `commit`, made when it is not there (or always, with `force`): written under a
/// temporary name, renamed into place when complete. Says whether it was made now.
fn build_tree(
    git: &Repository,
    store: &Path,
    commit: Oid,
    force: bool,
) -> Result<(PathBuf, bool), SyncError> {
    let trees = store.join(TREES);
    std::fs::create_dir_all(&trees)
        .map_err(|e| from_io(&format!("cannot create {}", trees.display()), &e))?;
    let mut name = commit.to_string();
    if trees.join(&name).is_dir() {
        if !force {
            return Ok((trees.join(name), false));
        }
        // The repair path: a fresh tree beside the one that is published.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        name = format!("{name}-{nanos}");
    }
    let tmp = trees.join(format!("{NEW_PREFIX}{name}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)
        .map_err(|e| from_io(&format!("cannot create {}", tmp.display()), &e))?;
    let err = |e: git2::Error| classify(e, &AuthState::default());
    let object = git.find_object(commit, None).map_err(err)?;
    let mut co = CheckoutBuilder::new();
    co.target_dir(&tmp)
        .force()
        .recreate_missing(true)
        .update_index(false);
    if !super::filters::needed(git, commit) {
        co.disable_filters(true);
    }
    git.checkout_tree(&object, Some(&mut co)).map_err(err)?;
    let path = trees.join(&name);
    std::fs::rename(&tmp, &path)
        .map_err(|e| from_io(&format!("cannot move {} into place", tmp.display()), &e))?;
    Ok((path, true))
}

/// Points `dir` at `tree` with one `rename(2)` of a new relative symlink over it.
fn flip(dir: &Path, store: &Path, tree: &Path) -> Result<(), SyncError> {
    let store_name = store.file_name().unwrap_or_default();
    let tree_name = tree.file_name().unwrap_or_default();
    let target = Path::new(store_name).join(TREES).join(tree_name);
    let tmp = store.join(LINK_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)
        .map_err(|e| from_io(&format!("cannot create {}", tmp.display()), &e))?;
    std::fs::rename(&tmp, dir).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        from_io(&format!("cannot replace {}", dir.display()), &e)
    })?;
    // The rename on disk before on_success says it is done (a power cut, not a kill).
    if let Some(parent) = dir.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Renames a tree aside, then removes it, so a half-removed tree never has a commit's name.
fn remove_tree(tree: &Path) {
    let name = tree.file_name().unwrap_or_default().to_string_lossy();
    let aside = tree.with_file_name(format!("{OLD_PREFIX}{name}"));
    if std::fs::rename(tree, &aside).is_ok() {
        let _ = std::fs::remove_dir_all(&aside);
    }
}

/// Notes when each tree but `current` stopped being published, keeps the most recently
/// replaced tree of each of the `keep` most recently replaced other commits (rollback targets),
/// and removes the others once they were replaced `grace` ago. A replaced copy of the published
/// commit (the repair path's) is no rollback target and never takes a kept tree's place.
fn sweep(store: &Path, current: &str, keep: usize, grace: Duration) {
    let (trees, retired) = (store.join(TREES), store.join(RETIRED));
    let _ = std::fs::create_dir_all(&retired);
    let _ = std::fs::remove_file(retired.join(current));
    let now = SystemTime::now();
    let mut others: Vec<(SystemTime, String)> = Vec::new();
    for e in std::fs::read_dir(&trees).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == current {
            continue;
        }
        let stamp = retired.join(&name);
        let at = match std::fs::metadata(&stamp).and_then(|m| m.modified()) {
            Ok(at) => at,
            Err(_) => {
                let _ = std::fs::File::create(&stamp);
                now
            }
        };
        others.push((at, name));
    }
    others.sort_by_key(|o| std::cmp::Reverse(o.0));
    let mut kept: Vec<&str> = Vec::new();
    for (at, name) in &others {
        let commit = commit_of(name);
        if commit != commit_of(current) && !kept.contains(&commit) && kept.len() < keep {
            kept.push(commit);
            continue;
        }
        if now.duration_since(*at).unwrap_or_default() >= grace {
            remove_tree(&trees.join(name));
            let _ = std::fs::remove_file(retired.join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_store_sits_beside_the_directory() {
        assert_eq!(
            store_of(Path::new("/srv/www/site")),
            PathBuf::from("/srv/www/site.hookmirror")
        );
    }

    #[test]
    fn only_our_own_symlink_or_nothing_may_stand_at_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        assert!(refuse_plain_directory(&dir).is_ok(), "missing");
        std::os::unix::fs::symlink("site.hookmirror/trees/abc", &dir).unwrap();
        assert!(refuse_plain_directory(&dir).is_ok(), "ours");
        std::fs::remove_file(&dir).unwrap();
        std::os::unix::fs::symlink("/srv/elsewhere", &dir).unwrap();
        let e = refuse_plain_directory(&dir).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ForeignDirectory);
        assert!(e.message.contains("a symlink to somewhere else"), "{e}");
        assert!(std::fs::symlink_metadata(&dir).is_ok(), "left alone");
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert!(refuse_plain_directory(&dir).is_ok(), "an empty directory");
        assert!(!dir.exists(), "removed: a symlink takes its place");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "mine").unwrap();
        let e = refuse_plain_directory(&dir).unwrap_err();
        assert!(e.message.contains("a directory with files in it"), "{e}");
        assert!(
            e.message
                .contains(&format!("mv {} {}.old", dir.display(), dir.display())),
            "{e}"
        );
        assert!(dir.join("index.html").exists());
    }

    #[test]
    fn sweeping_keeps_the_current_tree_and_the_last_replaced_within_grace() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path();
        let trees = store.join(TREES);
        for n in ["a", "b", "c", "d"] {
            std::fs::create_dir_all(trees.join(n)).unwrap();
        }
        std::fs::create_dir_all(trees.join(".new-e")).unwrap();
        // Replaced just now: everything stays within the grace period.
        sweep(store, "d", 1, Duration::from_secs(60));
        let left = |store: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(store.join(TREES))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(left(store), [".new-e", "a", "b", "c", "d"]);
        // No grace: only the current tree and `keep` replaced ones stay.
        sweep(store, "d", 1, Duration::ZERO);
        assert_eq!(left(store).len(), 3, "{:?}", left(store));
        assert!(left(store).contains(&"d".to_string()));
        sweep(store, "d", 0, Duration::ZERO);
        assert_eq!(left(store), [".new-e", "d"]);
        let mut done = Vec::new();
        remove_half_made(store, &mut done);
        assert_eq!(left(store), ["d"]);
        assert_eq!(done, [Recovery::HalfMadeTreesRemoved { trees: 1 }]);
    }

    #[test]
    fn a_copy_of_the_published_commit_never_takes_the_rollback_trees_place() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path();
        let trees = store.join(TREES);
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        let b_forced = format!("{b}-1700000000000000000");
        let b_again = format!("{b}-1800000000000000000");
        for n in [&a, &b] {
            std::fs::create_dir_all(trees.join(n)).unwrap();
        }
        sweep(store, &b, 1, Duration::ZERO);
        // Forced twice: each replaced copy of b goes, a (the one rollback tree) stays.
        for (copy, current) in [(&b, &b_forced), (&b_forced, &b_again)] {
            std::fs::create_dir_all(trees.join(current)).unwrap();
            sweep(store, current, 1, Duration::ZERO);
            assert!(!trees.join(copy).exists(), "{copy}");
            assert!(trees.join(&a).exists());
            assert!(trees.join(current).exists());
        }
        // Two trees of one older commit fill one place of `keep`, not two.
        let (c, a_copy) = ("c".repeat(40), format!("{a}-1"));
        std::fs::create_dir_all(trees.join(&a_copy)).unwrap();
        std::fs::create_dir_all(trees.join(&c)).unwrap();
        sweep(store, &c, 2, Duration::ZERO);
        let mut left: Vec<String> = std::fs::read_dir(&trees)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&b_again) && left.contains(&c), "{left:?}");
    }
}
