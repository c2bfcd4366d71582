//! The per-repository coalescing state machine ([`Coalescer`], one in each repository's entry
//! of the daemon's book) and the delivery-id dedupe set. Pure: no tokio, no clock, no git; the
//! daemon drives them under a lock.
//!
//! Invariant: per repository at most one sync runs; requests that arrive while it runs set one
//! pending follow-up, so N requests during a sync cause exactly one more sync, and that sync
//! starts after the last of them arrived (so it sees the newest commit).

use std::collections::{HashMap, VecDeque};

/// Hints kept per pending sync; past this the sync fetches unconditionally.
pub const MAX_HINTS: usize = 32;

/// Where a repository is in its cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Idle,
    Queued,
    Syncing,
    /// A sync failed and waits to try again, holding no worker; requests ride along.
    Backoff,
}

/// What the caller must do after [`Coalescer::request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The repo was idle: start a worker for it.
    Start,
    /// A sync is queued or running already; this request rides along.
    Coalesced,
}

/// What a sync should fetch for: the commits deliveries named (`after`), or `None` to fetch
/// unconditionally (API, schedule, start-up, or too many hints).
pub type Hints = Option<Vec<String>>;

/// One repository's coalescing state.
#[derive(Debug, Default)]
pub struct Coalescer {
    state: State,
    /// For the next sync: requests since the last start.
    pending: bool,
    hints: Hints,
    /// A pending request asked for a forced sync (rewrite the tree even when it is at the tip).
    force: bool,
    /// Sequence number of the newest request; a sync that starts covers all requests up to it.
    requested: u64,
}

/// What a sync that starts now covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub hints: Hints,
    /// A request it covers asked to rewrite the tree (`?force=true`).
    pub force: bool,
    /// Requests with a sequence number up to this one are answered by this sync.
    pub covers: u64,
}

impl Coalescer {
    pub fn state(&self) -> State {
        self.state
    }

    /// True when requests arrived since the running sync started: a sync that is running runs
    /// once more afterwards; one in backoff takes them along into its next attempt.
    pub fn pending(&self) -> bool {
        self.pending && matches!(self.state, State::Syncing | State::Backoff)
    }

    /// Records request number `seq` (numbers grow with every request the caller makes, so a
    /// sync's [`Started::covers`] tells which requests it answers). `hint` is a commit the remote
    /// should have, or `None` to force a fetch.
    pub fn request(&mut self, seq: u64, hint: Option<&str>) -> Action {
        self.requested = seq;
        // Merge hints: any request without one forces a fetch; too many hints do too.
        let fresh = !self.pending;
        self.hints = match (fresh, self.hints.take(), hint) {
            (true, _, Some(h)) => Some(vec![h.to_string()]),
            (true, _, None) | (false, None, _) | (false, Some(_), None) => None,
            (false, Some(mut hs), Some(h)) => {
                if !hs.iter().any(|x| x == h) {
                    hs.push(h.to_string());
                }
                (hs.len() <= MAX_HINTS).then_some(hs)
            }
        };
        self.pending = true;
        match self.state {
            State::Idle => {
                self.state = State::Queued;
                Action::Start
            }
            _ => Action::Coalesced,
        }
    }

    /// Marks the request just made as forced: the sync that covers it fetches and rewrites the
    /// tree even when it is at the tip. It rides along with a sync already queued (which then is
    /// forced), or with the follow-up of a running one.
    pub fn force(&mut self) {
        if self.pending {
            self.force = true;
            self.hints = None;
        }
    }

    /// A worker starts syncing: takes the pending requests. `None` if nothing is pending (the
    /// worker should stop).
    pub fn start(&mut self) -> Option<Started> {
        if !self.pending {
            self.state = State::Idle;
            return None;
        }
        self.pending = false;
        self.state = State::Syncing;
        Some(Started {
            hints: self.hints.take(),
            force: std::mem::take(&mut self.force),
            covers: self.requested,
        })
    }

    /// The running sync failed and waits to try again: it is in backoff until
    /// [`Coalescer::retry`].
    pub fn back_off(&mut self) {
        self.state = State::Backoff;
    }

    /// The sync in backoff tries again: requests that arrived since it started ride along (it
    /// now covers them, and must satisfy their hints too), so none waits for a sync of its own.
    pub fn retry(&mut self, current: &mut Started) {
        self.state = State::Syncing;
        if !self.pending {
            return;
        }
        self.pending = false;
        current.covers = self.requested;
        current.force |= std::mem::take(&mut self.force);
        current.hints = match (current.hints.take(), self.hints.take()) {
            (Some(mut hs), Some(more)) => {
                for h in more {
                    if !hs.contains(&h) {
                        hs.push(h);
                    }
                }
                (hs.len() <= MAX_HINTS).then_some(hs)
            }
            _ => None,
        };
    }

