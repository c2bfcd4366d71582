//! The fleet's messages and the decisions about them. Pure: the subject a repository's requests
//! go to, the message (with a version field), the id JetStream dedupes on, what a node does with
//! a message it receives, and how it answers JetStream once the sync that covers it finished.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::daemon::Relayed;

/// The message format this node writes and reads; a node refuses messages of a newer version
/// (an older node cannot know what a newer field means) and reads older ones.
pub const VERSION: u32 = 1;

/// Every request is published under `hookmirror.push.<repository>`; the stream takes them all.
pub const SUBJECT_PREFIX: &str = "hookmirror.push";

/// A failed sync of a fleet request is retried this much later (times the deliveries so far):
/// long enough for a flapping remote to come back, short enough to matter.
pub const RETRY_DELAY: Duration = Duration::from_secs(15);

/// Deliveries of one message whose syncs all failed before the node gives up on it (the failure
/// stays in status; the next push or schedule tries again).
pub const MAX_ATTEMPTS: i64 = 3;

/// One sync request for every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// [`VERSION`] when written.
    pub v: u32,
    /// Also the `Nats-Msg-Id` header: JetStream stores a message id once within its window.
    pub id: String,
    pub repo: String,
    /// The pushed commit: a node whose checkout has it already need not fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The node that accepted the request.
    pub origin: String,
    /// The origin queued it itself, having failed to store it in the fleet then (it was sent
    /// from its outbox later). The origin syncs it all the same: having replaced a newer
    /// request in the stream (the stream keeps one per repository), it may be the only word
    /// the origin gets of that newer push.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synced_at_origin: bool,
}

/// What a node does with a message it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Queue a sync of `repo`; ack once the sync that covers it finished.
    Sync {
        repo: String,
        hint: Option<String>,
        delivery: Option<String>,
        force: bool,
    },
    /// Nothing to do here: ack at once (and say why in the debug log).
    Skip(String),
}

/// How a node answers JetStream for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ack,
    /// Deliver it again after this delay.
    Retry(Duration),
    /// Stop delivering it (to this node).
    GiveUp,
}

/// The subject of `repo`'s requests. A repository name may hold what subjects may not (`.` is
/// their separator, `*` and `>` wildcards, spaces end them): every byte outside letters, digits,
/// `-` and `_` is written as `%XX`, so distinct names get distinct subjects.
pub fn subject(repo: &str) -> String {
    format!("{SUBJECT_PREFIX}.{}", token(repo))
}

/// `repo` as one subject token (and a file name): see [`subject`].
pub fn token(repo: &str) -> String {
    let mut token = String::with_capacity(repo.len());
    for b in repo.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            token.push(b as char);
        } else {
            token.push_str(&format!("%{b:02X}"));
        }
    }
    token
}

/// The subjects the stream holds and each node's consumer follows.
pub fn all_subjects() -> String {
    format!("{SUBJECT_PREFIX}.>")
}

/// The message for `request`, accepted on `node`. A forge delivery's id (per repository: one
/// delivery may concern several) is the dedupe id, so the same delivery sent to two nodes is
/// stored once; an API request gets `unique` (each call is a request of its own).
pub fn for_request(request: &Relayed, node: &str, unique: &str) -> Message {
    let id = match &request.delivery {
        Some(d) => format!("delivery:{d}:{}", request.repo),
        None => format!("api:{node}:{unique}"),
    };
    Message {
        v: VERSION,
        id,
        repo: request.repo.clone(),
        hint: request.hint.clone(),
        delivery: request.delivery.clone(),
        force: request.force,
        origin: node.to_string(),
        synced_at_origin: false,
    }
}

