//! The per-repository coalescing state machine and the delivery-id dedupe set. Pure: no tokio,
//! no clock, no git; the daemon drives them under a lock.
//!
//! Invariant: per repository at most one sync runs; requests that arrive while it runs set one
//! pending follow-up, so N requests during a sync cause exactly one more sync, and that sync
//! starts after the last of them arrived (so it sees the newest commit).

use std::collections::{HashMap, VecDeque};

/// Hints kept per pending sync; past this the sync fetches unconditionally.
pub const MAX_HINTS: usize = 32;

/// Where a repository is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
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

#[derive(Debug, Default)]
struct Entry {
    state: Option<State>,
    /// For the next sync: requests since the last start.
    pending: bool,
    hints: Hints,
    /// A pending request asked for a forced sync (rewrite the tree even when it is at the tip).
    force: bool,
    /// Sequence number of the newest request; a sync that starts covers all requests up to it.
    requested: u64,
}

/// The coalescing state for every repository.
#[derive(Debug, Default)]
pub struct Coalescer {
    repos: HashMap<String, Entry>,
    seq: u64,
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
    pub fn state(&self, name: &str) -> State {
        self.repos
            .get(name)
            .and_then(|e| e.state)
            .unwrap_or(State::Idle)
    }

    /// True when requests arrived since the running sync started: a sync that is running runs
    /// once more afterwards; one in backoff takes them along into its next attempt.
    pub fn pending(&self, name: &str) -> bool {
        self.repos
            .get(name)
            .is_some_and(|e| e.pending && matches!(e.state, Some(State::Syncing | State::Backoff)))
    }

    /// Records a request. `hint` is a commit the remote should have, or `None` to force a fetch.
    /// Returns the action and the request's sequence number.
    pub fn request(&mut self, name: &str, hint: Option<&str>) -> (Action, u64) {
        self.seq += 1;
        let seq = self.seq;
        let e = self.repos.entry(name.to_string()).or_default();
        e.requested = seq;
        // Merge hints: any request without one forces a fetch; too many hints do too.
        let fresh = !e.pending;
        e.hints = match (fresh, e.hints.take(), hint) {
            (true, _, Some(h)) => Some(vec![h.to_string()]),
            (true, _, None) | (false, None, _) | (false, Some(_), None) => None,
            (false, Some(mut hs), Some(h)) => {
                if !hs.iter().any(|x| x == h) {
                    hs.push(h.to_string());
                }
                (hs.len() <= MAX_HINTS).then_some(hs)
            }
        };
        e.pending = true;
        match e.state {
            None | Some(State::Idle) => {
                e.state = Some(State::Queued);
                (Action::Start, seq)
            }
            Some(_) => (Action::Coalesced, seq),
        }
    }

    /// Marks the request just made for `name` as forced: the sync that covers it fetches and
    /// rewrites the tree even when it is at the tip. It rides along with a sync already queued
    /// (which then is forced), or with the follow-up of a running one.
    pub fn force(&mut self, name: &str) {
        if let Some(e) = self.repos.get_mut(name).filter(|e| e.pending) {
            e.force = true;
            e.hints = None;
        }
    }

    /// A worker starts syncing `name`: takes the pending requests. `None` if nothing is pending
    /// (the worker should stop).
    pub fn start(&mut self, name: &str) -> Option<Started> {
        let e = self.repos.get_mut(name)?;
        if !e.pending {
            e.state = Some(State::Idle);
            return None;
        }
        e.pending = false;
        e.state = Some(State::Syncing);
        Some(Started {
            hints: e.hints.take(),
            force: std::mem::take(&mut e.force),
            covers: e.requested,
        })
    }

    /// The running sync of `name` failed and waits to try again: it is in backoff until
    /// [`Coalescer::retry`].
    pub fn back_off(&mut self, name: &str) {
        if let Some(e) = self.repos.get_mut(name) {
            e.state = Some(State::Backoff);
        }
    }

