//! Requests this node accepted while the fleet could not store them: queued on this node at
//! once, kept here and sent when the fleet is back. One per repository: the stream keeps only
//! the newest request per repository anyway, and any of them brings a node to the tip. Pure.

use std::collections::BTreeMap;

use super::message::Message;

/// The requests waiting for the fleet, by repository.
#[derive(Debug, Default)]
pub struct Outbox {
    by_repo: BTreeMap<String, Message>,
}

impl Outbox {
    /// Keeps `m`, merged with what waits for its repository already: the newer id, forced if
    /// either was.
    pub fn push(&mut self, m: Message) {
        let merged = match self.by_repo.remove(&m.repo) {
            Some(old) => Message {
                force: old.force || m.force,
                ..m
            },
            None => m,
        };
        self.by_repo.insert(merged.repo.clone(), merged);
    }

    /// Everything waiting, to send; what fails goes back with [`Outbox::put_back`].
    pub fn take(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.by_repo).into_values().collect()
    }

    /// `m` could not be sent: it waits again, unless a newer request for its repository came in
    /// meanwhile (which then covers it, forced if either was).
    pub fn put_back(&mut self, m: Message) {
        match self.by_repo.get_mut(&m.repo) {
            Some(newer) => newer.force |= m.force,
            None => {
                self.by_repo.insert(m.repo.clone(), m);
            }
        }
    }

    /// What waits for `repo`.
    pub fn get(&self, repo: &str) -> Option<&Message> {
        self.by_repo.get(repo)
    }

    pub fn len(&self) -> usize {
        self.by_repo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_repo.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use crate::fleet::message::outboxed as msg;

    #[test]
    fn one_request_per_repository_the_newest_forced_if_any_was() {
        let mut o = Outbox::default();
        o.push(msg("site", "1", true));
        o.push(msg("site", "2", false));
        o.push(msg("docs", "3", false));
        assert_eq!(o.len(), 2);
        let sent = o.take();
        assert!(o.is_empty());
        let site = sent.iter().find(|m| m.repo == "site").unwrap();
        assert_eq!((site.id.as_str(), site.force), ("2", true));
    }

    #[test]
    fn a_failed_send_waits_again_unless_a_newer_request_covers_it() {
        let mut o = Outbox::default();
        o.push(msg("site", "1", true));
        let sent = o.take();
        o.push(msg("site", "2", false));
        for m in sent {
            o.put_back(m);
        }
        let left = o.take();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].id.as_str(), left[0].force), ("2", true));
        o.put_back(msg("docs", "4", false));
        assert_eq!(o.take()[0].id, "4");
    }
}
