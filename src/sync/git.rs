//! The fetch/checkout path: brings one checkout to the tip of its tracked ref with git2.
//!
//! Clone when the directory is missing or empty; otherwise fetch only the tracked ref with an
//! explicit refspec and reset --hard. Credentials and host keys are `credentials.rs`'s, stale
//! locks and damage `recovery.rs`'s. Blocking: run it on a blocking thread.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, ErrorCode, FetchOptions, Oid, Repository, ResetType, SubmoduleUpdateOptions,
};

use super::credentials::{AuthState, callbacks};
use super::error::{ErrorKind, SyncError, classify, is_corruption};
use super::recovery::{
    DirState, inspect, lock_dir, move_aside, open_checked, open_exact, remove_stale_locks,
};
use super::transport::{self, FetchContext, Limits};
use super::{DEFAULT_SYNC_TIMEOUT, IO_TIMEOUT_MS};
use crate::config::{Repo, Target};
use crate::url::{Scheme, match_key, redact};

/// What one successful sync did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Synced {
    /// Checked-out commit before and after.
    pub old: Option<String>,
    pub new: String,
    /// The remote ref that was followed (`refs/heads/main`, `refs/tags/v1`).
    pub remote_ref: String,
    /// True when the directory had to be cloned (missing, empty, or set aside as corrupt).
    pub cloned: bool,
    /// False when a hint showed the checkout already had the commit, so nothing was fetched.
    pub fetched: bool,
    /// What recovery did on the way (stale locks removed, a corrupt repository moved aside).
    pub notes: Vec<String>,
    /// Hinted commits the fetched tip does not contain (a forge replica lagging behind its
    /// webhook): the daemon fetches again shortly.
    pub missing_hints: Vec<String>,
}

impl Synced {
    pub fn changed(&self) -> bool {
        self.old.as_deref() != Some(self.new.as_str())
    }
}

/// Options for one sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Commits the remote should have (webhooks' `after`). When the checkout already contains
    /// all of them (a late or replayed delivery), nothing is fetched. `None`: always fetch.
    pub hints: Option<Vec<String>>,
    /// The repair path (`?force=true`): fetch even when the hints are contained, and rewrite
    /// the tree even when HEAD is at the tip, comparing every file by content.
    pub force: bool,
}

/// Syncs `repo` once, without retries. See [`super::sync_with_retry`] for the retrying form.
pub fn sync_once(repo: &Repo, opts: &SyncOptions) -> Result<Synced, SyncError> {
    let dir = &repo.directory;
    let mut notes = Vec::new();
    let mut cloned = false;
    let git = match inspect(dir) {
        DirState::Foreign(why) => {
            return Err(SyncError::new(
                ErrorKind::ForeignDirectory,
                format!(
                    "refusing to use {}: {why}; hookmirror never deletes what it did not create",
                    dir.display()
                ),
            ));
        }
        DirState::Missing | DirState::Empty => {
            cloned = true;
            init(dir, repo)?
        }
        DirState::Checkout => {
            let git_dir = dir.join(".git");
            if git_dir.is_dir() {
                remove_stale_locks(&git_dir, &mut notes);
            }
            match open_checked(dir) {
                Ok(g) => g,
                Err(e) => {
                    move_aside(dir, e.message(), &mut notes)?;
                    cloned = true;
                    init(dir, repo)?
                }
            }
        }
    };
    let lock = lock_dir(git.path())?;
    check_remote(&git, repo)?;
    let old = git
        .head()
        .ok()
        .and_then(|h| h.target())
        .map(|o| o.to_string());

    // The ref HEAD follows, for a default-branch repo: the branch it checked out last time.
    let remote_ref_guess = || {
        repo.target.remote_ref().unwrap_or_else(|| {
            git.head()
                .ok()
                .and_then(|h| h.name().ok().map(str::to_string))
                .filter(|n| n.starts_with("refs/heads/"))
                .unwrap_or_else(|| "HEAD".into())
        })
    };
    if let (Some(hints), Some(old)) = (&opts.hints, &old)
        && !opts.force
        && !hints.is_empty()
        && hints.iter().all(|h| contains(&git, old, h))
    {
        return Ok(Synced {
            old: Some(old.clone()),
            new: old.clone(),
            remote_ref: remote_ref_guess(),
            cloned: false,
            fetched: false,
            notes,
            missing_hints: Vec::new(),
        });
    }

    let mut git = git;
    let mut lock = lock;
    let (remote_ref, commit) = match fetch(&git, repo) {
        Ok(r) => r,
        Err(e) if e.damaged && !cloned => {
            // The odb is damaged in a way the open check did not see (a missing pack).
            drop(lock);
            drop(git);
            move_aside(dir, &e.error.message, &mut notes)?;
            cloned = true;
            git = init(dir, repo)?;
            lock = lock_dir(git.path())?;
            fetch(&git, repo)?
        }
        Err(e) => return Err(e.into()),
    };
    if opts.force {
        forget_index(&git)?;
    }
    checkout(&git, repo, &remote_ref, commit)?;
    if let Some(note) = maintain(git.path()) {
        notes.push(note);
    }
    let new = commit.to_string();
    let missing_hints = opts
        .hints
        .iter()
        .flatten()
        .filter(|h| !contains(&git, &new, h))
        .cloned()
        .collect();
    drop(lock);
    Ok(Synced {
        old,
        new,
        remote_ref,
        cloned,
        fetched: true,
        notes,
        missing_hints,
    })
}

