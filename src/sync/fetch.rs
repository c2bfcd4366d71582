//! Talking to the remote: fetching the one tracked ref, and the submodules' commits, within the
//! sync's time limits (`sync_timeout`, `stall_timeout`).

use std::cell::RefCell;

use git2::build::CheckoutBuilder;
use git2::{AutotagOption, FetchOptions, Oid, Repository, SubmoduleUpdateOptions};

use super::credentials::{AuthState, callbacks};
use super::error::{ErrorKind, SyncError, classify, is_corruption};
use super::negotiate::{self, Negotiated};
use super::transport::{self, FetchContext, LimitHit, Limits};
use crate::config::{Repo, Target};
use crate::url::Scheme;

/// A failed fetch, and whether the checkout's own object database is what failed: the one
/// failure a fresh clone repairs.
pub(super) struct FetchError {
    pub(super) error: SyncError,
    pub(super) damaged: bool,
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

/// Runs `network` (a fetch, a submodule update) with `repo`'s callbacks (credentials, host keys,
/// and the deadline and sizes checked whenever libgit2 reports progress) and its fetch context
/// installed for hookmirror's transports (which check every read). A time limit that tripped is
/// an [`ErrorKind::Timeout`] that says which, a size an [`ErrorKind::TooLarge`] that names the
/// key; other failures are classified as usual.
pub(super) fn limited<R>(
    repo: &Repo,
    limits: Limits,
    what: &str,
    network: impl FnOnce(FetchOptions<'_>) -> Result<R, git2::Error>,
) -> Result<R, FetchError> {
    let state = RefCell::new(AuthState::default());
    let mut cb = callbacks(repo, &state);
    cb.transfer_progress(|p| limits.check_progress(p.total_objects(), p.received_bytes()));
    cb.sideband_progress(|_| limits.check());
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(cb);
    let ctx = FetchContext {
        repo: repo.clone(),
        limits,
    };
    let result = transport::scope(ctx, || network(fo));
    let hit = transport::take_limit_hit();
    result.map_err(|e| match hit {
        Some(LimitHit::Time(why)) => {
            SyncError::new(ErrorKind::Timeout, format!("{what}: {why}")).into()
        }
        Some(LimitHit::Size(why)) => {
            SyncError::new(ErrorKind::TooLarge, format!("{what}: {why}")).into()
        }
        None => FetchError::new(e, &state.borrow()),
    })
}

/// Fetches only the tracked ref; returns the remote ref name and the commit it points to
/// (annotated tags peeled). On hookmirror's transports this is its own negotiation
/// ([`negotiate`]: one request after the advertisement); otherwise, or when the server lacks
/// what that needs, libgit2's fetch.
pub(super) fn fetch(
    git: &Repository,
    repo: &Repo,
    limits: Limits,
) -> Result<(String, Oid), FetchError> {
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
    let what = format!("fetching from {}", repo.url.redacted());
    let fail = |e: git2::Error| FetchError::new(e, &AuthState::default());
    let mut found = None;
    if negotiate::applies(git, repo) {
        match limited(repo, limits, &what, |_| {
            negotiate::fetch(git, repo, &src, &dst)
        })? {
            Negotiated::Done {
                head_symref,
                fetched,
            } => {
                tracing::debug!(repo = %repo.name, fetched, "fetched with hookmirror's negotiation");
                found = Some(Found::Fetched { head_symref });
            }
            Negotiated::Missing => found = Some(Found::Missing),
            Negotiated::Unsupported(why) => {
                tracing::debug!(repo = %repo.name, %why, "the remote does not serve hookmirror's negotiation; using libgit2's fetch");
            }
        }
    }
    let found = match found {
        Some(found) => found,
        None => libgit2_fetch(git, repo, limits, &what, &src, &dst)?,
    };
    let remote_ref = match (&repo.target, found) {
        (_, Found::Missing) => {
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
        (Target::DefaultBranch, Found::Fetched { head_symref }) => match head_symref {
            Some(name) if name.starts_with("refs/") && crate::refname::is_valid(&name) => name,
            // HEAD goes where this names, and the publish marker keeps it a line of its own:
            // a name git would refuse is not followed (it arrives escaped, never raw).
            Some(name) => {
                tracing::warn!(repo = %repo.name, symref = %name, "the remote's HEAD names no valid branch; the checkout follows its commit with a detached HEAD");
                "HEAD".into()
            }
            None => "HEAD".into(),
        },
        (_, Found::Fetched { .. }) => src.clone(),
    };
    let oid = git.refname_to_id(&dst).map_err(fail)?;
    let commit = git
        .find_object(oid, None)
        .and_then(|o| o.peel_to_commit())
        .map_err(fail)?;
    Ok((remote_ref, commit.id()))
}

/// What a fetch found of the tracked ref on the remote.
enum Found {
    /// The remote does not advertise it.
    Missing,
    /// Fetched into the destination ref; the branch the remote's HEAD names, when it says.
    Fetched { head_symref: Option<String> },
}

/// libgit2's fetch of `+src:dst`.
fn libgit2_fetch(
    git: &Repository,
    repo: &Repo,
    limits: Limits,
    what: &str,
    src: &str,
    dst: &str,
) -> Result<Found, FetchError> {
    let refspec = format!("+{src}:{dst}");
    let fail = |e: git2::Error| FetchError::new(e, &AuthState::default());
    let mut remote = git
        .remote_anonymous(&transport::fetch_url(repo))
        .map_err(fail)?;
    limited(repo, limits, what, |mut fo| {
        fo.download_tags(AutotagOption::None);
        fo.update_fetchhead(false);
        let network = repo.url.scheme() != Scheme::File;
        if let (Some(depth), true) = (repo.depth, network) {
            fo.depth(depth as i32);
        }
        remote.fetch(&[&refspec], Some(&mut fo), Some("hookmirror: fetch"))
    })?;
    let advertised = remote.list().map_err(fail)?;
    Ok(match advertised.iter().find(|h| h.name() == src) {
        Some(h) => Found::Fetched {
            // The remote's words: escaped, as in `negotiate`.
            head_symref: h
                .symref_target()
                .map(|t| crate::printable::escape(t).into_owned()),
        },
        None => Found::Missing,
    })
}

/// Initialises and updates submodules recursively to the commits the index records, with the
/// same credentials, host checks and limits.
pub(super) fn update_submodules(
    git: &Repository,
    repo: &Repo,
    limits: Limits,
) -> Result<(), SyncError> {
    let list = git
        .submodules()
        .map_err(|e| classify(e, &AuthState::default()))?;
    for mut sm in list {
        let what = format!("updating submodule {}", sm.path().display());
        limited(repo, limits, &what, |fo| {
            let mut opts = SubmoduleUpdateOptions::new();
            opts.fetch(fo);
            let mut co = CheckoutBuilder::new();
            co.force();
            opts.checkout(co);
            sm.update(true, Some(&mut opts))
        })?;
        let inner = sm.open().map_err(|e| classify(e, &AuthState::default()))?;
        update_submodules(&inner, repo, limits)?;
    }
    Ok(())
}
