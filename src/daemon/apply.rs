//! Reload: read the config file again and, only when it loads completely, put it in force and
//! reconcile what depends on it (queues and status of removed repos, schedule loops, the worker
//! pool, resyncs of repos whose remote or ref changed).

use chrono::Utc;

use super::book::ScheduleLoop;
use super::{Daemon, Trigger};
use crate::config::{Config, Repo};

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// The listen address changed: the caller binds the new one and retires the old.
    pub listen_changed: bool,
}

impl Daemon {
    /// Starts, restarts or stops schedule loops so they match the config in force.
    pub fn sync_schedules(&self) {
        let config = self.config();
        self.schedule(config.repos.iter());
    }

    /// Starts, restarts or stops the schedule loops of `repos` so they match their config.
    fn schedule<'a>(&self, repos: impl Iterator<Item = &'a Repo>) {
        let mut book = self.book();
        for repo in repos {
            let Some(entry) = book.repo_mut(&repo.name) else {
                continue;
            };
            let running = entry.schedule.as_ref().map(|s| &s.schedule);
            if running == repo.schedule.as_ref() {
                continue;
            }
            if let Some(old) = entry.schedule.take() {
                old.stop();
                entry.status.next_run = None;
            }
            let Some(schedule) = &repo.schedule else {
                continue;
            };
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            entry.schedule = Some(ScheduleLoop {
                schedule: schedule.clone(),
                stop,
            });
            let (d1, d2, n1, n2) = (
                self.clone(),
                self.clone(),
                repo.name.clone(),
                repo.name.clone(),
            );
            tokio::spawn(crate::schedule::tick_loop(
                schedule.clone(),
                std::sync::Arc::new(crate::schedule::SystemClock),
                stop_rx,
                move |next| {
                    if let Some(entry) = d1.book().repo_mut(&n1) {
                        entry.status.next_run = next;
                    }
                },
                move || {
                    if let Err(e) = d2.request_sync(&n2, Trigger::Schedule, None, false) {
                        tracing::debug!(repo = %n2, error = ?e, "scheduled sync not queued");
                    }
                },
            ));
        }
    }

    /// Reads the config file again (and the secret files it names) on a blocking thread. An
    /// invalid config is logged with file and line and changes nothing.
    pub async fn read_config(&self) -> Result<Config, String> {
        let Some(path) = self.config().source.clone() else {
            return Err("the config was not loaded from a file".into());
        };
        match tokio::task::spawn_blocking(move || crate::config::load_file(&path)).await {
            Ok(Ok(new)) => Ok(new),
            Ok(Err(e)) => {
                for p in e.problems() {
                    tracing::error!(problem = %p, "config reload refused; the running config stays");
                }
                if e.problems().is_empty() {
                    tracing::error!(error = %e, "config reload refused; the running config stays");
                }
                Err(e.to_string())
            }
            Err(e) => Err(format!("reload task failed: {e}")),
        }
    }

    /// Counts a reload in the status: a success, or a failure and why.
    pub fn count_reload(&self, result: Result<(), String>) {
        self.0.metrics.reload(result.is_ok());
        let mut book = self.book();
        book.reload.last_reload = Some(Utc::now());
        match result {
            Ok(()) => {
                book.reload.reloads += 1;
                book.reload.last_error = None;
            }
            Err(e) => {
                book.reload.failures += 1;
                book.reload.last_error = Some(e);
            }
        }
    }

    /// Puts `new` in force at once: removed repos stop receiving webhooks and ticks (their
    /// directories stay); added repos get an initial sync (with `initialise`); repos whose URL,
    /// ref, remote, directory or way of publishing (mode, publish, verify) changed resync; `workers` resizes the pool.
    pub fn apply(&self, new: Config) -> ReloadSummary {
        let old = self.config();
        crate::sync::configure(&new);
        let mut summary = ReloadSummary {
            listen_changed: old.listen != new.listen,
            ..Default::default()
        };
        let mut resync = Vec::new();
        for r in &new.repos {
            match old.repo(&r.name) {
                None => {
                    summary.added.push(r.name.clone());
                    if new.initialise {
                        resync.push(r.name.clone());
                    }
                }
                Some(o) if o != r => {
                    summary.changed.push(r.name.clone());
                    if o.url != r.url
                        || o.target != r.target
                        || o.remote != r.remote
                        || o.directory != r.directory
                        || o.deploy.mode != r.deploy.mode
                        || o.deploy.publish != r.deploy.publish
                        || o.deploy.verify != r.deploy.verify
                    {
                        resync.push(r.name.clone());
                    }
                }
                Some(_) => {}
            }
        }
        summary.removed = old
            .repos
            .iter()
            .filter(|o| new.repo(&o.name).is_none())
            .map(|o| o.name.clone())
            .collect();
        if new.workers > old.workers {
            self.0.workers.add_permits(new.workers - old.workers);
        } else if new.workers < old.workers {
            // Take the surplus permits as they come free and drop them.
            let surplus = (old.workers - new.workers) as u32;
            let sem = self.0.workers.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        // Entries are made before the config that names them is in force, and dropped after
        // the one without them is: a repository the config in force names always has one.
        {
            let mut book = self.book();
            for name in &summary.added {
                book.add(name);
            }
        }
        self.set_config(new);
        {
            let mut book = self.book();
            for name in &summary.removed {
                book.remove(name);
            }
        }
        for name in &summary.removed {
            self.0.metrics.forget_repo(name);
        }
        // Removed repositories' loops stopped with their entries; unchanged ones keep theirs.
        let config = self.config();
        let touched = summary.added.iter().chain(&summary.changed);
        self.schedule(touched.filter_map(|name| config.repo(name)));
        for name in &resync {
            let _ = self.request_sync(name, Trigger::Reload, None, false);
        }
        tracing::info!(added = ?summary.added, removed = ?summary.removed, changed = ?summary.changed, listen_changed = summary.listen_changed, "config reloaded");
        summary
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::tests_support::config;

    /// A repository at `dir` with one commit on `main`.
    fn origin(dir: &std::path::Path) {
        let git = git2::Repository::init(dir).unwrap();
        std::fs::write(dir.join("f.txt"), "f\n").unwrap();
        let mut index = git.index().unwrap();
        index.add_path(std::path::Path::new("f.txt")).unwrap();
        let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@invalid").unwrap();
        git.commit(Some("refs/heads/main"), &sig, &sig, "c", &tree, &[])
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sync_that_ends_after_its_repository_left_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, fifo) = (tmp.path().join("origin"), tmp.path().join("go"));
        origin(&src);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // `on_success` reads the fifo: the sync stays running until the test writes to it.
        let a = format!(
            "  - {{name: a, url: 'file://{}', directory: {}, branch: main, \
             insecure_no_secret: true, on_success: {{command: [cat, '{}']}}}}\n",
            src.display(),
            tmp.path().join("a").display(),
            fifo.display(),
        );
        let b = "  - {name: b, url: 'https://h/b.git', directory: b, secret: s}\n";
        let with_a = config(&format!("initialise: false\nrepos:\n{a}{b}"));
        let without_a = config(&format!("initialise: false\nrepos:\n{b}"));
        let d = Daemon::new(with_a.clone());
        let mut synced = d.sync_events();
        let waiting = d.request_sync("a", Trigger::Api, None, true).unwrap();

        // Opening the fifo for writing returns once `on_success` opened it to read.
        let fifo_w = fifo.clone();
        let writer = tokio::task::spawn_blocking(move || std::fs::File::create(fifo_w).unwrap());
        let writer = tokio::time::timeout(std::time::Duration::from_secs(60), writer)
            .await
            .expect("on_success started")
            .unwrap();
        assert_eq!(d.apply(without_a).removed, ["a"]);
        assert!(
            waiting.unwrap().await.is_err(),
            "its waiter learns the sync was abandoned"
        );
        drop(writer); // `cat` reads EOF, exits 0: the sync finishes.
        tokio::time::timeout(std::time::Duration::from_secs(60), synced.changed())
            .await
            .expect("the sync finished")
            .unwrap();

        assert_eq!(d.apply(with_a).added, ["a"]);
        let view = d.status("a").unwrap();
        assert_eq!(
            (view.status.syncs, view.status.commit.as_deref()),
            (0, None),
            "a repository added back starts afresh"
        );
        assert_eq!(d.history("a").unwrap(), []);
    }
}