/// True when `commit` (hex) is `head` or an ancestor of it. Unknown ids are not contained.
/// An annotated tag's id (forges send it as a tag push's `after`) counts as the commit it tags.
fn contains(git: &Repository, head: &str, commit: &str) -> bool {
    let (Ok(head), Ok(hinted)) = (Oid::from_str(head), Oid::from_str(commit)) else {
        return false;
    };
    let Ok(commit) = git
        .find_object(hinted, None)
        .and_then(|o| o.peel_to_commit())
        .map(|c| c.id())
    else {
        return false;
    };
    head == commit || git.graph_descendant_of(head, commit).unwrap_or(false)
}

/// Creates the directory and an empty repository with the remote configured (credentials
/// stripped from the stored URL; fetches use the configured URL).
fn init(dir: &Path, repo: &Repo) -> Result<Repository, SyncError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        SyncError::new(
            ErrorKind::Other,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let git = Repository::init(dir).map_err(|e| classify(e, &AuthState::default()))?;
    git.remote(&repo.remote, &stored_url(&repo.url))
        .map_err(|e| classify(e, &AuthState::default()))?;
    Ok(git)
}

/// The URL written to `.git/config`: the configured one without any password or token.
fn stored_url(url: &str) -> String {
    crate::url::without_credentials(url)
}

/// Refuses a checkout of another repository; follows a URL change of the same repository (for
/// example https → ssh).
fn check_remote(git: &Repository, repo: &Repo) -> Result<(), SyncError> {
    let want = Some(repo.url.match_key());
    match git.find_remote(&repo.remote) {
        Ok(remote) => {
            let have = remote.url().unwrap_or("").to_string();
            if have == stored_url(&repo.url) {
                return Ok(());
            }
            if match_key(&have).as_deref() == want {
                git.remote_set_url(&repo.remote, &stored_url(&repo.url))
                    .map_err(|e| classify(e, &AuthState::default()))?;
                return Ok(());
            }
            Err(SyncError::new(
                ErrorKind::ForeignDirectory,
                format!(
                    "refusing to use {}: it is a checkout of {} (remote `{}`), not {}",
                    repo.directory.display(),
                    redact(&have),
                    repo.remote,
                    repo.url.redacted()
                ),
            ))
        }
        Err(_) => {
            let empty = git
                .head()
                .is_err_and(|e| e.code() == ErrorCode::UnbornBranch);
            if empty {
                git.remote(&repo.remote, &stored_url(&repo.url))
                    .map_err(|e| classify(e, &AuthState::default()))?;
                Ok(())
            } else {
                Err(SyncError::new(
                    ErrorKind::ForeignDirectory,
                    format!(
                        "refusing to use {}: it is a git checkout without a remote `{}`",
                        repo.directory.display(),
                        repo.remote
                    ),
                ))
            }
        }
    }
}

