//! One sync of one checkout: brings it to the tip of its tracked ref with git2.
//!
//! Under hookmirror's lock on the directory (taken before anything else), leftovers of killed
//! syncs are removed and damage is moved aside (`recovery`), a publish cut short is finished
//! (`publish`), then the tracked ref is fetched with an explicit refspec (`fetch`) and published:
//! tree first, HEAD last. A clone is the same path from an empty repository. Blocking: run it
//! on a blocking thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{ErrorCode, Oid, Repository};

use super::credentials::AuthState;
use super::error::{ErrorKind, SyncError, classify, from_io};
use super::fetch::fetch;
use super::publish::{self, Found, Marker};
use super::recovery::{
    DirLock, DirState, Recovery, STAGING, git_dir_of, inspect, lock, move_aside, open_checked,
    open_exact, remove_leftovers,
};
use super::transport::Limits;
use crate::config::Repo;
use crate::url::{match_key, redact};

/// What one successful sync did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Synced {
    /// The checked-out commit when the last complete sync (with its actions) ended, and now.
    pub old: Option<String>,
    pub new: String,
    /// The remote ref that was followed (`refs/heads/main`, `refs/tags/v1`).
    pub remote_ref: String,
    /// True when the checkout had no commit before (missing, empty, a clone cut short, or set
    /// aside as corrupt).
    pub cloned: bool,
    /// False when a hint showed the checkout already had the commit, so nothing was fetched.
    pub fetched: bool,
    /// Maintenance started on the way (`git gc --auto`).
    pub notes: Vec<String>,
    /// Hinted commits the fetched tip does not contain (a forge replica lagging behind its
    /// webhook): the daemon fetches again shortly.
    pub missing_hints: Vec<String>,
    /// `mode: mirror`: the refs the sync created, moved or deleted.
    pub refs_changed: Vec<String>,
}

impl Synced {
    pub fn changed(&self) -> bool {
        self.old.as_deref() != Some(self.new.as_str()) || !self.refs_changed.is_empty()
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
    /// When another process holds the checkout's lock: fail at once with [`ErrorKind::Busy`]
    /// (the daemon, which tries again without holding a worker) instead of waiting for it (the
    /// one-shot CLI).
    pub no_wait: bool,
}

/// A sync that holds the checkout's lock: what it did, and the publish marker to clear once its
/// actions ran ([`Locked::finish`]).
pub(super) struct Locked {
    pub(super) synced: Synced,
    git_dir: PathBuf,
    _lock: DirLock,
}

impl Locked {
    pub(super) fn new(synced: Synced, git_dir: PathBuf, lock: DirLock) -> Locked {
        Locked {
            synced,
            git_dir,
            _lock: lock,
        }
    }

