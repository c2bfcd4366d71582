//! The daemon's book: everything that changes as requests come and syncs finish, kept under one
//! lock. One [`RepoEntry`] per configured repository holds all that is known of it (its
//! coalescing state, status, waiters, the cause of its newest request, history, pushes not yet
//! synced, its schedule loop); it is made when the repository enters the config and dropped
//! whole when it leaves, so adding or removing a repository is one place ([`Book::add`],
//! [`Book::remove`]). Beside the entries: what is not per repository (the request numbers,
//! delivery-id dedupe, reload history).
//!
//! The entries are ordered by name: a page of a long list is a range, and a reload touches only
//! the entries of the repositories it adds or removes.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::watch;

use super::observe::{HISTORY, History, SyncRecord};
use super::status::{ReloadStatus, RepoStatus};
use super::{DEDUPE_CAPACITY, Trigger, Waiter};
use crate::config::Schedule;
use crate::queue::{Coalescer, Dedupe};

/// Webhooks per repository whose push → synced time is still to be measured; a repository that
/// keeps failing under a stream of pushes forgets the oldest.
const PENDING_PUSHES: usize = 256;

/// Everything that changes as requests come and syncs finish.
pub(super) struct Book {
    repos: BTreeMap<String, RepoEntry>,
    /// The number of the newest sync request, of any repository: a sync covers the requests of
    /// its repository up to a number ([`crate::queue::Started::covers`]).
    requests: u64,
    pub dedupe: Dedupe,
    pub reload: ReloadStatus,
}

/// All the daemon knows of one repository.
#[derive(Default)]
pub(super) struct RepoEntry {
    pub queue: Coalescer,
    pub status: RepoStatus,
    /// Who waits for the sync that covers request number `.0`.
    pub waiters: Vec<(u64, Waiter)>,
    /// What caused the newest request: the sync that starts next is logged with it.
    pub trigger: Option<Trigger>,
    /// The last [`HISTORY`] syncs, oldest first.
    pub history: History,
    /// Webhook requests not yet synced: (request number, when it arrived).
    pub pushes: Vec<(u64, Instant)>,
    /// The running schedule loop, if the repository has a schedule.
    pub schedule: Option<ScheduleLoop>,
}

/// A running schedule loop: the schedule it follows and the sender that stops it.
pub(super) struct ScheduleLoop {
    pub schedule: Schedule,
    pub stop: watch::Sender<bool>,
}

impl ScheduleLoop {
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

impl Book {
    /// A book with an entry for each of `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Book {
        let mut book = Book {
            repos: BTreeMap::new(),
            requests: 0,
            dedupe: Dedupe::new(DEDUPE_CAPACITY),
            reload: ReloadStatus::default(),
        };
        for name in names {
            book.add(name);
        }
        book
    }

    /// Makes the entry of a repository that entered the config (nothing if it has one).
    pub fn add(&mut self, name: &str) {
        if !self.repos.contains_key(name) {
            self.repos.insert(name.to_string(), RepoEntry::default());
        }
    }

    /// Drops the entry of a repository that left the config, and with it everything known of
    /// it: its schedule loop stops, and whoever waits for its sync is answered that it was
    /// abandoned (the waiter's channel closes). A sync of it still running finishes unrecorded.
    pub fn remove(&mut self, name: &str) {
        if let Some(entry) = self.repos.remove(name)
            && let Some(schedule) = entry.schedule
        {
            schedule.stop();
        }
    }

    pub fn repo(&self, name: &str) -> Option<&RepoEntry> {
        self.repos.get(name)
    }

    pub fn repo_mut(&mut self, name: &str) -> Option<&mut RepoEntry> {
        self.repos.get_mut(name)
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = &RepoEntry> {
        self.repos.values()
    }

    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut RepoEntry> {
        self.repos.values_mut()
    }

    /// The number of a new sync request.
    pub fn next_request(&mut self) -> u64 {
        self.requests += 1;
        self.requests
    }
}

impl RepoEntry {
    /// Remembers that a webhook asked for request number `seq`, to time push → synced.
    pub fn note_push(&mut self, seq: u64, at: Instant) {
        if self.pushes.len() >= PENDING_PUSHES {
            self.pushes.remove(0);
        }
        self.pushes.push((seq, at));
    }