/// A failed fetch, and whether the checkout's own object database is what failed: the one
/// failure a fresh clone repairs.
struct FetchError {
    error: SyncError,
    damaged: bool,
}

impl FetchError {
    fn new(e: git2::Error, state: &AuthState) -> Self {
        let damaged = is_corruption(&e);
        let error = classify(e, state);
        FetchError {
            damaged: damaged && error.kind == ErrorKind::Other,
            error,
        }
    }
}

impl From<SyncError> for FetchError {
    fn from(error: SyncError) -> Self {
        FetchError {
            error,
            damaged: false,
        }
    }
}

impl From<FetchError> for SyncError {
    fn from(e: FetchError) -> Self {
        e.error
    }
}

/// Fetches only the tracked ref; returns the remote ref name and the commit it points to
/// (annotated tags peeled).
fn fetch(git: &Repository, repo: &Repo) -> Result<(String, Oid), FetchError> {
    let (src, dst) = match &repo.target {
        Target::Branch(b) => (
            format!("refs/heads/{b}"),
            format!("refs/remotes/{}/{b}", repo.remote),
        ),
        // Tags are force-fetched so a tag moved upstream is followed.
        Target::Tag(t) => (format!("refs/tags/{t}"), format!("refs/tags/{t}")),
        Target::DefaultBranch => (
            "HEAD".to_string(),
            format!("refs/remotes/{}/HEAD", repo.remote),
        ),
    };
    let refspec = format!("+{src}:{dst}");
    let state = RefCell::new(AuthState::default());
    let fail = |e: git2::Error| FetchError::new(e, &state.borrow());
    let mut remote = git
        .remote_anonymous(&transport::fetch_url(repo))
        .map_err(fail)?;
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(repo, &state));
    fo.download_tags(AutotagOption::None);
    fo.update_fetchhead(false);
    let network = repo.url.scheme() != Scheme::File;
    if let (Some(depth), true) = (repo.depth, network) {
        fo.depth(depth as i32);
    }
    let ctx = FetchContext {
        repo: repo.clone(),
        limits: Limits::starting_now(
            DEFAULT_SYNC_TIMEOUT,
            Duration::from_millis(IO_TIMEOUT_MS as u64),
        ),
    };
    transport::scope(ctx, || {
        remote.fetch(&[&refspec], Some(&mut fo), Some("hookmirror: fetch"))
    })
    .map_err(fail)?;

    let advertised = remote.list().map_err(fail)?;
    let head = advertised.iter().find(|h| h.name() == src);
    let remote_ref = match (&repo.target, head) {
        (_, None) => {
            let what = match &repo.target {
                Target::Branch(b) => format!("branch `{b}`"),
                Target::Tag(t) => format!("tag `{t}`"),
                Target::DefaultBranch => "a default branch (HEAD)".into(),
            };
            return Err(SyncError::new(
                ErrorKind::RefMissing,
                format!(
                    "{what} does not exist on {}; the checkout keeps its last tree",
                    repo.url.redacted()
                ),
            )
            .into());
        }
        (Target::DefaultBranch, Some(h)) => h.symref_target().unwrap_or("HEAD").to_string(),
        (_, Some(_)) => src.clone(),
    };
    let oid = git.refname_to_id(&dst).map_err(fail)?;
    let commit = git
        .find_object(oid, None)
        .and_then(|o| o.peel_to_commit())
        .map_err(fail)?;
    Ok((remote_ref, commit.id()))
}

