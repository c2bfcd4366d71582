//! The status page from hand-made data: escaping, relative times, the chart, the empty page.

use chrono::{Duration, TimeZone, Utc};

use super::*;
use crate::daemon::{ErrorInfo, RepoStatus};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn view(name: &str, status: RepoStatus) -> RepoView {
    RepoView {
        name: name.into(),
        url: "https://example.com/r.git".into(),
        target: "branch main".into(),
        directory: "/srv/r".into(),
        path: "/hooks/r".into(),
        state: State::Idle,
        pending: false,
        status,
    }
}

fn record(ms: u64, result: &'static str) -> SyncRecord {
    SyncRecord {
        at: now() - Duration::seconds(30),
        duration_ms: ms,
        result,
        trigger: "webhook",
        commit: None,
        error: None,
    }
}

#[test]
fn relative_times_read_like_a_person_says_them() {
    let n = now();
    assert_eq!(relative(n, n), "just now");
    assert_eq!(relative(n, n - Duration::seconds(42)), "42 s ago");
    assert_eq!(relative(n, n - Duration::seconds(185)), "3 min ago");
    assert_eq!(relative(n, n - Duration::hours(5)), "5 h ago");
    assert_eq!(relative(n, n - Duration::days(2)), "2 d ago");
    assert_eq!(relative(n, n + Duration::minutes(4)), "in 4 min");
}

#[test]
fn everything_printed_is_escaped() {
    let evil = "<script>alert(1)</script>\"'&";
    let mut status = RepoStatus::default();
    status.commit = Some(format!("{evil}abcdef"));
    status.remote_ref = Some(format!("refs/heads/{evil}"));
    status.last_error = Some(ErrorInfo {
        kind: "auth".into(),
        message: format!("<img src=x onerror=alert(2)> {evil}"),
    });
    let repos = [view(evil, status)];
    let mut rec = record(10, "failed");
    rec.trigger = "webhook";
    let deliveries = [DeliveryRecord {
        at: now(),
        forge: "github",
        delivery: Some(format!("<b>{evil}</b>")),
        result: "unauthorized",
    }];
    let html = render(&Page {
        now: now(),
        version: "0.1.0",
        repos: &repos,
        histories: &[vec![rec]],
        deliveries: &deliveries,
        unready: &[],
        fleet: Some(&serde_json::json!({
            "node": evil, "stream": evil, "state": "degraded", "error": evil, "outbox": 1,
            "nodes": [{"node": evil, "live": false, "repos": [
                {"name": evil, "commit": evil, "state": evil, "error": {"message": evil}}
            ]}],
        })),
    });
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
    assert_eq!(html.matches("<script").count(), 0);
}

#[test]
fn a_row_shows_state_ref_commit_times_and_a_bar_per_sync() {
    let mut status = RepoStatus::default();
    status.commit = Some("0123456789abcdef0123456789abcdef01234567".into());
    status.remote_ref = Some("refs/heads/main".into());
    status.last_success = Some(now() - Duration::minutes(3));
    status.next_run = Some(now() + Duration::minutes(5));
    let repos = [view("site", status)];
    let history: Vec<SyncRecord> = (0..50)
        .map(|i| record(10 + i, ["updated", "unchanged", "failed"][i as usize % 3]))
        .collect();
    let unready = [Unready {
        name: "site".into(),
        reason: "failing",
        consecutive_failures: 3,
        last_error: None,
    }];
    let html = render(&Page {
        now: now(),
        version: "0.1.0",
        repos: &repos,
        histories: &[history],
        deliveries: &[],
        unready: &unready,
        fleet: None,
    });
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(
        html.contains("<tr data-repo=\"site\" class=\"failing\">"),
        "{html}"
    );
    assert!(html.contains(">refs/heads/main<"));
    assert!(html.contains(">0123456<"));
    assert!(html.contains(">3 min ago<"));
    assert!(html.contains(">in 5 min<"));
    assert!(html.contains("not ready"));
    assert_eq!(html.matches("<rect ").count(), 50);
    assert_eq!(html.matches("class=\"r-failed\"").count(), 16);
    // The longest sync fills the chart; none is shorter than the minimum.
    assert!(html.contains(&format!("height=\"{CHART_HEIGHT}\"><title>")));
    assert!(!html.contains("src=\"http"), "no external assets");
    assert!(html.contains("no deliveries yet"));
}

#[test]
fn an_empty_config_still_renders() {
    let html = render(&Page {
        now: now(),
        version: "0.1.0",
        repos: &[],
        histories: &[],
        deliveries: &[],
        unready: &[],
        fleet: None,
    });
    assert!(html.contains("no repositories configured"));
    assert!(html.contains("0 repositories"));
    assert!(html.ends_with("</html>\n"));
}

/// The page of a node with no repositories in `fleet`.
fn fleet_page(fleet: &serde_json::Value) -> String {
    render(&Page {
        now: now(),
        version: "0.1.0",
        repos: &[],
        histories: &[],
        deliveries: &[],
        unready: &[],
        fleet: Some(fleet),
    })
}

#[test]
fn the_fleet_section_shows_every_node_and_repository() {
    let fleet = serde_json::json!({
        "node": "web-1", "stream": "HOOKMIRROR", "state": "connected", "error": null, "outbox": 0,
        "nodes": [
            {"node": "web-1", "live": true, "repos": [{"name": "site", "commit": "0123456789abcdef",
              "state": "idle", "last_success": (now() - Duration::seconds(42)).to_rfc3339(), "error": null}]},
            {"node": "web-2", "live": false, "repos": [{"name": "site", "commit": null,
              "state": "queued", "last_success": null, "error": {"kind": "network", "message": "refused"}}]},
        ],
    });
    let html = fleet_page(&fleet);
    assert!(
        html.contains("<span class=\"badge ready\">connected</span> node <code>web-1</code>"),
        "{html}"
    );
    assert!(html.contains("<tr><td>web-1</td><td>site</td><td><span class=\"badge idle\">idle</span></td><td><code>0123456789ab</code></td><td>42 s ago</td>"), "{html}");
    assert!(
        html.contains("web-2 <span class=\"muted\">(not live)</span>"),
        "{html}"
    );
    assert!(
        html.contains("<td>never</td><td class=\"error\">refused</td>"),
        "{html}"
    );

    let degraded = serde_json::json!({"node": "web-1", "stream": "HOOKMIRROR", "state": "degraded",
        "error": "no NATS server answers", "outbox": 3, "nodes": []});
    let html = fleet_page(&degraded);
    assert!(
        html.contains("<span class=\"badge unready\">degraded</span>"),
        "{html}"
    );
    assert!(html.contains("no NATS server answers"), "{html}");
    assert!(
        html.contains("3 request(s) waiting to reach the fleet"),
        "{html}"
    );
    assert!(html.contains("no node has reported yet"), "{html}");
}

#[test]
fn the_policy_allows_exactly_the_style_sheet_the_page_carries() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let html = render(&Page {
        now: now(),
        version: "0.1.0",
        repos: &[],
        histories: &[],
        deliveries: &[],
        unready: &[],
        fleet: None,
    });
    let start = html.find("<style>").unwrap() + "<style>".len();
    let end = html.find("</style>").unwrap();
    let hash =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&html[start..end]));
    let csp = content_security_policy();
    assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    assert_eq!(html.matches("<style").count(), 1);
    assert!(
        !html.contains("style=\"") && !html.contains("<script"),
        "{html}"
    );
}
