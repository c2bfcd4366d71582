//! The pre-publish check (`pre_publish:`): a command run in the new commit's tree before it is
//! published; a failure or a timeout keeps the published tree where it was (state `rejected`,
//! the output's last lines in the error). Atomic publishing runs it in the tree it is about to
//! flip to; in place, the commit is checked out into a temporary tree first.

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};

use super::actions::{self, CommandResult};
use super::credentials::AuthState;
use super::error::{ErrorKind, SyncError, classify, from_io};
use crate::config::{PrePublish, Repo};

/// The temporary tree of an in-place check, in the git directory (never published).
const IN_PLACE_TREE: &str = "hookmirror-pre-publish";
/// Lines of the command's output kept in the error.
const TAIL_LINES: usize = 20;

/// Runs `check` in `tree` (the tree of `new`, fetched from `remote_ref`), with the environment
/// `on_success` gets.
pub(super) fn run(
    repo: &Repo,
    check: &PrePublish,
    tree: &Path,
    remote_ref: &str,
    old: Option<Oid>,
    new: Oid,
) -> Result<(), SyncError> {
    let old = old.map(|o| o.to_string()).unwrap_or_default();
    let env = actions::env(repo, remote_ref, &old, &new.to_string(), tree);
    let program = &check.command[0];
    let result = actions::run_command(&check.command, &env, tree, check.timeout).map_err(|e| {
        SyncError::new(
            ErrorKind::Rejected,
            format!(
                "commit {new} is not published: cannot run the pre_publish check {program}: {e}"
            ),
        )
    })?;
    if result.leftovers_killed {
        tracing::warn!(repo = %repo.name, commit = %new, timeout = ?check.timeout, "pre_publish check exited, but processes it started held its output until the timeout; its process group was killed");
    }
    if result.success() {
        tracing::info!(repo = %repo.name, commit = %new, duration = ?result.duration, "pre_publish check passed");
        return Ok(());
    }
    Err(SyncError::new(
        ErrorKind::Rejected,
        format!(
            "commit {new} is not published: the pre_publish check {program} {}; the published tree stays where it was{}",
            outcome(&result, check),
            tail(&result)
        ),
    ))
}

/// In place: checks `new` out into a temporary tree in the git directory, runs the check there,
/// and removes the tree.
pub(super) fn run_in_place(
    git: &Repository,
    repo: &Repo,
    check: &PrePublish,
    remote_ref: &str,
    old: Option<Oid>,
    new: Oid,
) -> Result<(), SyncError> {
    let tree = git.path().join(IN_PLACE_TREE);
    // One left by a killed sync (the caller holds the lock).
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir(&tree)
        .map_err(|e| from_io(&format!("cannot create {}", tree.display()), &e))?;
    let err = |e: git2::Error| classify(e, &AuthState::default());
    let written = git.find_object(new, None).and_then(|object| {
        let mut co = CheckoutBuilder::new();
        co.target_dir(&tree)
            .force()
            .recreate_missing(true)
            .update_index(false);
        git.checkout_tree(&object, Some(&mut co))
    });
    let result = written
        .map_err(err)
        .and_then(|()| run(repo, check, &tree, remote_ref, old, new));
    let _ = std::fs::remove_dir_all(&tree);
    result
}

fn outcome(r: &CommandResult, check: &PrePublish) -> String {
    match (r.timed_out, r.code) {
        (true, _) => format!(
            "did not finish within {}",
            humantime::format_duration(check.timeout)
        ),
        (false, Some(code)) => format!("failed (exit code {code})"),
        (false, None) => "was killed by a signal".into(),
    }
}

/// The last lines of the command's output (stderr after stdout), for the error.
fn tail(r: &CommandResult) -> String {
    let all = format!("{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(TAIL_LINES);
    format!(": {}", lines[start..].join("\n"))
}
