//! Unit tests of the registry: names, label sets, both formats, forgetting a repository, and the
//! /proc parsing.

use std::time::Duration;

use super::process::parse;
use super::*;

fn sample(repo: &str, result: SyncResult) -> SyncSample<'_> {
    SyncSample {
        repo,
        trigger: TriggerKind::Webhook,
        result,
        duration: Duration::from_millis(120),
        success_unix: (result != SyncResult::Failed).then_some(1_700_000_000.0),
        consecutive_failures: u64::from(result == SyncResult::Failed),
    }
}

#[test]
fn both_formats_carry_the_exact_names() {
    let m = Metrics::new(true);
    m.sync_finished(&sample("site", SyncResult::Updated));
    m.recovered("site", 2);
    m.push_synced("site", Duration::from_millis(80));
    m.webhook("github", WebhookResult::Queued);
    m.webhook("nonsense", WebhookResult::Unauthorized);
    m.reload(true);
    m.notification(NotifyResult::Delivered);
    m.set_queue(3, 1);
    for openmetrics in [false, true] {
        let text = m.encode(openmetrics);
        for line in [
            r#"hookmirror_syncs_total{repo="site",trigger="webhook",result="updated"} 1"#,
            r#"hookmirror_sync_duration_seconds_count{repo="site"} 1"#,
            r#"hookmirror_push_to_synced_seconds_count{repo="site"} 1"#,
            r#"hookmirror_last_success_timestamp_seconds{repo="site"} 1700000000"#,
            r#"hookmirror_consecutive_failures{repo="site"} 0"#,
            r#"hookmirror_recovery_actions_total{repo="site"} 2"#,
            r#"hookmirror_webhook_requests_total{provider="github",result="queued"} 1"#,
            r#"hookmirror_webhook_requests_total{provider="unknown",result="unauthorized"} 1"#,
            r#"hookmirror_webhook_requests_total{provider="bitbucket",result="too_large"} 0"#,
            "hookmirror_queue_pending 3",
            "hookmirror_syncs_running 1",
            r#"hookmirror_reloads_total{result="ok"} 1"#,
            r#"hookmirror_notifications_total{result="delivered"} 1"#,
            &format!(
                r#"hookmirror_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            let line = line.replace(".0 ", " ");
            assert!(
                text.lines()
                    .any(|l| l.replace(".0 ", " ").starts_with(&line)),
                "openmetrics={openmetrics}: missing {line}\n{text}"
            );
        }
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name}\n{text}");
        }
        assert_eq!(text.ends_with("# EOF\n"), openmetrics, "{text}");
    }
}

#[test]
fn a_forgotten_repository_leaves_no_series() {
    let m = Metrics::new(true);
    m.sync_finished(&sample("gone", SyncResult::Failed));
    m.sync_finished(&sample("kept", SyncResult::Unchanged));
    m.push_synced("gone", Duration::from_secs(1));
    m.forget_repo("gone");
    let text = m.encode(false);
    assert!(!text.contains("repo=\"gone\""), "{text}");
    assert!(text.contains("repo=\"kept\""), "{text}");
}

#[test]
fn disabled_records_nothing() {
    let m = Metrics::new(false);
    m.sync_finished(&sample("site", SyncResult::Updated));
    m.webhook("github", WebhookResult::Queued);
    let text = m.encode(false);
    assert!(!text.contains("repo=\"site\""), "{text}");
    assert!(
        text.contains(r#"hookmirror_webhook_requests_total{provider="github",result="queued"} 0"#)
    );
}

#[test]
fn openmetrics_is_chosen_by_accept() {
    assert!(wants_openmetrics(
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    ));
    assert!(!wants_openmetrics("text/plain;version=0.0.4"));
    assert!(!wants_openmetrics("*/*"));
    assert!(!wants_openmetrics(""));
}

#[test]
fn proc_files_are_read_by_field() {
    let stat = "4242 (hook mirror) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 12345 100000 2000 18446744073709551615";
    let status = "Name:\thookmirror\nVmRSS:\t   10240 kB\nThreads:\t9\n";
    let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
    let s = parse(stat, status, system);
    assert_eq!(s.cpu_seconds, 3.0);
    assert_eq!(s.resident_bytes, 10240 * 1024);
    assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 123.45);
    assert_eq!(parse("", "", ""), process::ProcessStats::default());
    let live = process::ProcessStats::read();
    assert!(live.resident_bytes > 0 && live.open_fds > 0 && live.start_time_seconds > 1e9);
}
