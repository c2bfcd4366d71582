//! Publishing a fetched commit into the checkout, crash-safe: the tree (index and files) first,
//! the branch ref and HEAD last, so HEAD never names a commit whose tree is not on disk. A marker
//! in the git directory, written before the tree and cleared once the sync's actions ran, lets
//! the next sync see a publish that was cut short (a kill, a full disk) and repair it.
//!
//! [`publish`] is the one step that changes what the checkout shows; another way of publishing
//! (a tree per commit and a symlink flip) would replace `write_tree` and `move_head`.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{IndexEntry, IndexTime, Oid, Repository};

use super::credentials::AuthState;
use super::error::{SyncError, classify, from_io};
use super::fetch::update_submodules;
use super::transport::Limits;
use crate::config::Repo;

/// The marker's file name in the git directory.
const MARKER: &str = "hookmirror-publish";
/// The first line of a marker, so a file of another format is never mistaken for one.
const MAGIC: &str = "hookmirror publish 1";

/// A publish in progress (or one whose actions have not run yet), as the marker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Marker {
    /// The commit checked out when the last sync finished with its actions; `None`: none was.
    pub old: Option<Oid>,
    /// The commit being published.
    pub new: Oid,
    /// The remote ref it was fetched from (`refs/heads/main`, `refs/tags/v1`): where HEAD goes.
    pub remote_ref: String,
}

impl Marker {
    fn encode(&self) -> String {
        let old = self
            .old
            .map_or_else(|| "none".to_string(), |o| o.to_string());
        format!(
            "{MAGIC}\nold {old}\nnew {}\nref {}\nend\n",
            self.new, self.remote_ref
        )
    }

    fn decode(text: &str) -> Option<Marker> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ');
        let old = match field("old")? {
            "none" => None,
            hex => Some(Oid::from_str(hex).ok()?),
        };
        let new = Oid::from_str(field("new")?).ok()?;
        let remote_ref = field("ref").filter(|r| r.starts_with("refs/") || *r == "HEAD")?;
        // The last line: a marker cut short is never read as a shorter ref name.
        if lines.next()? != "end" {
            return None;
        }
        Some(Marker {
            old,
            new,
            remote_ref: remote_ref.to_string(),
        })
    }
}

/// What the git directory says about the last publish.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No marker: the last publish finished, with its actions.
    Nothing,
    Marker(Marker),
    /// A marker that cannot be read (cut short, or not ours): a publish of some commit was
    /// interrupted.
    Unreadable,
}

pub(super) fn read_marker(git_dir: &Path) -> Found {
    match std::fs::read_to_string(git_dir.join(MARKER)) {
        Ok(text) => Marker::decode(&text).map_or(Found::Unreadable, Found::Marker),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Nothing,
        Err(_) => Found::Unreadable,
    }
}

/// Writes the marker whole or not at all (a temp file renamed over it).
pub(super) fn write_marker(git_dir: &Path, marker: &Marker) -> Result<(), SyncError> {
    let path = git_dir.join(MARKER);
    let tmp = git_dir.join(format!("{MARKER}.tmp"));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(marker.encode().as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        from_io(&format!("cannot write {}", path.display()), &e)
    })
}

/// Removes the marker: the publish is complete and its actions ran.
pub(super) fn clear_marker(git_dir: &Path) -> Result<(), SyncError> {
    match std::fs::remove_file(git_dir.join(MARKER)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(from_io("cannot remove the publish marker", &e)),
    }
}

/// Makes the checkout show `marker.new`: records the marker, writes the tree into the index and
/// the working directory (removing untracked files with `clean`), brings submodules to the
/// commits it records, and only then moves the branch ref and HEAD. Interrupted anywhere, HEAD
/// still names the commit whose tree was complete, and the marker says what to finish. With
/// `force` (the repair path) every file is compared with the commit by content.
pub(super) fn publish(
    git: &Repository,
    repo: &Repo,
    marker: &Marker,
    limits: Limits,
    force: bool,
) -> Result<(), SyncError> {
    // A retry of the same publish finds its marker written already (and on a full disk,
    // rewriting it could fail before the tree is even tried).
    if read_marker(git.path()) != Found::Marker(marker.clone()) {
        write_marker(git.path(), marker)?;
    }
    let distrusted = if force {
        distrust_index(git)?
    } else {
        Vec::new()
    };
    write_tree(git, repo, marker.new)?;
    trust_again(git, distrusted)?;
    if repo.submodules {
        update_submodules(git, repo, limits)?;
    }
    move_head(git, &marker.remote_ref, marker.new)
}

/// With `publish: atomic`, the commit `dir` publishes: the name of the tree its symlink points
/// at (see `atomic`); `None` when `dir` is not such a link.
pub(super) fn linked(dir: &Path) -> Option<Oid> {
    let target = std::fs::read_link(dir).ok()?;
    let name = target.file_name()?.to_str()?;
    Oid::from_str(name.get(..40)?).ok()
}

fn err(e: git2::Error) -> SyncError {
    classify(e, &AuthState::default())
}