    /// The pushes a successful sync covering request number `covers` synced: taken out, with
    /// when each arrived.
    pub fn synced_pushes(&mut self, covers: u64) -> Vec<Instant> {
        let (done, later): (Vec<_>, Vec<_>) =
            self.pushes.drain(..).partition(|(seq, _)| *seq <= covers);
        self.pushes = later;
        done.into_iter().map(|(_, at)| at).collect()
    }

    /// Adds a finished sync to the history, forgetting the oldest past [`HISTORY`].
    pub fn remember(&mut self, record: SyncRecord) {
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(record);
    }

    /// The waiters a sync covering request number `covers` answers, taken out.
    pub fn answered(&mut self, covers: u64) -> Vec<Waiter> {
        let (done, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(seq, _)| *seq <= covers);
        self.waiters = later;
        done.into_iter().map(|(_, w)| w).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::queue::Action;

    fn hourly() -> Schedule {
        let yaml = "repos:\n  - {name: a, url: 'https://h/a.git', directory: a, secret: s, interval: 1h}\n";
        let config = crate::config::tests_support::config(yaml);
        config.repos[0].schedule.clone().unwrap()
    }

    #[test]
    fn removing_a_repository_forgets_all_of_it_and_stops_its_schedule() {
        let mut book = Book::new(["a", "b"]);
        let seq = book.next_request();
        let a = book.repo_mut("a").unwrap();
        assert_eq!(a.queue.request(seq, None), Action::Start);
        a.trigger = Some(Trigger::Api);
        a.note_push(seq, Instant::now());
        let (report, mut answer) = tokio::sync::oneshot::channel();
        a.waiters.push((seq, Waiter::Report(report)));
        let (stop, mut stopped) = watch::channel(false);
        a.schedule = Some(ScheduleLoop {
            schedule: hourly(),
            stop,
        });

        book.remove("a");
        assert!(book.repo("a").is_none());
        assert!(
            *stopped.borrow_and_update(),
            "the schedule loop was told to stop"
        );
        assert!(
            answer.try_recv().is_err(),
            "the waiter learns it was abandoned"
        );
        assert_eq!(book.entries().count(), 1);

        // Back in the config: a fresh entry, nothing of the old one.
        book.add("a");
        let a = book.repo("a").unwrap();
        assert!(a.trigger.is_none() && a.pushes.is_empty() && a.waiters.is_empty());
        assert_eq!(a.queue.state(), crate::queue::State::Idle);
        // Adding a repository that has an entry keeps it.
        book.repo_mut("b").unwrap().status.syncs = 3;
        book.add("b");
        assert_eq!(book.repo("b").unwrap().status.syncs, 3);
    }

    #[test]
    fn a_sync_answers_the_waiters_and_pushes_it_covers() {
        let mut book = Book::new(["a"]);
        let (one, two) = (book.next_request(), book.next_request());
        let a = book.repo_mut("a").unwrap();
        let t = Instant::now();
        a.note_push(one, t);
        a.note_push(two, t);
        a.waiters.push((one, Waiter::Delivery("d1".into())));
        a.waiters.push((two, Waiter::Delivery("d2".into())));
        let answered = a.answered(one);
        assert!(matches!(answered.as_slice(), [Waiter::Delivery(id)] if id == "d1"));
        assert_eq!(a.synced_pushes(one).len(), 1);
        assert_eq!(a.waiters.len(), 1, "request two waits for a later sync");
        assert_eq!(a.pushes.len(), 1);
        for _ in 0..PENDING_PUSHES + 5 {
            a.note_push(two, t);
        }
        assert_eq!(a.pushes.len(), PENDING_PUSHES, "bounded");
    }
}