impl Message {
    /// The message as the outbox sends it later, the origin having synced it at once: without
    /// the hint (by the time it is sent, the stream may hold a newer push of the repository,
    /// which this one replaces; a fetch without a hint brings every node to the tip anyway).
    pub fn synced_here(mut self) -> Message {
        self.synced_at_origin = true;
        self.hint = None;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An outboxed request of `repo` with `id`, for tests of what keeps such requests.
#[cfg(test)]
pub(super) fn outboxed(repo: &str, id: &str, force: bool) -> Message {
    Message {
        v: VERSION,
        id: id.into(),
        repo: repo.into(),
        hint: None,
        delivery: None,
        force,
        origin: "n".into(),
        synced_at_origin: true,
    }
}

/// What a node does with `payload`; `configured` says whether a repository is in its config.
/// Also the message's id, when it could be read.
pub fn decide(payload: &[u8], configured: impl Fn(&str) -> bool) -> (Option<String>, Decision) {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    match serde_json::from_slice::<Version>(payload) {
        Ok(Version { v }) if v > VERSION => {
            return (
                None,
                Decision::Skip(format!(
                    "message version {v} is newer than this node's ({VERSION}): upgrade it"
                )),
            );
        }
        Ok(_) => {}
        Err(_) => return (None, Decision::Skip("not a hookmirror message".into())),
    }
    let m: Message = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => return (None, Decision::Skip(format!("unreadable message: {e}"))),
    };
    let decision = if !configured(&m.repo) {
        Decision::Skip(format!("`{}` is not configured on this node", m.repo))
    } else {
        Decision::Sync {
            repo: m.repo,
            hint: m.hint,
            delivery: m.delivery,
            force: m.force,
        }
    };
    (Some(m.id), decision)
}

/// The answer for a message whose covering sync ended `ok` (or not), on its `delivered`-th
/// delivery: ack a success; deliver a failure again later, up to [`MAX_ATTEMPTS`].
pub fn answer(ok: bool, delivered: i64) -> Answer {
    if ok {
        Answer::Ack
    } else if delivered < MAX_ATTEMPTS {
        Answer::Retry(RETRY_DELAY * delivered.clamp(1, MAX_ATTEMPTS) as u32)
    } else {
        Answer::GiveUp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn push(delivery: Option<&str>) -> Relayed {
        Relayed {
            repo: "site".into(),
            hint: Some("abc".into()),
            delivery: delivery.map(str::to_string),
            force: false,
        }
    }

    #[test]
    fn subjects_keep_plain_names_and_escape_the_rest() {
        assert_eq!(subject("site"), "hookmirror.push.site");
        assert_eq!(subject("docs_v-2"), "hookmirror.push.docs_v-2");
        assert_eq!(subject("a.b"), "hookmirror.push.a%2Eb");
        assert_eq!(subject("a b*>"), "hookmirror.push.a%20b%2A%3E");
        assert_ne!(subject("a.b"), subject("a%2Eb"));
        assert_eq!(all_subjects(), "hookmirror.push.>");
    }

    #[test]
    fn a_delivery_is_one_id_per_repository_on_every_node_an_api_call_is_unique() {
        let a = for_request(&push(Some("d-1")), "web-1", "u1");
        let b = for_request(&push(Some("d-1")), "web-2", "u2");
        assert_eq!(a.id, "delivery:d-1:site");
        assert_eq!(a.id, b.id, "the same delivery on two nodes is stored once");
        let other = Relayed {
            repo: "docs".into(),
            ..push(Some("d-1"))
        };
        assert_ne!(for_request(&other, "web-1", "u1").id, a.id);
        let api1 = for_request(&push(None), "web-1", "u1");
        let api2 = for_request(&push(None), "web-1", "u2");
        assert_ne!(api1.id, api2.id);
        assert_eq!(a.v, VERSION);
        assert_eq!(a.origin, "web-1");
    }

    #[test]
    fn the_format_round_trips_and_leaves_out_what_is_unset() {
        let m = for_request(&push(None), "web-1", "u");
        let text = String::from_utf8(m.encode()).unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"id":"api:web-1:u","repo":"site","hint":"abc","origin":"web-1"}"#
        );
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn every_node_syncs_what_it_has_configured() {
        // The origin too: it syncs from its consumer like every other node.
        let m = for_request(&push(Some("d")), "web-1", "u").encode();
        {
            let (id, d) = decide(&m, |r| r == "site");
            assert_eq!(id.as_deref(), Some("delivery:d:site"));
            assert_eq!(
                d,
                Decision::Sync {
                    repo: "site".into(),
                    hint: Some("abc".into()),
                    delivery: Some("d".into()),
                    force: false
                }
            );
        }
        let (_, d) = decide(&m, |_| false);
        assert_eq!(
            d,
            Decision::Skip("`site` is not configured on this node".into())
        );
    }

    #[test]
    fn an_outboxed_message_carries_no_hint_so_every_node_fetches_for_it_its_origin_too() {
        let m = for_request(&push(Some("d")), "web-1", "u").synced_here();
        assert_eq!(m.hint, None);
        let bytes = m.encode();
        assert!(matches!(
            decide(&bytes, |_| true).1,
            Decision::Sync { hint: None, .. }
        ));
    }

    #[test]
    fn newer_versions_and_garbage_are_skipped_older_fields_default() {
        let newer = br#"{"v":2,"id":"x","repo":"site","origin":"n","new":1}"#;
        let (_, d) = decide(newer, |_| true);
        assert!(
            matches!(d, Decision::Skip(ref why) if why.contains("version 2")),
            "{d:?}"
        );
        assert!(matches!(decide(b"{]", |_| true).1, Decision::Skip(_)));
        assert!(matches!(
            decide(br#"{"v":1}"#, |_| true).1,
            Decision::Skip(_)
        ));
        let minimal = br#"{"v":1,"id":"x","repo":"site","origin":"n"}"#;
        assert_eq!(
            decide(minimal, |_| true).1,
            Decision::Sync {
                repo: "site".into(),
                hint: None,
                delivery: None,
                force: false
            }
        );
    }

    #[test]
    fn success_acks_failure_retries_later_then_gives_up() {
        assert_eq!(answer(true, 1), Answer::Ack);
        assert_eq!(answer(true, 99), Answer::Ack);
        assert_eq!(answer(false, 1), Answer::Retry(RETRY_DELAY));
        assert_eq!(answer(false, 2), Answer::Retry(RETRY_DELAY * 2));
        assert_eq!(answer(false, MAX_ATTEMPTS), Answer::GiveUp);
    }
}