    /// The sync and its actions are done: clears the publish marker and releases the lock.
    pub(super) fn finish(self) -> Result<(), SyncError> {
        publish::clear_marker(&self.git_dir)
    }
}

/// How often a sync inspects its directory again when the lock it waited for guarded a
/// directory that was moved aside meanwhile, before giving up; each time means another process
/// replaced the directory while this one waited.
const LOCK_ROUNDS: usize = 10;

/// Syncs `repo` once and keeps the lock; recovery actions are appended to `done`, also when the
/// sync fails. [`super::attempt`] runs it with the actions.
pub(super) fn sync_locked(
    repo: &Repo,
    opts: &SyncOptions,
    limits: Limits,
    done: &mut Vec<Recovery>,
) -> Result<Locked, SyncError> {
    let dir = &repo.directory;
    let (mut git, mut dir_lock, mut moved_aside) = prepare(repo, opts.no_wait, done)?;
    check_remote(&git, repo)?;
    let head = |git: &Repository| git.head().ok().and_then(|h| h.target());
    let mut old = head(&git);
    let mut cloned = old.is_none();
    let mut repair = false;
    match publish::read_marker(git.path()) {
        Found::Nothing => {}
        Found::Marker(m) => {
            if old != Some(m.new) && git.find_commit(m.new).is_ok() {
                // Finish the cut-short publish first, so the next one starts from a tree that
                // is HEAD's: nothing it wrote is left behind as an untracked file.
                publish::publish(&git, repo, &m, limits, false)?;
                done.push(Recovery::PublishRepaired {
                    commit: m.new.to_string(),
                });
            } else if old != Some(m.new) {
                repair = true;
            } else if has_actions(repo) {
                done.push(Recovery::ActionsResumed {
                    commit: m.new.to_string(),
                });
            }
            // The actions last ran for the marker's old commit: they run for what this sync
            // publishes.
            old = m.old;
        }
        Found::Unreadable => repair = true,
    }
    let now = head(&git);

    if let Some(now) = now
        && !repair
        && up_to_date(&git, opts, now)
    {
        return Ok(Locked {
            synced: Synced {
                old: old.map(|o| o.to_string()),
                new: now.to_string(),
                remote_ref: remote_ref_guess(&git, repo),
                cloned: false,
                fetched: false,
                notes: Vec::new(),
                missing_hints: Vec::new(),
                refs_changed: Vec::new(),
            },
            git_dir: git.path().to_path_buf(),
            _lock: dir_lock,
        });
    }

    let (remote_ref, commit) = match fetch(&git, repo, limits) {
        Ok(r) => r,
        Err(e) if e.damaged && !cloned => {
            // The odb is damaged in a way the open check did not see (a missing pack).
            move_aside(dir, &e.error.message, done)?;
            drop(git);
            git = init(dir, repo)?;
            // A new directory: its own lock (the old one stays held until this one is ours).
            let Some(fresh) = lock(git.path(), !opts.no_wait)? else {
                return Err(SyncError::new(
                    ErrorKind::Other,
                    format!(
                        "{} was replaced while it was being cloned again",
                        dir.display()
                    ),
                ));
            };
            dir_lock = fresh;
            cloned = true;
            moved_aside = true;
            fetch(&git, repo, limits)?
        }
        Err(e) => return Err(e.into()),
    };
    super::verify::check(&git, repo, commit)?;
    if let Some(check) = &repo.deploy.pre_publish
        && (now != Some(commit) || opts.force)
    {
        super::pre_publish::run_in_place(&git, repo, check, &remote_ref, old, commit)?;
    }
    let marker = Marker {
        old,
        new: commit,
        remote_ref: remote_ref.clone(),
    };
    publish::publish(&git, repo, &marker, limits, opts.force)?;
    if repair {
        done.push(Recovery::PublishRepaired {
            commit: commit.to_string(),
        });
    }
    if moved_aside {
        done.push(Recovery::Recloned {
            commit: commit.to_string(),
        });
    }
    let notes = maintain(git.path()).into_iter().collect();
    let missing_hints = missing_hints(&git, opts, commit);
    Ok(Locked {
        synced: Synced {
            old: old.map(|o| o.to_string()),
            new: commit.to_string(),
            remote_ref,
            cloned,
            fetched: true,
            notes,
            missing_hints,
            refs_changed: Vec::new(),
        },
        git_dir: git.path().to_path_buf(),
        _lock: dir_lock,
    })
}

/// Whether the published commit `now` contains every hinted commit (a late or replayed
/// delivery), so nothing needs fetching. Never on the repair path (`force`).
pub(super) fn up_to_date(git: &Repository, opts: &SyncOptions, now: Oid) -> bool {
    let hints = opts.hints.as_deref().unwrap_or_default();
    !opts.force && !hints.is_empty() && hints.iter().all(|h| contains(git, now, h))
}

/// The hinted commits the fetched `commit` does not contain (a forge replica lagging behind).
pub(super) fn missing_hints(git: &Repository, opts: &SyncOptions, commit: Oid) -> Vec<String> {
    let hints = opts.hints.iter().flatten();
    hints
        .filter(|h| !contains(git, commit, h))
        .cloned()
        .collect()
}

/// Whether a sync of `repo` that changes the checkout runs anything afterwards.
pub(super) fn has_actions(repo: &Repo) -> bool {
    repo.on_success.touch.is_some() || !repo.on_success.command.is_empty()
}

/// The ref HEAD follows, for a sync that fetched nothing: the configured one, or for a
/// default-branch repo the branch it checked out last time.
fn remote_ref_guess(git: &Repository, repo: &Repo) -> String {
    repo.target.remote_ref().unwrap_or_else(|| {
        git.head()
            .ok()
            .and_then(|h| h.name().ok().map(str::to_string))
            .filter(|n| n.starts_with("refs/heads/"))
            .unwrap_or_else(|| "HEAD".into())
    })
}

/// Takes hookmirror's lock on the checkout before anything else, then, under it, removes what
/// killed syncs left behind and moves a damaged repository aside. A missing or empty directory
/// gets an empty repository first (so there is a git directory to hold the lock in). Says
/// whether a damaged repository was moved aside.
fn prepare(
    repo: &Repo,
    no_wait: bool,
    done: &mut Vec<Recovery>,
) -> Result<(Repository, DirLock, bool), SyncError> {
    let dir = &repo.directory;
    for _ in 0..LOCK_ROUNDS {
        match inspect(dir) {
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
                init(dir, repo)?;
            }
            DirState::Checkout => {
                let git_dir = git_dir_of(dir);
                let Some(held) = lock(&git_dir, !no_wait)? else {
                    continue;
                };
                remove_leftovers(&git_dir, done);
                match open_checked(dir) {
                    Ok(git) => return Ok((git, held, false)),
                    Err(e) => {
                        move_aside(dir, e.message(), done)?;
                        let git = init(dir, repo)?;
                        if let Some(fresh) = lock(git.path(), !no_wait)? {
                            return Ok((git, fresh, true));
                        }
                    }
                }
            }
        }
    }
    Err(SyncError::new(
        ErrorKind::Other,
        format!(
            "{} kept being replaced while this sync waited for its lock",
            dir.display()
        ),
    ))
}