/// Writes `commit`'s tree over the index and working directory. Files that differ from it are
/// rewritten (local edits too, and files a cut-short write left behind); tracked files it lacks
/// are removed, relative to HEAD's tree.
fn write_tree(git: &Repository, repo: &Repo, commit: Oid) -> Result<(), SyncError> {
    let object = git.find_object(commit, None).map_err(err)?;
    let mut co = CheckoutBuilder::new();
    // Ignored files stay with `clean`, as with `git clean -fd`.
    co.force().remove_untracked(repo.clean);
    // A first checkout writes every file: skip the per-file filter setup when no filter applies.
    if git.index().is_ok_and(|i| i.is_empty()) && !super::filters::needed(git, commit) {
        co.disable_filters(true);
    }
    git.checkout_tree(&object, Some(&mut co)).map_err(err)
}

/// The repair path: every entry of the repository's index keeps its path, mode and blob but
/// loses its stat data (times and size zeroed, in memory: a crash here leaves the index file as
/// it was), so the checkout that follows compares every file with the commit by content instead
/// of trusting the cached stat data, which misses an edit that keeps it (coarse timestamps,
/// `core.trustctime = false`). The entries stay: the checkout writes back only the entries of
/// the files it rewrites, so an emptied index would leave every other file staged-deleted and
/// untracked. Returns the entries as they were, for [`trust_again`].
fn distrust_index(git: &Repository) -> Result<Vec<IndexEntry>, SyncError> {
    let mut index = git.index().map_err(err)?;
    let original: Vec<IndexEntry> = index.iter().filter(|e| stage(e) == 0).collect();
    let zero = IndexTime::new(0, 0);
    for e in &original {
        let mut blind = copy(e);
        blind.ctime = zero;
        blind.mtime = zero;
        blind.file_size = 0;
        index.add(&blind).map_err(err)?;
    }
    Ok(original)
}

/// After the forced checkout: an entry it did not rewrite (still without stat data, same blob:
/// its file matched the commit by content) gets its stat data back, so `git status` and the
/// next sync need not read every file again.
fn trust_again(git: &Repository, original: Vec<IndexEntry>) -> Result<(), SyncError> {
    if original.is_empty() {
        return Ok(());
    }
    let mut index = git.index().map_err(err)?;
    let mut restored = false;
    for e in original {
        let path = Path::new(std::ffi::OsStr::from_bytes(&e.path));
        let blind = index
            .get_path(path, 0)
            .is_some_and(|now| now.id == e.id && now.file_size == 0 && now.mtime.seconds() == 0);
        if blind {
            index.add(&e).map_err(err)?;
            restored = true;
        }
    }
    if restored {
        index.write().map_err(err)?;
    }
    Ok(())
}

/// An entry's merge stage (0 outside a conflict).
fn stage(e: &IndexEntry) -> u16 {
    (e.flags >> 12) & 3
}

fn copy(e: &IndexEntry) -> IndexEntry {
    IndexEntry {
        ctime: e.ctime,
        mtime: e.mtime,
        dev: e.dev,
        ino: e.ino,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        file_size: e.file_size,
        id: e.id,
        flags: e.flags,
        flags_extended: e.flags_extended,
        path: e.path.clone(),
    }
}

/// Points HEAD at `commit`: through the local branch of the remote branch's name (moving that
/// ref is the one atomic step when HEAD is on it already), or detached at a tag.
fn move_head(git: &Repository, remote_ref: &str, commit: Oid) -> Result<(), SyncError> {
    match remote_ref.strip_prefix("refs/heads/") {
        Some(branch) => {
            let local = format!("refs/heads/{branch}");
            git.reference(&local, commit, true, "hookmirror: sync")
                .map_err(err)?;
            git.set_head(&local).map_err(err)
        }
        None => git.set_head_detached(commit).map_err(err),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn oid(c: char) -> Oid {
        Oid::from_str(&c.to_string().repeat(40)).unwrap()
    }

    #[test]
    fn the_marker_round_trips_and_refuses_what_is_not_one() {
        let m = Marker {
            old: Some(oid('a')),
            new: oid('b'),
            remote_ref: "refs/heads/main".into(),
        };
        assert_eq!(Marker::decode(&m.encode()), Some(m.clone()));
        let first = Marker { old: None, ..m };
        assert_eq!(Marker::decode(&first.encode()), Some(first.clone()));
        let text = first.encode();
        for cut in [0, 10, MAGIC.len() + 8, text.len() - 10] {
            assert_eq!(Marker::decode(&text[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Marker::decode("something else\n"), None);
        let bad_ref = text.replace("ref refs/heads/main", "ref ../../x");
        assert_eq!(Marker::decode(&bad_ref), None);
    }

    #[test]
    fn markers_are_found_written_and_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        assert_eq!(read_marker(g), Found::Nothing);
        let m = Marker {
            old: None,
            new: oid('c'),
            remote_ref: "refs/tags/v1".into(),
        };
        write_marker(g, &m).unwrap();
        assert_eq!(read_marker(g), Found::Marker(m));
        assert!(!g.join("hookmirror-publish.tmp").exists());
        clear_marker(g).unwrap();
        clear_marker(g).unwrap();
        assert_eq!(read_marker(g), Found::Nothing);
        std::fs::write(g.join(MARKER), "hookmirror publish 1\nold no").unwrap();
        assert_eq!(read_marker(g), Found::Unreadable);
    }
}
