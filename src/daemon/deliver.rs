//! What a verified push means for the configured repositories: which of them it concerns (by the
//! repository URL the payload names and the ref it moved), whether its delivery id was seen
//! before, and the syncs it queues. The HTTP handler only maps the answer to a status code.

use std::fmt;

use super::{Daemon, RequestError, Trigger};
use crate::config::{Repo, RepoMode, Target};
use crate::queue::Delivery;
use crate::url::match_key;
use crate::webhook::Push;

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Syncs were queued for `repos`; `ignored` says why the other repositories the delivery
    /// reached were left alone.
    Queued {
        repos: Vec<String>,
        ignored: Vec<String>,
    },
    /// The push concerns none of the repositories it reached; why, joined.
    Ignored(String),
    /// The delivery id was accepted before (and did not fail): nothing is queued again.
    Duplicate(Delivery),
    /// Shutdown began: nothing more is queued.
    ShuttingDown,
}

/// Why a push does not concern a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignore {
    /// The payload names repository URLs, none of them this repository's.
    OtherRepository,
    /// No update of the tracked ref.
    OtherRef { refs: Vec<String>, target: Target },
    /// The tracked ref was deleted upstream: the checkout keeps its last tree.
    Deleted(String),
    /// The repository left the config between verification and queueing.
    Removed,
}

impl fmt::Display for Ignore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignore::OtherRepository => f.write_str("the payload names another repository"),
            Ignore::OtherRef { refs, target } => {
                write!(f, "{} is not the tracked {target}", refs.join(", "))
            }
            Ignore::Deleted(r) => write!(f, "{r} was deleted upstream; the checkout is kept"),
            Ignore::Removed => f.write_str("removed from the config"),
        }
    }
}

/// Whether `push` concerns `repo`: the payload names the repo's URL (when it names any) and
/// updates its tracked ref. `tracked` is the remote ref a default-branch repo followed last
/// (`None` before its first fetch: then any branch may be the default one, and the fetch
/// settles it). `Ok(after)` to sync, with the pushed commit as a hint; else why not.
pub fn wanted(repo: &Repo, push: &Push, tracked: Option<&str>) -> Result<Option<String>, Ignore> {
    if !push.repo_urls.is_empty() {
        let want = Some(repo.url.match_key());
        if !push
            .repo_urls
            .iter()
            .any(|u| match_key(u).as_deref() == want)
        {
            return Err(Ignore::OtherRepository);
        }
    }
    if repo.deploy.mode == RepoMode::Mirror {
        // A mirror keeps every ref, deletions too: any push syncs it (no hint: it fetches all).
        return Ok(None);
    }
    let tracked = match &repo.target {
        Target::DefaultBranch => tracked.map(str::to_string),
        t => t.remote_ref(),
    };
    let update = push.updates.iter().find(|u| match &tracked {
        Some(r) => &u.git_ref == r,
        None => u.git_ref.starts_with("refs/heads/"),
    });
    let Some(update) = update else {
        return Err(Ignore::OtherRef {
            refs: push.updates.iter().map(|u| u.git_ref.clone()).collect(),
            target: repo.target.clone(),
        });
    };
    if update.deleted {
        return Err(Ignore::Deleted(update.git_ref.clone()));
    }
    Ok(update.after.clone())
}

/// A reason as the answer shows it: bare for a repository's own path, named on the shared one.
fn reason(repo: &Repo, shared: bool, why: &Ignore) -> String {
    if shared {
        format!("{}: {why}", repo.name)
    } else {
        why.to_string()
    }
}

/// The repositories a delivery is for, with the pushed commit of each, and why the others it
/// reached were left alone.
pub(super) type Routed<'r> = (Vec<(&'r Repo, Option<String>)>, Vec<String>);

impl Daemon {
    /// Which of `repos` the push concerns ([`wanted`]), and the dedupe of its delivery id once
    /// some repository wants it: the routes, or the answer when there is nothing to queue.
    pub(super) fn route<'r>(
        &self,
        repos: &[&'r Repo],
        push: &Push,
        delivery: Option<&str>,
    ) -> Result<Routed<'r>, Delivered> {
        let shared = repos.len() > 1;
        let mut targets = Vec::new();
        let mut ignored = Vec::new();
        for repo in repos {
            // Only a repository following the default branch needs the ref it last followed
            // (a lookup under the book's lock); the others name theirs.
            let tracked = match repo.target {
                Target::DefaultBranch => self.remote_ref(&repo.name),
                _ => None,
            };
            match wanted(repo, push, tracked.as_deref()) {
                Ok(after) => targets.push((*repo, after)),
                Err(why) => {
                    if let Ignore::Deleted(r) = &why {
                        tracing::info!(repo = %repo.name, r#ref = %r, "tracked ref deleted upstream; checkout kept as it is");
                    }
                    ignored.push(reason(repo, shared, &why));
                }
            }
        }
        if targets.is_empty() {
            return Err(Delivered::Ignored(ignored.join("; ")));
        }
        if let Some(id) = delivery
            && let Some(earlier) = self.book().dedupe.admit(id)
        {
            return Err(Delivered::Duplicate(earlier));
        }
        Ok((targets, ignored))
    }

