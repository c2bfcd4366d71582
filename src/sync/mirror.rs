//! Mirror mode (`mode: mirror`): `directory` is a bare repository holding every branch and tag of
//! the remote (`+refs/heads/*:refs/heads/*`, `+refs/tags/*:refs/tags/*`), refs deleted upstream
//! pruned, HEAD on the remote's default branch — what `git clone --mirror` keeps, for backups.
//! No working tree, so nothing is published: a sync is one fetch under the lock.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{AutotagOption, FetchPrune, Repository};

use super::credentials::AuthState;
use super::error::{ErrorKind, SyncError, classify, from_io};
use super::fetch::limited;
use super::git::{Locked, SyncOptions, Synced, check_remote, remove_stale_staging, stored_url};
use super::recovery::{Recovery, STAGING, lock, remove_leftovers};
use super::transport::{self, Limits};
use crate::config::Repo;

/// What a mirror copies: every branch and tag, each forced (a force-push upstream is followed).
const REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// Fetches every ref of `repo`'s remote into its bare repository; keeps the lock.
pub(super) fn sync_locked(
    repo: &Repo,
    opts: &SyncOptions,
    limits: Limits,
    done: &mut Vec<Recovery>,
) -> Result<Locked, SyncError> {
    let git = open_or_init(&repo.directory, repo)?;
    let Some(held) = lock(git.path(), !opts.no_wait)? else {
        return Err(SyncError::new(
            ErrorKind::Other,
            format!(
                "{} was replaced while this sync waited for its lock",
                repo.directory.display()
            ),
        ));
    };
    remove_leftovers(git.path(), done);
    check_remote(&git, repo)?;
    let err = |e: git2::Error| classify(e, &AuthState::default());
    let before = refs(&git);
    let old = git.head().ok().and_then(|h| h.target());
    let mut remote = git
        .remote_anonymous(&transport::fetch_url(repo))
        .map_err(err)?;
    let what = format!("fetching from {}", repo.url.redacted());
    limited(repo, limits, &what, |mut fo| {
        fo.download_tags(AutotagOption::None);
        fo.prune(FetchPrune::On);
        fo.update_fetchhead(false);
        remote.fetch(&REFSPECS, Some(&mut fo), Some("hookmirror: mirror"))
    })?;
    // HEAD follows the remote's default branch, as in `git clone --mirror`.
    let advertised = remote.list().map_err(err)?;
    let default = advertised
        .iter()
        .find(|h| h.name() == "HEAD")
        .and_then(|h| h.symref_target().map(str::to_string));
    if let Some(branch) = default.filter(|b| git.find_reference(b).is_ok()) {
        git.set_head(&branch).map_err(err)?;
    }
    let after = refs(&git);
    let head = git.head().ok().and_then(|h| h.target());
    let changed = changes(&before, &after);
    let notes = super::git::maintain(git.path()).into_iter().collect();
    Ok(Locked::new(
        Synced {
            old: old.map(|o| o.to_string()),
            new: head.map(|h| h.to_string()).unwrap_or_default(),
            remote_ref: git
                .head()
                .ok()
                .and_then(|h| h.name().ok().map(str::to_string))
                .unwrap_or_else(|| "HEAD".into()),
            cloned: before.is_empty(),
            fetched: true,
            notes,
            missing_hints: Vec::new(),
            refs_changed: changed,
        },
        git.path().to_path_buf(),
        held,
    ))
}

/// Every branch and tag with what it points at.
fn refs(git: &Repository) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in git.references().into_iter().flatten().flatten() {
        if let (Some(name), Some(target)) = (r.name().ok(), r.target())
            && (name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        {
            out.insert(name.to_string(), target.to_string());
        }
    }
    out
}

/// The refs created, moved or deleted between `before` and `after`.
fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let moved = after
        .iter()
        .filter(|(name, id)| before.get(*name) != Some(id))
        .map(|(name, _)| name.clone());
    let deleted = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| format!("{name} (deleted)"));
    moved.chain(deleted).collect()
}

/// Opens the bare repository in `dir`, making it (in a staging folder beside it, moved into
/// place whole) when `dir` is missing or empty. Anything else in `dir` is refused.
fn open_or_init(dir: &Path, repo: &Repo) -> Result<Repository, SyncError> {
    let err = |e: git2::Error| classify(e, &AuthState::default());
    let empty = std::fs::read_dir(dir).map_or(true, |mut e| e.next().is_none());
    if !empty {
        return Repository::open_bare(dir).map_err(|_| {
            SyncError::new(
                ErrorKind::ForeignDirectory,
                format!(
                    "refusing to use {}: `mode: mirror` keeps a bare repository there, and it holds something else; hookmirror never deletes what it did not create",
                    dir.display()
                ),
            )
        });
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)
        .map_err(|e| from_io(&format!("cannot create {}", parent.display()), &e))?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    remove_stale_staging(parent);
    let staging = parent.join(format!("{STAGING}{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let made = Repository::init_bare(&staging)
        .and_then(|git| git.remote(&repo.remote, &stored_url(&repo.url)).map(|_| ()))
        .map_err(err);
    // `rename` replaces an empty directory; another process may have made one meanwhile.
    let moved = made.and_then(|()| match std::fs::rename(&staging, dir) {
        Ok(()) => Ok(()),
        Err(_) if Repository::open_bare(dir).is_ok() => Ok(()),
        Err(e) => Err(from_io(&format!("cannot create {}", dir.display()), &e)),
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved?;
    Repository::open_bare(dir).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_created_moved_and_deleted_refs() {
        let map = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let before = map(&[
            ("refs/heads/a", "1"),
            ("refs/heads/b", "2"),
            ("refs/tags/t", "3"),
        ]);
        let after = map(&[
            ("refs/heads/a", "1"),
            ("refs/heads/b", "4"),
            ("refs/tags/u", "5"),
        ]);
        assert_eq!(
            changes(&before, &after),
            ["refs/heads/b", "refs/tags/u", "refs/tags/t (deleted)"]
        );
        assert!(changes(&after, &after).is_empty());
    }
}