/// True when `commit` (hex) is `head` or an ancestor of it. Unknown ids are not contained.
/// An annotated tag's id (forges send it as a tag push's `after`) counts as the commit it tags.
pub(super) fn contains(git: &Repository, head: Oid, commit: &str) -> bool {
    let Ok(hinted) = Oid::from_str(commit) else {
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

/// Creates the directory (when missing) and an empty repository in it with the remote
/// configured (credentials stripped from the stored URL; fetches use the configured URL). The
/// repository is made in a staging folder inside the directory and its `.git` moved into place
/// whole, so a kill never leaves a half-made `.git` behind (which the next sync would take for
/// damage). When another process got there first, its repository is used.
fn init(dir: &Path, repo: &Repo) -> Result<Repository, SyncError> {
    let err = |e: git2::Error| classify(e, &AuthState::default());
    std::fs::create_dir_all(dir)
        .map_err(|e| from_io(&format!("cannot create {}", dir.display()), &e))?;
    remove_stale_staging(dir);
    let staging = dir.join(format!("{STAGING}{}", std::process::id()));
    let made = Repository::init(&staging).map_err(err).and_then(|git| {
        git.remote(&repo.remote, &stored_url(&repo.url))
            .map(|_| ())
            .map_err(err)
    });
    let moved = made.and_then(|()| {
        match std::fs::rename(staging.join(".git"), dir.join(".git")) {
            Ok(()) => Ok(()),
            // Another process made one meanwhile.
            Err(_) if dir.join(".git").exists() => Ok(()),
            Err(e) => Err(from_io(
                &format!("cannot move a new repository into {}", dir.display()),
                &e,
            )),
        }
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved?;
    open_exact(dir).map_err(err)
}

/// Removes staging folders in `dir` that killed processes left behind (their pid is gone).
pub(super) fn remove_stale_staging(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(STAGING)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The URL written to `.git/config`: the configured one without any password or token.
pub(super) fn stored_url(url: &str) -> String {
    crate::url::without_credentials(url)
}

/// Refuses a checkout of another repository; follows a URL change of the same repository (for
/// example https → ssh).
pub(super) fn check_remote(git: &Repository, repo: &Repo) -> Result<(), SyncError> {
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

/// What a checkout shows before any sync: its commit, and whether a sync was cut short while
/// writing a tree (then the files are not that commit's until the next sync repairs them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutState {
    pub commit: Option<String>,
    pub interrupted: Option<String>,
}

/// Reads `dir`'s [`CheckoutState`] (nothing when it is not a readable checkout). Takes no lock
/// and changes nothing.
pub fn checkout_state(dir: &Path) -> CheckoutState {
    if let Some(commit) = publish::linked(dir) {
        return CheckoutState {
            commit: Some(commit.to_string()),
            interrupted: None,
        };
    }
    let Ok(git) = open_exact(dir) else {
        return CheckoutState::default();
    };
    let head = git.head().ok().and_then(|h| h.target());
    let shown = |c: Option<Oid>| c.map_or_else(|| "no commit".to_string(), |c| c.to_string());
    let interrupted = match publish::read_marker(git.path()) {
        Found::Marker(m) if Some(m.new) != head => Some(format!(
            "a sync was cut short while it wrote the tree of {}: the files are not {}'s until the next sync repairs them",
            m.new,
            shown(head)
        )),
        Found::Unreadable => Some(format!(
            "a sync was cut short while it wrote a tree: the files may not be {}'s until the next sync repairs them",
            shown(head)
        )),
        _ => None,
    };
    CheckoutState {
        commit: head.map(|h| h.to_string()),
        interrupted,
    }
}

/// Pack files a checkout may gather before it is repacked. libgit2 stores every fetch as a pack
/// of its own and never repacks; left alone, a daemon's checkout gathers thousands and every
/// sync slows down reading them. 50 is git's own `gc.autoPackLimit`.
pub const PACK_LIMIT: usize = 50;

/// Repacks with `git gc --auto` (no shell; git detaches it and it runs in the background) once
/// the checkout holds more than [`PACK_LIMIT`] packs. Returns a note when it started one.
/// Without a `git` binary nothing happens (logged at debug).
pub(super) fn maintain(git_dir: &Path) -> Option<String> {
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
    // A checkout's `.git` runs gc from the checkout; a bare repository from itself.
    let dir = match git_dir.file_name() {
        Some(n) if n == ".git" => git_dir.parent().unwrap_or(git_dir),
        _ => git_dir,
    };
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