    /// The running sync finished. Returns true when requests arrived meanwhile: the worker must
    /// run once more (the repo is `Queued` again); otherwise it is `Idle`.
    pub fn finish(&mut self) -> bool {
        self.state = if self.pending {
            State::Queued
        } else {
            State::Idle
        };
        self.pending
    }
}

/// What is known of a delivery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted; its sync has not finished yet (or it asked for nothing).
    Accepted,
    Succeeded,
    Failed,
}

/// A bounded set of recent delivery ids (oldest evicted first). A redelivery of an id whose sync
/// failed is processed again; any other redelivery is answered without work.
#[derive(Debug)]
pub struct Dedupe {
    cap: usize,
    order: VecDeque<String>,
    seen: HashMap<String, Delivery>,
}

impl Dedupe {
    pub fn new(cap: usize) -> Self {
        Dedupe {
            cap: cap.max(1),
            order: VecDeque::new(),
            seen: HashMap::new(),
        }
    }

    /// Records `id` as accepted unless it is a duplicate; returns the earlier state of a
    /// duplicate, `None` for a new id (or one whose sync failed, which is processed again).
    pub fn admit(&mut self, id: &str) -> Option<Delivery> {
        match self.seen.get(id) {
            Some(Delivery::Failed) | None => {}
            Some(d) => return Some(*d),
        }
        if self
            .seen
            .insert(id.to_string(), Delivery::Accepted)
            .is_none()
        {
            self.order.push_back(id.to_string());
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
        None
    }

    /// Forgets `id` again: [`Self::admit`] recorded it, but nothing was queued for it after all
    /// (shutdown began, or its repositories left the config), so a redelivery must be processed.
    /// A forgotten id and a failed one are alike to `admit`.
    pub fn forget(&mut self, id: &str) {
        if self.seen.remove(id).is_some() {
            self.order.retain(|known| known != id);
        }
    }

    /// Records how a sync that answered `id` ended. A delivery that fed several repositories is
    /// failed if any of their syncs failed.
    pub fn settle(&mut self, id: &str, ok: bool) {
        if let Some(d) = self.seen.get_mut(id) {
            *d = match (*d, ok) {
                (Delivery::Failed, _) | (_, false) => Delivery::Failed,
                (_, true) => Delivery::Succeeded,
            };
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository's coalescer and the numbers its requests get, as the daemon's book keeps them.
    #[derive(Default)]
    struct Numbered {
        c: Coalescer,
        seq: u64,
    }

    impl Numbered {
        fn request(&mut self, hint: Option<&str>) -> Action {
            self.seq += 1;
            self.c.request(self.seq, hint)
        }
    }

    impl std::ops::Deref for Numbered {
        type Target = Coalescer;
        fn deref(&self) -> &Coalescer {
            &self.c
        }
    }

    impl std::ops::DerefMut for Numbered {
        fn deref_mut(&mut self) -> &mut Coalescer {
            &mut self.c
        }
    }

    #[test]
    fn n_requests_during_a_sync_cause_exactly_one_more() {
        let mut c = Numbered::default();
        assert_eq!(c.request(Some("c1")), Action::Start);
        assert_eq!(c.state(), State::Queued);
        let s = c.start().unwrap();
        assert_eq!(s.hints, Some(vec!["c1".to_string()]));
        assert_eq!(c.state(), State::Syncing);
        for i in 2..=50 {
            assert_eq!(c.request(Some(&format!("c{i}"))), Action::Coalesced);
        }
        assert!(c.pending());
        assert!(c.finish(), "one follow-up");
        assert_eq!(c.state(), State::Queued);
        let s = c.start().unwrap();
        assert_eq!(
            s.hints, None,
            "49 hints exceed MAX_HINTS: fetch unconditionally"
        );
        assert_eq!(s.covers, 50);
        assert!(!c.finish(), "no second follow-up");
        assert_eq!(c.state(), State::Idle);
        assert!(c.start().is_none());
    }

    #[test]
    fn requests_while_queued_ride_along() {
        let mut c = Numbered::default();
        assert_eq!(c.request(Some("x")), Action::Start);
        assert_eq!(c.request(Some("y")), Action::Coalesced);
        let s = c.start().unwrap();
        assert_eq!(s.hints, Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(s.covers, 2);
        assert!(!c.finish());
    }

    #[test]
    fn requests_during_backoff_ride_along_with_the_retry() {
        let mut c = Numbered::default();
        c.request(Some("x"));
        let mut s = c.start().unwrap();
        c.back_off();
        assert_eq!(c.state(), State::Backoff);
        assert!(!c.pending());
        assert_eq!(c.request(Some("y")), Action::Coalesced);
        assert_eq!(c.request(Some("x")), Action::Coalesced);
        assert!(c.pending());
        c.retry(&mut s);
        assert_eq!(c.state(), State::Syncing);
        assert_eq!(s.hints, Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(s.covers, 3, "the retry answers every request so far");
        assert!(!c.finish(), "nothing left for a sync of its own");
        assert_eq!(c.state(), State::Idle);

        // A request without a hint during backoff makes the retry fetch unconditionally; with
        // nothing new, the retry keeps what it had.
        c.request(Some("z"));
        let mut s = c.start().unwrap();
        c.back_off();
        c.retry(&mut s);
        assert_eq!(
            (s.hints.clone(), s.covers),
            (Some(vec!["z".to_string()]), 4)
        );
        c.back_off();
        c.request(None);
        c.retry(&mut s);
        assert_eq!((s.hints, s.covers), (None, 5));
    }

    #[test]
    fn a_request_without_hint_forces_the_fetch() {
        let mut c = Numbered::default();
        c.request(Some("x"));
        c.request(None);
        c.request(Some("y"));
        assert_eq!(c.start().unwrap().hints, None);
    }

    #[test]
    fn a_forced_request_is_not_swallowed_by_coalescing() {
        let mut c = Numbered::default();
        // Queued (not started) with a hint: the force rides along and drops the hint.
        c.request(Some("x"));
        c.request(None);
        c.force();
        c.request(Some("y"));
        let s = c.start().unwrap();
        assert!(s.force);
        assert_eq!(s.hints, None);
        // During a sync: the follow-up is forced, the one after it is not.
        c.request(Some("z"));
        c.force();
        assert!(c.finish());
        let s = c.start().unwrap();
        assert!(s.force, "the follow-up carries the force");
        c.request(Some("w"));
        assert!(c.finish());
        let s = c.start().unwrap();
        assert!(!s.force, "a force is used once");
        assert_eq!(s.hints, Some(vec!["w".to_string()]));
        assert!(!c.finish());
        // A forced request on an idle repo.
        let mut b = Numbered::default();
        assert_eq!(b.request(None), Action::Start);
        b.force();
        assert!(b.start().unwrap().force);
        // `force` without a pending request does nothing.
        assert!(!b.finish());
        b.force();
        assert!(b.start().is_none());
    }

    #[test]
    fn a_sync_covers_its_own_requests_among_numbers_shared_by_every_repo() {
        // The daemon numbers requests across repositories: a sync covers the newest number its
        // repository saw, whatever numbers went to others meanwhile.
        let (mut a, mut b) = (Coalescer::default(), Coalescer::default());
        assert_eq!(a.request(1, None), Action::Start);
        assert_eq!(b.request(2, None), Action::Start);
        assert_eq!(a.request(3, Some("x")), Action::Coalesced);
        assert_eq!(a.start().map(|s| s.covers), Some(3));
        assert_eq!(b.state(), State::Queued, "repositories are independent");
        assert_eq!(b.request(4, None), Action::Coalesced);
        assert_eq!(b.start().map(|s| s.covers), Some(4));
        assert!(!a.finish());
        assert_eq!((a.state(), b.state()), (State::Idle, State::Syncing));
    }

    #[test]
    fn dedupe_answers_duplicates_and_retries_failures() {
        let mut d = Dedupe::new(2);
        assert_eq!(d.admit("x"), None);
        assert_eq!(d.admit("x"), Some(Delivery::Accepted));
        d.settle("x", false);
        assert_eq!(
            d.admit("x"),
            None,
            "after a failed sync a redelivery is processed again"
        );
        d.settle("x", true);
        assert_eq!(d.admit("x"), Some(Delivery::Succeeded));
        d.admit("w");
        d.settle("w", false);
        d.settle("w", true);
        assert_eq!(d.admit("w"), None, "one failed repo fails the delivery");
        let mut d = Dedupe::new(2);
        d.admit("x");
        d.admit("y");
        d.admit("z");
        assert_eq!(d.len(), 2, "bounded");
        assert_eq!(d.admit("x"), None, "the oldest was evicted");
        assert_eq!(d.admit("x"), Some(Delivery::Accepted));
    }

    #[test]
    fn a_forgotten_id_is_new_again_and_frees_its_place() {
        let mut d = Dedupe::new(2);
        assert_eq!(d.admit("x"), None);
        d.forget("x");
        d.forget("never seen");
        assert!(d.is_empty());
        assert_eq!(d.admit("x"), None, "processed again");
        assert_eq!(d.admit("y"), None);
        d.forget("x");
        assert_eq!(d.admit("z"), None);
        assert_eq!(
            d.admit("y"),
            Some(Delivery::Accepted),
            "y was not evicted for x's place"
        );
    }
}
