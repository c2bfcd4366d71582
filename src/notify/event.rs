//! What a finished sync is announced as (pure): which events apply, and the JSON body.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::config::NotifyEvent;

/// A finished sync, as notifications describe it (`data` of the body).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncEvent {
    pub repo: String,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub old: Option<String>,
    pub new: Option<String>,
    pub duration_ms: u64,
    pub trigger: String,
    /// The webhook delivery id, when a webhook triggered it.
    pub delivery: Option<String>,
    /// `kind: message` of a failed sync.
    pub error: Option<String>,
}

/// The events a sync ended in: `sync.failed` when it failed; else `sync.succeeded` when the
/// checkout changed and `sync.recovered` when failures came before it (both when both hold).
pub fn events_for(ok: bool, changed: bool, failures_before: u64) -> Vec<NotifyEvent> {
    if !ok {
        return vec![NotifyEvent::Failed];
    }
    let mut out = Vec::new();
    if changed {
        out.push(NotifyEvent::Succeeded);
    }
    if failures_before > 0 {
        out.push(NotifyEvent::Recovered);
    }
    out
}

/// `{"type": …, "timestamp": RFC 3339, "data": {…}}`.
pub fn body(event: NotifyEvent, at: DateTime<Utc>, data: &SyncEvent) -> String {
    serde_json::json!({
        "type": event.as_str(),
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_events_a_sync_ends_in() {
        use NotifyEvent::*;
        assert_eq!(events_for(false, false, 0), vec![Failed]);
        assert_eq!(events_for(false, false, 7), vec![Failed]);
        assert_eq!(events_for(true, true, 0), vec![Succeeded]);
        assert_eq!(events_for(true, false, 0), vec![]);
        assert_eq!(events_for(true, false, 2), vec![Recovered]);
        assert_eq!(events_for(true, true, 1), vec![Succeeded, Recovered]);
    }

    #[test]
    fn the_body_has_the_documented_shape() {
        let data = SyncEvent {
            repo: "site".into(),
            git_ref: Some("refs/heads/main".into()),
            old: Some("a".repeat(40)),
            new: Some("b".repeat(40)),
            duration_ms: 42,
            trigger: "webhook".into(),
            delivery: Some("d-1".into()),
            error: None,
        };
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let v: serde_json::Value =
            serde_json::from_str(&body(NotifyEvent::Succeeded, at, &data)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "sync.succeeded",
                "timestamp": "2026-01-02T03:04:05.678Z",
                "data": {"repo": "site", "ref": "refs/heads/main", "old": "a".repeat(40),
                         "new": "b".repeat(40), "duration_ms": 42, "trigger": "webhook",
                         "delivery": "d-1", "error": null}
            })
        );
    }
}