/// Points HEAD at the tracked ref (a local branch of the same name, or detached at a tag) and
/// resets index and worktree hard to `commit`; with `clean`, untracked files go too.
fn checkout(git: &Repository, repo: &Repo, remote_ref: &str, commit: Oid) -> Result<(), SyncError> {
    let err = |e: git2::Error| classify(e, &AuthState::default());
    match remote_ref.strip_prefix("refs/heads/") {
        Some(branch) => {
            let local = format!("refs/heads/{branch}");
            git.reference(&local, commit, true, "hookmirror: sync")
                .map_err(err)?;
            git.set_head(&local).map_err(err)?;
        }
        None => git.set_head_detached(commit).map_err(err)?,
    }
    let object = git.find_object(commit, None).map_err(err)?;
    let mut co = CheckoutBuilder::new();
    co.force();
    // A first checkout writes every file: skip the per-file filter setup when no filter applies.
    if git.index().is_ok_and(|i| i.is_empty()) && !super::filters::needed(git, commit) {
        co.disable_filters(true);
    }
    git.reset(&object, ResetType::Hard, Some(&mut co))
        .map_err(err)?;
    if repo.clean {
        // reset ignores REMOVE_UNTRACKED; a forced checkout of HEAD honours it (ignored files stay,
        // as with `git clean -fd`).
        let mut co = CheckoutBuilder::new();
        co.force().remove_untracked(true);
        git.checkout_head(Some(&mut co)).map_err(err)?;
    }
    if repo.submodules {
        update_submodules(git, repo)?;
    }
    Ok(())
}

/// Empties the repository's index in memory (the file stays until the reset writes the new
/// one, so a crash here leaves the old index), so the reset that follows compares every file
/// with the commit by content instead of trusting the cached stat data (size, times, inode),
/// which misses an edit that keeps them (coarse timestamps, `core.trustctime = false`).
fn forget_index(git: &Repository) -> Result<(), SyncError> {
    let err = |e: git2::Error| classify(e, &AuthState::default());
    git.index().and_then(|mut i| i.clear()).map_err(err)
}

/// Initialises and updates submodules recursively, with the same credentials and host checks.
fn update_submodules(git: &Repository, repo: &Repo) -> Result<(), SyncError> {
    let state = RefCell::new(AuthState::default());
    for mut sm in git.submodules().map_err(|e| classify(e, &state.borrow()))? {
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(callbacks(repo, &state));
        let mut opts = SubmoduleUpdateOptions::new();
        opts.fetch(fo);
        let mut co = CheckoutBuilder::new();
        co.force();
        opts.checkout(co);
        sm.update(true, Some(&mut opts))
            .map_err(|e| classify(e, &state.borrow()))?;
        let inner = sm.open().map_err(|e| classify(e, &state.borrow()))?;
        update_submodules(&inner, repo)?;
    }
    Ok(())
}

/// The commit checked out in `dir`, if it is a readable checkout.
pub fn current_commit(dir: &Path) -> Option<String> {
    let repo = open_exact(dir).ok()?;
    let head = repo.head().ok()?;
    head.target().map(|o| o.to_string())
}

/// Pack files a checkout may gather before it is repacked. libgit2 stores every fetch as a pack
/// of its own and never repacks; left alone, a daemon's checkout gathers thousands and every
/// sync slows down reading them. 50 is git's own `gc.autoPackLimit`.
pub const PACK_LIMIT: usize = 50;

/// Repacks with `git gc --auto` (no shell; git detaches it and it runs in the background) once
/// the checkout holds more than [`PACK_LIMIT`] packs. Returns a note when it started one.
/// Without a `git` binary nothing happens (logged at debug).
fn maintain(git_dir: &Path) -> Option<String> {
    let packs = std::fs::read_dir(git_dir.join("objects/pack"))
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .count();
    if packs <= PACK_LIMIT {
        return None;
    }
    let argv: Vec<String> = [
        "git",
        "-c",
        &format!("gc.autoPackLimit={PACK_LIMIT}"),
        "gc",
        "--auto",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let dir = git_dir.parent().unwrap_or(git_dir);
    match super::actions::run_command(&argv, &[], dir, Duration::from_secs(600)) {
        Ok(r) if r.success() => Some(format!("{packs} pack files: started git gc --auto")),
        Ok(r) => {
            tracing::warn!(dir = %dir.display(), code = ?r.code, stderr = %r.stderr.trim_end(), "git gc --auto failed");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot run git gc; pack files are not consolidated");
            None
        }
    }
}
