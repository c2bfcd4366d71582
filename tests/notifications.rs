//! Signed outbound notifications from the real `hookmirror serve` to a real receiver (a small
//! HTTP server in this file that checks every signature with its own HMAC): the Standard
//! Webhooks test vector, sync.succeeded / sync.failed / sync.recovered, retries after 500s with
//! the same message id, and a receiver that hangs, which delays neither syncs nor shutdown.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::*;
use support::forge::*;
use support::wait_until;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "notify-token-9a8b7c";

/// One request the receiver got, and whether its signature verified.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Value,
    verified: bool,
}

/// A receiver on 127.0.0.1: answers each request with the next status of `script` (then 200),
/// or, with `hang`, reads the request and never answers.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(script: Vec<u16>, hang: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (g, s, script) = (g.clone(), s.clone(), script.clone());
                        std::thread::spawn(move || serve(stream, &g, &s, &script, hang));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { port, got, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/deploys", self.port)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived.
    #[track_caller]
    fn wait(&self, n: usize) -> Vec<Received> {
        let ok = wait_until(WAIT, || self.got().len() >= n);
        assert!(
            ok,
            "{} of {n} notifications arrived: {:#?}",
            self.got().len(),
            self.got()
        );
        self.got()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Requests on one connection (keep-alive), each answered by the script.
fn serve(
    mut s: TcpStream,
    got: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
    script: &Mutex<std::vec::IntoIter<u16>>,
    hang: bool,
) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if !read_more(&mut s, &mut buf) {
                return;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            if !read_more(&mut s, &mut buf) {
                return;
            }
        }
        let body: Vec<u8> = buf[end + 4..end + 4 + len].to_vec();
        buf.drain(..end + 4 + len);
        let verified = verify(&headers, &body);
        got.lock().unwrap().push(Received {
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            verified,
        });
        if hang {
            // Hold the connection, never answer.
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        let status = script.lock().unwrap().next().unwrap_or(200);
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
        if s.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads what arrived into `buf` (nothing within the read timeout is fine); false when the
/// connection is closed or broken.
fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// The signature checked with this file's own HMAC (support::forge), the timestamp within 5 min.
fn verify(headers: &HashMap<String, String>, body: &[u8]) -> bool {
    let (Some(id), Some(ts), Some(sig)) = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(t) = ts.parse::<i64>() else {
        return false;
    };
    let now = chrono::Utc::now().timestamp();
    (now - t).abs() <= 300
        && sig
            .split(' ')
            .any(|s| *s == standard_signature(SECRET, id, t, body))
}

#[test]
fn the_receivers_check_reproduces_the_published_test_vector() {
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(
        standard_signature(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

fn notify_top(url: &str, extra: &str) -> String {
    format!(
        "api: {{token: {TOKEN}}}\nnotify:\n  - url: '{url}'\n    secret: {SECRET}\n    headers: {{Authorization: 'Bearer ${{DEPLOY_TOKEN}}'}}\n{extra}"
    )
}

/// A mirror of repo `site` (branch main, webhook `secret`) notifying `receiver`, with
/// `DEPLOY_TOKEN` set to `deploy_token`.
fn notifying_mirror(receiver: &Receiver, secret: &str, deploy_token: &str) -> Mirror {
    Mirror::on(Remote::new())
        .keys(&format!("    branch: main\n    secret: {secret}\n"))
        .daemon(
            Daemon::builder()
                .top(&notify_top(&receiver.url(), ""))
                .env("DEPLOY_TOKEN", deploy_token)
                .token(TOKEN),
        )
        .start()
}

fn metric(d: &Daemon, line: &str) -> bool {
    d.api_get("/metrics").text.lines().any(|l| l == line)
}

#[test]
fn sync_events_are_signed_retried_and_announced_once_each() {
    // Two 500s, then 200s: the first notification takes three attempts.
    let receiver = Receiver::start(vec![500, 500], false);
    let secret = "intake-secret-1234";
    let m = notifying_mirror(&receiver, secret, "deploy-token-42");
    let d = &m.daemon;
    // The first sync cloned (old: none → new): sync.succeeded, delivered on the third attempt.
    let got = receiver.wait(3);
    assert!(got.iter().all(|r| r.verified), "{got:#?}");
    let ids: Vec<&String> = got.iter().map(|r| &r.headers["webhook-id"]).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "the same id on every attempt: {ids:?}"
    );
    assert_eq!(got[0].body["type"], "sync.succeeded");
    assert_eq!(got[0].body["data"]["trigger"], "startup");
    assert_eq!(got[0].body["data"]["old"], Value::Null);
    assert_eq!(got[0].body["data"]["new"], m.first["commit"]);
    assert_eq!(got[0].headers["authorization"], "Bearer deploy-token-42");
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert!(
        chrono::DateTime::parse_from_rfc3339(got[0].body["timestamp"].as_str().unwrap()).is_ok()
    );
    let ok = wait_until(WAIT, || {
        metric(d, r#"hookmirror_notifications_total{result="delivered"} 1"#)
    });
    assert!(ok, "{}", d.api_get("/metrics").text);
    assert!(metric(
        d,
        r#"hookmirror_notifications_total{result="retried"} 2"#
    ));

    // A push: sync.succeeded with the delivery id, ref and commits.
    let forms = m.remote.forms();
    let c1 = m.remote.head();
    let c2 = m.remote.advance("notify me");
    let (id, delivery) = github_main_push(secret, &forms, &c1, &c2);
    d.deliver("/hooks/site", &delivery)
        .expect_queued(&["site"], &id);
    let got = receiver.wait(4);
    let data = &got[3].body["data"];
    assert_eq!(got[3].body["type"], "sync.succeeded");
    assert!(got[3].verified);
    assert_eq!(data["repo"], "site");
    assert_eq!(data["ref"], "refs/heads/main");
    assert_eq!(data["old"], c1.as_str());
    assert_eq!(data["new"], c2.as_str());
    assert_eq!(data["trigger"], "webhook");
    assert_eq!(data["delivery"], id.as_str());
    assert_eq!(data["error"], Value::Null);
    assert!(data["duration_ms"].is_u64());

    // An unchanged sync announces nothing; a failure announces sync.failed...
    assert_eq!(d.api_sync("site").status, 200);
    let bare = m.remote.origin.bare.clone();
    let away = m.remote.origin.root.path().join("away.git");
    std::fs::rename(&bare, &away).unwrap();
    assert_eq!(d.api_sync("site").status, 502);
    let got = receiver.wait(5);
    assert_eq!(got[4].body["type"], "sync.failed", "{got:#?}");
    assert_eq!(got[4].body["data"]["trigger"], "api");
    let error = got[4].body["data"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("not_found: ") && error.contains("origin.git"),
        "{got:#?}"
    );
    // ...and the next success (unchanged) sync.recovered alone.
    std::fs::rename(&away, &bare).unwrap();
    assert_eq!(d.api_sync("site").status, 200);
    let got = receiver.wait(6);
    assert_eq!(got[5].body["type"], "sync.recovered");
    assert!(got.iter().all(|r| r.verified));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.got().len(), 6, "{:#?}", receiver.got());
    d.assert_clean_logs(&[SECRET, "deploy-token-42"]);
}

#[test]
fn a_hung_receiver_delays_neither_syncs_nor_shutdown() {
    let receiver = Receiver::start(vec![], true);
    let secret = "intake-secret-5678";
    let m = notifying_mirror(&receiver, secret, "x");
    let d = &m.daemon;
    receiver.wait(1);
    // Pushes keep syncing promptly while the notification hangs.
    let forms = m.remote.forms();
    let mut head = m.remote.head();
    for i in 0..3 {
        let next = m.remote.advance(&format!("hung {i}"));
        let (id, delivery) = github_main_push(secret, &forms, &head, &next);
        let start = Instant::now();
        d.deliver("/hooks/site", &delivery)
            .expect_queued(&["site"], &id);
        d.wait_head("site", &m.dir, &next);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        head = next;
    }
    // Shutdown waits for the notifications at most 5 s (plus the rest of a normal stop).
    let start = Instant::now();
    let out = Daemon::stop(m.daemon);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "stop took {took:?}\n{}",
        out.all()
    );
    assert!(
        out.stdout
            .contains("notifications not delivered before shutdown"),
        "{}",
        out.all()
    );
}

/// A receiver whose URL path and query are its secret (Slack-style): the retry lines after its
/// 500s, the line of the delivery, and a reload refused over a bad receiver URL (in the API's
/// `reload.last_error` and the logs) show scheme, host and port only. The path and query used
/// to be logged at INFO on every retry.
#[test]
fn receiver_urls_with_secrets_in_path_or_query_are_redacted() {
    const PATH_SECRET: &str = "B0SECRETPATH77";
    const QUERY_SECRET: &str = "q-SECRETQUERY-91";
    let receiver = Receiver::start(vec![500, 500], false);
    let url = format!(
        "http://127.0.0.1:{}/services/T000/{PATH_SECRET}?token={QUERY_SECRET}",
        receiver.port
    );
    let m = Mirror::on(Remote::new())
        .keys("    branch: main\n    secret: s\n")
        .daemon(
            Daemon::builder()
                .top(&notify_top(&url, ""))
                .env("DEPLOY_TOKEN", "deploy-token-5")
                .token(TOKEN),
        )
        .start();
    let d = &m.daemon;
    receiver.wait(3);
    let ok = wait_until(WAIT, || {
        metric(d, r#"hookmirror_notifications_total{result="delivered"} 1"#)
    });
    assert!(ok, "{}", d.logs());
    let logs = d.logs();
    let retries: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("notification not delivered; retrying"))
        .collect();
    assert_eq!(retries.len(), 2, "{logs}");
    let origin = format!("http://127.0.0.1:{}/***", receiver.port);
    for line in &retries {
        assert!(line.contains(&origin), "{line}");
    }
    // A reload refused over a receiver URL that is not http(s).
    let bad = format!("ftp://127.0.0.1/services/{PATH_SECRET}?token={QUERY_SECRET}");
    d.replace_config(&config_text(
        &notify_top(&bad, ""),
        &[repo_yaml(
            "site",
            &m.remote.url(),
            &m.dir,
            "    branch: main\n    secret: s\n",
        )],
    ));
    let v = d.wait_repos("the refused reload", |v| v["reload"]["failures"] == 1);
    let error = v["reload"]["last_error"].as_str().unwrap();
    assert!(error.contains("ftp://127.0.0.1/***"), "{error}");
    d.assert_clean_logs(&[PATH_SECRET, QUERY_SECRET, SECRET, "deploy-token-5"]);
    let all = serde_json::to_string(&v).unwrap();
    assert!(
        !all.contains(PATH_SECRET) && !all.contains(QUERY_SECRET),
        "{all}"
    );
}