    /// Hands an authentic push to the repositories it reached (`repos`: the one whose path it
    /// came in on, or those whose secret verified it on the shared endpoint). Nothing is recorded
    /// for a delivery that concerns none of them, so a redelivery after fixing the config is
    /// processed; the delivery id is checked for duplicates only once some repository wants it.
    pub fn deliver(&self, repos: &[&Repo], push: &Push, delivery: Option<&str>) -> Delivered {
        let (targets, mut ignored) = match self.route(repos, push, delivery) {
            Ok(routed) => routed,
            Err(answer) => return answer,
        };
        // The id was recorded by `route`, before queueing, so that a concurrent copy of the
        // delivery is a duplicate at once; when nothing gets queued after all, it is forgotten
        // again, so that the forge's redelivery is processed instead of being answered as a
        // duplicate.
        let mut queued = Vec::new();
        let mut shutting_down = false;
        for (repo, after) in targets {
            let trigger = Trigger::Webhook {
                delivery: delivery.map(str::to_string),
            };
            match self.request_sync(&repo.name, trigger, after.as_deref(), false) {
                Ok(_) => queued.push(repo.name.clone()),
                Err(RequestError::ShuttingDown) => {
                    shutting_down = true;
                    break;
                }
                Err(RequestError::UnknownRepo) => {
                    ignored.push(format!("{}: {}", repo.name, Ignore::Removed))
                }
            }
        }
        if queued.is_empty()
            && let Some(id) = delivery
        {
            self.book().dedupe.forget(id);
        }
        if shutting_down {
            return Delivered::ShuttingDown;
        }
        if queued.is_empty() {
            return Delivered::Ignored(ignored.join("; "));
        }
        Delivered::Queued {
            repos: queued,
            ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;
    use crate::config::tests_support::config;
    use crate::queue::State;
    use crate::webhook::RefUpdate;

    /// A config with these repos (YAML list items); `workers: 0` is set afterwards so that
    /// queued syncs wait for a permit forever: the queue is observable and no git runs.
    fn daemon(repos: &str) -> (Daemon, Config) {
        let mut config = config(&format!("repos:\n{repos}"));
        config.workers = 0;
        (Daemon::new(config.clone()), config)
    }

    fn repo(name: &str, url: &str, extra: &str) -> String {
        format!("  - {{name: {name}, url: '{url}', directory: /srv/{name}, secret: s{extra}}}\n")
    }

    fn push(urls: &[&str], git_ref: &str, after: &str) -> Push {
        Push {
            repo_urls: urls.iter().map(|u| u.to_string()).collect(),
            updates: vec![RefUpdate {
                git_ref: git_ref.into(),
                before: None,
                after: Some(after.into()),
                deleted: false,
            }],
        }
    }

    const A: &str = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3";

    #[test]
    fn every_url_form_of_the_configured_remote_matches() {
        let (_, config) = daemon(&repo(
            "site",
            "https://github.com/Acme/site.git",
            ", branch: main",
        ));
        let site = &config.repos[0];
        for url in [
            "https://github.com/acme/site",
            "git@github.com:acme/site.git",
            "ssh://git@github.com/Acme/site.git",
            "git://github.com/acme/site.git",
            "https://github.com/acme/site.git/",
        ] {
            assert_eq!(
                wanted(site, &push(&[url], "refs/heads/main", A), None),
                Ok(Some(A.into())),
                "{url}"
            );
        }
        for url in [
            "https://github.com/acme/other.git",
            "https://gitlab.com/acme/site.git",
        ] {
            assert_eq!(
                wanted(site, &push(&[url], "refs/heads/main", A), None),
                Err(Ignore::OtherRepository),
                "{url}"
            );
        }
        // A payload that names no URL (some system hooks) is matched by ref alone.
        assert_eq!(
            wanted(site, &push(&[], "refs/heads/main", A), None),
            Ok(Some(A.into()))
        );
    }

    #[test]
    fn only_the_tracked_ref_counts() {
        let (_, config) = daemon(&format!(
            "{}{}{}",
            repo("branch", "https://h/r.git", ", branch: main"),
            repo("tag", "https://h/r.git", ", tag: v1"),
            repo("default", "https://h/r.git", "")
        ));
        let (branch, tag, default) = (&config.repos[0], &config.repos[1], &config.repos[2]);
        let dev = push(&[], "refs/heads/dev", A);
        assert_eq!(
            wanted(branch, &dev, None).unwrap_err().to_string(),
            "refs/heads/dev is not the tracked branch main"
        );
        assert_eq!(
            wanted(tag, &push(&[], "refs/tags/v1", A), None),
            Ok(Some(A.into()))
        );
        assert_eq!(
            wanted(tag, &push(&[], "refs/heads/v1", A), None)
                .unwrap_err()
                .to_string(),
            "refs/heads/v1 is not the tracked tag v1"
        );
        // The default branch: any branch until the first fetch tells which one it is.
        assert!(wanted(default, &dev, None).is_ok());
        assert!(wanted(default, &push(&[], "refs/tags/v1", A), None).is_err());
        assert!(wanted(default, &dev, Some("refs/heads/main")).is_err());
        assert!(
            wanted(
                default,
                &push(&[], "refs/heads/main", A),
                Some("refs/heads/main")
            )
            .is_ok()
        );
    }

    #[test]
    fn a_deleted_tracked_ref_keeps_the_checkout() {
        let (_, config) = daemon(&repo("site", "https://h/r.git", ", branch: main"));
        let mut p = push(&[], "refs/heads/main", A);
        p.updates[0].after = None;
        p.updates[0].deleted = true;
        let why = wanted(&config.repos[0], &p, None).unwrap_err();
        assert_eq!(why, Ignore::Deleted("refs/heads/main".into()));
        assert_eq!(
            why.to_string(),
            "refs/heads/main was deleted upstream; the checkout is kept"
        );
    }

    #[tokio::test]
    async fn duplicates_are_answered_only_once_a_repo_wants_the_delivery() {
        let (d, config) = daemon(&repo("site", "https://h/r.git", ", branch: main"));
        let site = [&config.repos[0]];
        // Ignored first: nothing is recorded, so the same id is processed when it matters.
        assert!(matches!(
            d.deliver(&site, &push(&[], "refs/heads/dev", A), Some("id-1")),
            Delivered::Ignored(_)
        ));
        assert_eq!(
            d.deliver(&site, &push(&[], "refs/heads/main", A), Some("id-1")),
            Delivered::Queued {
                repos: vec!["site".into()],
                ignored: vec![]
            }
        );
        assert_eq!(d.status("site").unwrap().state, State::Queued);
        assert_eq!(
            d.deliver(&site, &push(&[], "refs/heads/main", A), Some("id-1")),
            Delivered::Duplicate(Delivery::Accepted)
        );
        // Without an id every delivery is processed (and coalesces into the queued sync).
        for _ in 0..2 {
            assert!(matches!(
                d.deliver(&site, &push(&[], "refs/heads/main", A), None),
                Delivered::Queued { .. }
            ));
        }
        d.close_intake();
        assert_eq!(
            d.deliver(&site, &push(&[], "refs/heads/main", A), Some("id-2")),
            Delivered::ShuttingDown
        );
    }

    #[tokio::test]
    async fn an_id_is_kept_only_once_its_sync_is_queued() {
        let (d, config) = daemon(&repo("site", "https://h/r.git", ", branch: main"));
        let main = push(&[], "refs/heads/main", A);
        // A repository that left the config between verification and queueing: nothing queued,
        // so the id is not kept and the redelivery (now reaching `site`) is processed.
        let (_, gone) = daemon(&repo("gone", "https://h/r.git", ", branch: main"));
        assert_eq!(
            d.deliver(&[&gone.repos[0]], &main, Some("id-1")),
            Delivered::Ignored("gone: removed from the config".into())
        );
        assert!(d.book().dedupe.is_empty());
        let site = [&config.repos[0]];
        assert!(matches!(
            d.deliver(&site, &main, Some("id-1")),
            Delivered::Queued { .. }
        ));
        assert_eq!(d.book().dedupe.len(), 1);
        // Shutdown began: 503, and the id is not kept (the restarted daemon gets the redelivery;
        // and a daemon that kept running would process it too).
        d.close_intake();
        assert_eq!(
            d.deliver(&site, &main, Some("id-2")),
            Delivered::ShuttingDown
        );
        assert_eq!(d.book().dedupe.len(), 1);
        assert!(matches!(
            d.deliver(&site, &main, Some("id-1")),
            Delivered::Duplicate(Delivery::Accepted)
        ));
    }

    #[tokio::test]
    async fn the_shared_endpoint_names_each_repo_it_left_alone() {
        let (d, config) = daemon(&format!(
            "{}{}",
            repo("site", "https://h/site.git", ", branch: main"),
            repo("docs", "https://h/docs.git", ", branch: main")
        ));
        let both: Vec<&Repo> = config.repos.iter().collect();
        assert_eq!(
            d.deliver(
                &both,
                &push(&["https://h/docs.git"], "refs/heads/main", A),
                Some("x")
            ),
            Delivered::Queued {
                repos: vec!["docs".into()],
                ignored: vec!["site: the payload names another repository".into()]
            }
        );
        assert_eq!(
            d.deliver(&both, &push(&["https://h/other.git"], "refs/heads/main", A), Some("y")),
            Delivered::Ignored(
                "site: the payload names another repository; docs: the payload names another repository"
                    .into()
            )
        );
    }
}