    /// The sync of `name` in backoff tries again: requests that arrived since it started ride
    /// along (it now covers them, and must satisfy their hints too), so none waits for a sync
    /// of its own.
    pub fn retry(&mut self, name: &str, current: &mut Started) {
        let Some(e) = self.repos.get_mut(name) else {
            return;
        };
        e.state = Some(State::Syncing);
        if !e.pending {
            return;
        }
        e.pending = false;
        current.covers = e.requested;
        current.force |= std::mem::take(&mut e.force);
        current.hints = match (current.hints.take(), e.hints.take()) {
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

    /// The running sync of `name` finished. Returns true when requests arrived meanwhile: the
    /// worker must run once more (the repo is `Queued` again); otherwise it is `Idle`.
    pub fn finish(&mut self, name: &str) -> bool {
        let Some(e) = self.repos.get_mut(name) else {
            return false;
        };
        if e.pending {
            e.state = Some(State::Queued);
            true
        } else {
            e.state = Some(State::Idle);
            false
        }
    }

    /// Forgets a repository removed from the config (its running sync, if any, finishes).
    pub fn remove(&mut self, name: &str) {
        self.repos.remove(name);
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

    #[test]
    fn n_requests_during_a_sync_cause_exactly_one_more() {
        let mut c = Coalescer::default();
        assert_eq!(c.request("a", Some("c1")).0, Action::Start);
        assert_eq!(c.state("a"), State::Queued);
        let s = c.start("a").unwrap();
        assert_eq!(s.hints, Some(vec!["c1".to_string()]));
        assert_eq!(c.state("a"), State::Syncing);
        for i in 2..=50 {
            assert_eq!(c.request("a", Some(&format!("c{i}"))).0, Action::Coalesced);
        }
        assert!(c.pending("a"));
        assert!(c.finish("a"), "one follow-up");
        assert_eq!(c.state("a"), State::Queued);
        let s = c.start("a").unwrap();
        assert_eq!(
            s.hints, None,
            "49 hints exceed MAX_HINTS: fetch unconditionally"
        );
        assert_eq!(s.covers, 50);
        assert!(!c.finish("a"), "no second follow-up");
        assert_eq!(c.state("a"), State::Idle);
        assert!(c.start("a").is_none());
    }

    #[test]
    fn requests_while_queued_ride_along() {
        let mut c = Coalescer::default();
        assert_eq!(c.request("a", Some("x")).0, Action::Start);
        assert_eq!(c.request("a", Some("y")).0, Action::Coalesced);
        let s = c.start("a").unwrap();
        assert_eq!(s.hints, Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(s.covers, 2);
        assert!(!c.finish("a"));
    }

    #[test]
    fn requests_during_backoff_ride_along_with_the_retry() {
        let mut c = Coalescer::default();
        c.request("a", Some("x"));
        let mut s = c.start("a").unwrap();
        c.back_off("a");
        assert_eq!(c.state("a"), State::Backoff);
        assert!(!c.pending("a"));
        assert_eq!(c.request("a", Some("y")).0, Action::Coalesced);
        assert_eq!(c.request("a", Some("x")).0, Action::Coalesced);
        assert!(c.pending("a"));
        c.retry("a", &mut s);
        assert_eq!(c.state("a"), State::Syncing);
        assert_eq!(s.hints, Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(s.covers, 3, "the retry answers every request so far");
        assert!(!c.finish("a"), "nothing left for a sync of its own");
        assert_eq!(c.state("a"), State::Idle);

        // A request without a hint during backoff makes the retry fetch unconditionally; with
        // nothing new, the retry keeps what it had.
        c.request("a", Some("z"));
        let mut s = c.start("a").unwrap();
        c.back_off("a");
        c.retry("a", &mut s);
        assert_eq!(
            (s.hints.clone(), s.covers),
            (Some(vec!["z".to_string()]), 4)
        );
        c.back_off("a");
        c.request("a", None);
        c.retry("a", &mut s);
        assert_eq!((s.hints, s.covers), (None, 5));
    }

    #[test]
    fn a_request_without_hint_forces_the_fetch() {
        let mut c = Coalescer::default();
        c.request("a", Some("x"));
        c.request("a", None);
        c.request("a", Some("y"));
        assert_eq!(c.start("a").unwrap().hints, None);
    }

    #[test]
    fn a_forced_request_is_not_swallowed_by_coalescing() {
        let mut c = Coalescer::default();
        // Queued (not started) with a hint: the force rides along and drops the hint.
        c.request("a", Some("x"));
        c.request("a", None);
        c.force("a");
        c.request("a", Some("y"));
        let s = c.start("a").unwrap();
        assert!(s.force);
        assert_eq!(s.hints, None);
        // During a sync: the follow-up is forced, the one after it is not.
        c.request("a", Some("z"));
        c.force("a");
        assert!(c.finish("a"));
        let s = c.start("a").unwrap();
        assert!(s.force, "the follow-up carries the force");
        c.request("a", Some("w"));
        assert!(c.finish("a"));
        let s = c.start("a").unwrap();
        assert!(!s.force, "a force is used once");
        assert_eq!(s.hints, Some(vec!["w".to_string()]));
        assert!(!c.finish("a"));
        // A forced request on an idle repo.
        assert_eq!(c.request("b", None).0, Action::Start);
        c.force("b");
        assert!(c.start("b").unwrap().force);
        // `force` without a pending request does nothing.
        assert!(!c.finish("b"));
        c.force("b");
        assert!(c.start("b").is_none());
    }

    #[test]
    fn repos_are_independent() {
        let mut c = Coalescer::default();
        assert_eq!(c.request("a", None).0, Action::Start);
        assert_eq!(c.request("b", None).0, Action::Start);
        c.start("a");
        assert_eq!(c.state("b"), State::Queued);
        assert!(!c.finish("a"));
        assert_eq!(c.state("a"), State::Idle);
        assert_eq!(c.state("b"), State::Queued);
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
