//! The fleet's status, pure: what a node writes to the status bucket (its repositories' commit,
//! state, last success and error, with the moment it wrote), which nodes count as live, the view
//! `GET /api/fleet` shows, and whether every live node reached a commit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::daemon::{ErrorInfo, RepoView};

/// The status format; a reader shows entries of other versions by name only.
pub const VERSION: u32 = 1;

/// How often a node rewrites its entry when nothing happens (so others see it is alive).
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// A node whose entry is older than this counts as gone: three heartbeats missed.
pub const LIVE_FOR: std::time::Duration = std::time::Duration::from_secs(15);

/// One node's entry in the status bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub v: u32,
    pub node: String,
    pub at: DateTime<Utc>,
    /// Written at a clean shutdown: the node is not live, whatever `at` says.
    #[serde(default)]
    pub stopped: bool,
    pub repos: Vec<RepoEntry>,
}

/// One repository on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEntry {
    pub name: String,
    pub commit: Option<String>,
    /// idle, queued or syncing.
    pub state: String,
    pub last_success: Option<DateTime<Utc>>,
    pub error: Option<ErrorInfo>,
}

/// `node`'s entry at `now` from its repositories' status.
pub fn node_status(
    node: &str,
    now: DateTime<Utc>,
    views: &[RepoView],
    stopped: bool,
) -> NodeStatus {
    NodeStatus {
        v: VERSION,
        node: node.to_string(),
        at: now,
        stopped,
        repos: views
            .iter()
            .map(|v| RepoEntry {
                name: v.name.clone(),
                commit: v.status.commit.clone(),
                state: serde_json::to_value(v.state)
                    .ok()
                    .and_then(|s| s.as_str().map(str::to_string))
                    .unwrap_or_default(),
                last_success: v.status.last_success,
                error: v.status.last_error.clone(),
            })
            .collect(),
    }
}

/// How far ahead of ours a writer's clock may be and its entry still count: clocks kept by NTP
/// differ by far less. An entry dated further ahead (a wrong clock, or a crafted entry) is not
/// live: it would otherwise stay live until that moment, and `?wait=fleet` wait for a node
/// that is gone.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `s` was written by a running node recently enough (and not too far in the future).
pub fn live(s: &NodeStatus, now: DateTime<Utc>) -> bool {
    let age = now.signed_duration_since(s.at);
    let fresh = match age.to_std() {
        Ok(age) => age <= LIVE_FOR,
        // Dated ahead of now: by how much.
        Err(_) => (-age).to_std().is_ok_and(|ahead| ahead <= MAX_CLOCK_SKEW),
    };
    !s.stopped && fresh
}

/// Every node with the repositories `readable` lets through, in node order, for the API.
pub fn view(nodes: &[NodeStatus], now: DateTime<Utc>, readable: &dyn Fn(&str) -> bool) -> Value {
    let mut nodes: Vec<&NodeStatus> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let shown: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            let repos: Vec<&RepoEntry> = n.repos.iter().filter(|r| readable(&r.name)).collect();
            json!({
                "node": n.node,
                "live": live(n, now),
                "stopped": n.stopped,
                "at": n.at,
                "repos": repos,
            })
        })
        .collect();
    Value::Array(shown)
}

/// Which live nodes that have `repo` report `commit` for it, and which do not (with what they
/// report). Nodes without the repository, and nodes not live, are not waited for.
pub fn reached(
    nodes: &[NodeStatus],
    repo: &str,
    commit: &str,
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<(String, Option<String>)>) {
    let mut have = Vec::new();
    let mut missing = Vec::new();
    for n in nodes.iter().filter(|n| live(n, now)) {
        let Some(r) = n.repos.iter().find(|r| r.name == repo) else {
            continue;
        };
        if r.commit.as_deref() == Some(commit) {
            have.push(n.node.clone());
        } else {
            missing.push((n.node.clone(), r.commit.clone()));
        }
    }
    have.sort();
    missing.sort();
    (have, missing)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry(name: &str, commit: Option<&str>) -> RepoEntry {
        RepoEntry {
            name: name.into(),
            commit: commit.map(str::to_string),
            state: "idle".into(),
            last_success: None,
            error: None,
        }
    }

    fn node(name: &str, age_s: i64, stopped: bool, repos: Vec<RepoEntry>) -> NodeStatus {
        NodeStatus {
            v: VERSION,
            node: name.into(),
            at: now() - chrono::Duration::seconds(age_s),
            stopped,
            repos,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn live_means_recent_and_not_stopped() {
        assert!(live(&node("a", 0, false, vec![]), now()));
        assert!(live(&node("a", 15, false, vec![]), now()));
        assert!(!live(&node("a", 16, false, vec![]), now()));
        assert!(!live(&node("a", 0, true, vec![]), now()));
        // A clock a little ahead on the writer's side still counts as live...
        assert!(live(&node("a", -2, false, vec![]), now()));
        assert!(live(&node("a", -5, false, vec![]), now()));
        // ...one further ahead does not: it would stay live until that moment.
        assert!(!live(&node("a", -6, false, vec![]), now()));
        assert!(!live(&node("a", -24 * 3600, false, vec![]), now()));
    }

    #[test]
    fn a_node_dated_in_the_future_is_not_waited_for() {
        let nodes = vec![
            node("a", 1, false, vec![entry("site", Some("new"))]),
            node("ghost", -3600, false, vec![entry("site", Some("old"))]),
        ];
        let (have, missing) = reached(&nodes, "site", "new", now());
        assert_eq!(have, vec!["a"]);
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(view(&nodes, now(), &|_| true)[1]["live"], false);
    }

    #[test]
    fn every_live_node_with_the_repo_is_waited_for_and_no_other() {
        let nodes = vec![
            node("c", 1, false, vec![entry("site", Some("old"))]),
            node("a", 1, false, vec![entry("site", Some("new"))]),
            node("b", 1, false, vec![entry("docs", Some("x"))]),
            node("d", 60, false, vec![entry("site", Some("old"))]),
            node("e", 1, true, vec![entry("site", None)]),
        ];
        let (have, missing) = reached(&nodes, "site", "new", now());
        assert_eq!(have, vec!["a"]);
        assert_eq!(missing, vec![("c".to_string(), Some("old".to_string()))]);
        let nodes = vec![node("a", 1, false, vec![entry("site", Some("new"))])];
        assert!(reached(&nodes, "site", "new", now()).1.is_empty());
    }

    #[test]
    fn the_view_lists_nodes_in_order_with_readable_repos_only() {
        let nodes = vec![
            node("web-2", 30, false, vec![entry("site", Some("a"))]),
            node(
                "web-1",
                1,
                false,
                vec![entry("site", Some("a")), entry("secret", None)],
            ),
        ];
        let v = view(&nodes, now(), &|r| r != "secret");
        assert_eq!(v[0]["node"], "web-1");
        assert_eq!(v[0]["live"], true);
        assert_eq!(v[0]["repos"].as_array().unwrap().len(), 1);
        assert_eq!(v[0]["repos"][0]["commit"], "a");
        assert_eq!(v[1]["live"], false);
    }

    #[test]
    fn an_entry_round_trips() {
        let n = node("a", 0, false, vec![entry("site", Some("c"))]);
        let back: NodeStatus = serde_json::from_slice(&serde_json::to_vec(&n).unwrap()).unwrap();
        assert_eq!(back, n);
    }
}
