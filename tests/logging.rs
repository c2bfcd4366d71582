//! What `hookmirror serve` logs, through the real binary: JSON lines and text lines with the
//! sync fields (repo, ref, old, new, duration_ms, trigger, result), `log.output` to a file,
//! timestamps (on by default, off under journald's `JOURNAL_STREAM`, `log.timestamp`, gwg's
//! `logging:` block), the level (`--log-level` over `RUST_LOG` over `log.level`), and secrets
//! (URL credentials, auth tokens, webhook secrets, the API token) kept out of every line, at
//! trace level too.
//!
//! The tests under "Found while testing logging" guard against defects found that way and fixed
//! since; each doc comment says what used to go wrong.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use support::daemon::*;
use support::forge::*;
use support::{GitHttp, Origin, read_file_lossy, rev_parse};

const API_TOKEN: &str = "api-t0ken-Kw7rQ";
const SECRET: &str = "hook-s3cret-Zp3vN";

// ---------------------------------------------------------------------------------------------
// Running the daemon
// ---------------------------------------------------------------------------------------------

/// A config (without `listen`): `top` holds top-level keys such as `log:`; one repo `site`.
fn config(top: &str, url: &str, dir: &Path) -> String {
    format!(
        "workers: 2\n{top}api: {{token: {API_TOKEN}}}\nrepos:\n  - name: site\n    url: '{url}'\n    directory: '{}'\n    secret: {SECRET}\n    retry: {{attempts: 1}}\n",
        dir.display()
    )
}

/// The daemon with `args` after `serve --config FILE` and `env` on top of a clean environment,
/// calling the API with the token.
fn daemon(args: &[&str], env: &[(&str, &str)]) -> DaemonBuilder {
    env.iter().fold(
        Daemon::builder().args(args).token(API_TOKEN),
        |d, (k, v)| d.env(k, v),
    )
}

/// `mirror` (an origin reached by its path unless set otherwise) with [`config`]`(top, …)` and
/// the [`daemon`] options, once `site` has synced.
fn site_with(mirror: MirrorBuilder, top: &str, args: &[&str], env: &[(&str, &str)]) -> Mirror {
    mirror
        .config(move |url, dir| config(top, url, dir))
        .daemon(daemon(args, env))
        .start()
}

/// [`site_with`] an origin reached by its path.
fn site(top: &str, args: &[&str], env: &[(&str, &str)]) -> Mirror {
    site_with(Mirror::on(Remote::local()), top, args, env)
}

/// A GitHub push of `refs/heads/main` to `after` for the repository at `url`, signed with
/// `secret`, with delivery id `id`.
fn push(secret: &str, url: &str, after: &str, id: &str) -> Delivery {
    github_push_naming(secret, id, url, "refs/heads/main", after)
}

/// `key=value` pairs of a text log line (values may be quoted; a quoted value may hold spaces).
fn fields(line: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(' ').map_or(0, |i| i + 1);
        let key = rest[key_start..eq].to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), &q[(end + 1).min(q.len())..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = next;
    }
    out
}

/// Whether the line starts with an RFC 3339 timestamp.
fn stamped(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|w| chrono::DateTime::parse_from_rfc3339(w).is_ok())
}

const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// The level word of a text line (with or without a timestamp before it).
fn level(line: &str) -> Option<&str> {
    line.split_whitespace().find(|w| LEVELS.contains(w))
}

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

/// Starts a daemon in `format` (`top`), then brings about a startup, a webhook and an API sync,
/// each moving the checkout; returns the output and the commits (initial, pushed, api).
fn three_syncs(top: &str) -> (Output, [String; 3], String) {
    let m = site(top, &[], &[]);
    let (d, origin, dir) = (&m.daemon, &m.remote.origin, &m.dir);
    let c0 = origin.head("main");
    let c1 = origin.commit("webhook.txt", "1\n");
    let id = "4f1c2a9e-0000-4000-8000-logging00001".to_string();
    let r = d.deliver("/hooks/site", &push(SECRET, &origin.url(), &c1, &id));
    assert_eq!(r.status, 202);
    d.wait_syncs("site", 2);
    assert_eq!(rev_parse(dir, "HEAD").as_deref(), Some(c1.as_str()));
    let c2 = origin.commit("api.txt", "2\n");
    assert_eq!(d.api_sync("site").status, 200);
    (m.daemon.stop(), [c0, c1, c2], id)
}

#[test]
fn json_lines_carry_the_sync_fields() {
    let (out, [c0, c1, c2], id) = three_syncs("log: {format: json}\n");
    let mut syncs = Vec::new();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", out.all()));
        assert!(v.is_object(), "{line}");
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert!(
            v["timestamp"]
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{line}"
        );
        if v["message"] == "sync" {
            syncs.push(v);
        }
    }
    assert!(out.stderr.trim().is_empty(), "{}", out.all());
    let by_trigger = |t: &str| {
        syncs
            .iter()
            .find(|v| v["trigger"] == t)
            .unwrap_or_else(|| panic!("no sync line with trigger {t:?}:\n{}", out.all()))
            .clone()
    };
    let expect = [
        ("startup".to_string(), "none".to_string(), c0.clone()),
        (format!("webhook {id}"), c0, c1.clone()),
        ("api".to_string(), c1, c2),
    ];
    for (trigger, old, new) in expect {
        let v = by_trigger(&trigger);
        assert_eq!(v["repo"], "site", "{v}");
        assert_eq!(v["ref"], "refs/heads/main", "{v}");
        assert_eq!(v["old"], old.as_str(), "{v}");
        assert_eq!(v["new"], new.as_str(), "{v}");
        assert!(v["duration_ms"].is_u64(), "duration_ms is a number: {v}");
        assert_eq!(v["result"], "ok", "{v}");
        assert_eq!(v["level"], "INFO", "{v}");
    }
}

#[test]
fn text_lines_carry_the_sync_fields_as_key_value() {
    // No `log:` block: text is the default.
    let (out, [c0, c1, c2], id) = three_syncs("");
    let syncs: Vec<HashMap<String, String>> = out
        .lines()
        .into_iter()
        .filter(|l| l.contains(" sync ") && l.contains("trigger="))
        .map(fields)
        .collect();
    let expect = [
        ("startup".to_string(), "none".to_string(), c0.clone()),
        (format!("webhook {id}"), c0, c1.clone()),
        ("api".to_string(), c1, c2),
    ];
    for (trigger, old, new) in expect {
        let f = syncs
            .iter()
            .find(|f| f.get("trigger") == Some(&trigger))
            .unwrap_or_else(|| panic!("no sync line with trigger={trigger:?}:\n{}", out.all()));
        assert_eq!(f["repo"], "site", "{f:?}");
        assert_eq!(f["ref"], "refs/heads/main", "{f:?}");
        assert_eq!(f["old"], old, "{f:?}");
        assert_eq!(f["new"], new, "{f:?}");
        assert!(f["duration_ms"].parse::<u64>().is_ok(), "{f:?}");
        assert_eq!(f["result"], "ok", "{f:?}");
    }
    for line in out.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "text, not JSON: {line}"
        );
        assert!(level(line).is_some(), "every line has a level: {line:?}");
    }
}

#[test]
fn log_output_goes_to_the_named_file_only() {
    let mirror = Mirror::on(Remote::local());
    let file = mirror.work().join("logs").join("hookmirror.log");
    std::fs::create_dir(file.parent().unwrap()).unwrap();
    let top = format!("log: {{output: '{}', format: json}}\n", file.display());
    let m = site_with(mirror, &top, &[], &[]);
    let out = m.daemon.stop();
    assert_eq!(out.stdout, "", "nothing on stdout");
    assert_eq!(out.stderr, "", "nothing on stderr");
    let text = read_file_lossy(&file);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["message"] == "hookmirror listening"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "sync" && v["trigger"] == "startup" && v["repo"] == "site"),
        "{text}"
    );
    assert!(
        lines.iter().any(|v| v["message"] == "stopped"),
        "the last line reaches the file: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// The lines a daemon with `top` and `env` printed, after one startup sync.
fn lines_of(top: &str, env: &[(&str, &str)]) -> Output {
    site(top, &[], env).daemon.stop()
}

#[track_caller]
fn assert_all(out: &Output, want_stamp: bool, what: &str) {
    let lines = out.lines();
    assert!(lines.len() >= 3, "{what}: too few lines\n{}", out.all());
    for line in lines {
        assert_eq!(stamped(line), want_stamp, "{what}: {line:?}");
        if !want_stamp {
            assert!(
                LEVELS.contains(&line.split_whitespace().next().unwrap_or("")),
                "{what}: the level starts the line: {line:?}"
            );
        }
    }
}

#[test]
fn timestamps_default_on_but_off_under_journald() {
    let out = lines_of("", &[]);
    assert_all(&out, true, "default");
    let out = lines_of("", &[("JOURNAL_STREAM", "8:123456")]);
    assert_all(&out, false, "JOURNAL_STREAM set");
    // An explicit choice wins over the journald guess.
    let out = lines_of(
        "log: {timestamp: true}\n",
        &[("JOURNAL_STREAM", "8:123456")],
    );
    assert_all(&out, true, "log.timestamp: true under journald");
}

#[test]
fn timestamps_off_by_config_in_both_spellings() {
    let out = lines_of("log: {timestamp: false}\n", &[]);
    assert_all(&out, false, "log.timestamp: false");
    // gwg's block with all of its keys.
    let out = lines_of(
        "logging:\n  format: text\n  output: stdout\n  level: info\n  timestamp: false\n",
        &[],
    );
    assert_all(&out, false, "gwg logging.timestamp: false");
    // gwg's block in JSON: no timestamp field.
    let out = lines_of("logging: {format: json, timestamp: false}\n", &[]);
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v.get("timestamp").is_none(), "{line}");
        assert!(v["level"].is_string(), "{line}");
    }
}

// ---------------------------------------------------------------------------------------------
// Levels
// ---------------------------------------------------------------------------------------------

/// The set of levels a daemon logged, with config level `warn`, `args` and `env`, after a
/// startup sync and an API sync.
fn levels_with(args: &[&str], env: &[(&str, &str)]) -> (Vec<String>, Output) {
    let m = site("log: {level: warn}\n", args, env);
    assert_eq!(m.daemon.api_sync("site").status, 200);
    let out = m.daemon.stop();
    let mut levels: Vec<String> = out
        .lines()
        .iter()
        .filter_map(|l| level(l).map(str::to_string))
        .collect();
    levels.sort();
    levels.dedup();
    (levels, out)
}

#[test]
fn the_config_level_applies_and_log_level_and_rust_log_override_it() {
    // log.level: warn alone: nothing at info or below (a clean run logs no warnings).
    let (levels, out) = levels_with(&[], &[]);
    assert!(
        levels.iter().all(|l| l == "WARN" || l == "ERROR"),
        "log.level: warn logged {levels:?}\n{}",
        out.all()
    );

    // --log-level debug: debug lines (e.g. "sync requested") appear.
    let (levels, out) = levels_with(&["--log-level", "debug"], &[]);
    assert!(
        levels.contains(&"DEBUG".to_string()) && levels.contains(&"INFO".to_string()),
        "--log-level debug logged {levels:?}\n{}",
        out.all()
    );
    assert!(out.stdout.contains("sync requested"), "{}", out.all());
    assert!(!levels.contains(&"TRACE".to_string()), "{levels:?}");

    // RUST_LOG=debug without --log-level.
    let (levels, out) = levels_with(&[], &[("RUST_LOG", "debug")]);
    assert!(
        levels.contains(&"DEBUG".to_string()),
        "RUST_LOG=debug logged {levels:?}\n{}",
        out.all()
    );

    // --log-level wins over RUST_LOG.
    let (levels, out) = levels_with(&["--log-level", "error"], &[("RUST_LOG", "debug")]);
    assert!(
        levels.iter().all(|l| l == "ERROR"),
        "--log-level error with RUST_LOG=debug logged {levels:?}\n{}",
        out.all()
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn secrets_and_url_credentials_never_reach_the_logs_even_at_trace() {
    let origin = Origin::new();
    let right = "right-t0ken-Xq9mB";
    let http = GitHttp::start(origin.root.path(), "alice", right);
    let work = scratch("work");
    let wrong = "wrong-t0ken-Vb2cL";
    let auth_token = "auth-t0ken-Hn4sD";
    // `nosuch`: authenticates, then fails with a message that quotes the (redacted) URL.
    let good_creds = http.url_with_credentials("origin.git", "alice", right);
    let bad_creds = http.url_with_credentials("origin.git", "alice", wrong);
    let repo = |name: &str, url: &str, extra: &str| {
        let dir = work.path().join(name);
        repo_yaml(
            name,
            url,
            &dir,
            &format!("    secret: {SECRET}-{name}\n{extra}"),
        )
    };
    let body = format!(
        "workers: 2\napi: {{token: {API_TOKEN}}}\ndefaults:\n  retry: {{attempts: 2, initial_delay: 10ms, max_delay: 20ms}}\nrepos:\n{}{}{}",
        repo("nosuch", &good_creds, "    branch: nosuch\n"),
        repo("badurl", &bad_creds, ""),
        repo(
            "badauth",
            &http.url("origin.git"),
            &format!("    auth: {{username: alice, token: {auth_token}}}\n")
        ),
    );
    let secrets = [
        right.to_string(),
        wrong.to_string(),
        auth_token.to_string(),
        SECRET.to_string(),
        API_TOKEN.to_string(),
    ];
    for (args, env) in [
        (vec!["--log-level", "trace"], vec![]),
        (vec![], vec![("RUST_LOG", "trace")]),
    ] {
        let d = daemon(&args, &env).config(&body).start();
        for name in ["nosuch", "badurl", "badauth"] {
            let s = d.wait_syncs(name, 1);
            assert!(s["last_error"].is_object(), "{name} fails: {s:#}");
            for secret in &secrets {
                assert!(
                    !s.to_string().contains(secret.as_str()),
                    "the API shows {secret}: {s}"
                );
            }
        }
        // A verified webhook, a refused one, an API sync, and an API call with a wrong token.
        let head = origin.head("main");
        let secret = format!("{SECRET}-badurl");
        let signed = push(&secret, &bad_creds, &head, "secrets-1");
        assert_eq!(d.deliver("/hooks/badurl", &signed).status, 202);
        // Signed with `SECRET`, not the repo's own `SECRET-badurl`.
        let other = push(SECRET, &bad_creds, &head, "secrets-2");
        assert_eq!(d.deliver("/hooks/badurl", &other).status, 401);
        assert_eq!(d.api_sync("badauth").status, 502);
        assert_eq!(d.get_auth("/api/repos", "not-the-token").status, 401);
        d.wait_syncs("badurl", 2);
        let out = d.stop();
        let all = out.all();
        // hookmirror itself logs nothing at trace (the watcher crates that do are capped at
        // info); debug lines prove the level took effect.
        assert!(
            all.contains("DEBUG"),
            "{args:?} {env:?}: trace level is on\n{all}"
        );
        assert!(
            all.contains("alice:***@127.0.0.1"),
            "the URL is logged, redacted:\n{all}"
        );
        assert!(
            all.matches("result=\"failed\"").count() >= 4,
            "the failures were logged:\n{all}"
        );
        for secret in &secrets {
            assert!(
                !all.contains(secret.as_str()),
                "{args:?} {env:?}: {secret:?} appears in the logs:\n{}",
                all.lines()
                    .filter(|l| l.contains(secret.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    assert!(
        http.unauthorized_requests() > 0,
        "the wrong tokens were really sent"
    );
}

// ---------------------------------------------------------------------------------------------
// Found while testing logging
// ---------------------------------------------------------------------------------------------

/// Regression (src/url.rs, the redaction used by the API's `url` and by error messages): a
/// token given as the URL's user name, `https://TOKEN@host/owner/repo.git` (a common way to
/// clone with a personal access token), was left as it was, because only a `user:password` pair
/// counted as a credential. The token then showed in `GET /api/repos`, in `hookmirror check`, in
/// log lines that quote the URL, and in `.git/config` of the checkout. A user name without a
/// password now counts as a credential on http(s) URLs (`https://***@host/...`; ssh's `git@` is
/// a user, not a secret).
#[test]
fn a_token_given_as_the_url_user_name_is_redacted() {
    let remote = Remote::local();
    let token = "ghp_t0kenAsUserXq9mBVb2cLHn4sD";
    let http = GitHttp::start(remote.origin.root.path(), token, "");
    let url = format!("http://{token}@127.0.0.1:{}/origin.git", http.port);
    let m = site_with(
        Mirror::on(remote).url(&url),
        "log: {level: trace}\n",
        &[],
        &[],
    );
    let s = m.first;
    let out = m.daemon.stop();
    assert!(
        !s["url"].as_str().unwrap_or_default().contains(token),
        "GET /api/repos/site shows the token: url = {}",
        s["url"]
    );
    assert!(!out.all().contains(token), "the logs show the token");
}

/// Regression (src/logging.rs with the config watcher of src/reload.rs): at trace level, the
/// `notify` crate logged every inotify event in the config's folder ("inotify event: ..."). When
/// the log went to a file in that folder (`log.output: /etc/hookmirror/hookmirror.log`, or
/// stdout redirected there), each line written was an event that was logged again: an idle
/// daemon wrote tens of MB per second until the disk was full. The watcher's dependencies
/// (`notify`, `inotify`, `mio`) are now capped at info unless a directive names them.
#[test]
fn trace_logging_into_the_config_folder_does_not_feed_on_itself() {
    // The log file next to the config (in the config's folder, `conf/`).
    let m = site(
        "log: {output: hookmirror.log}\n",
        &["--log-level", "trace"],
        &[],
    );
    let log = m.daemon.conf().join("hookmirror.log");
    std::thread::sleep(Duration::from_millis(300));
    let before = std::fs::metadata(&log).unwrap().len();
    std::thread::sleep(Duration::from_millis(1000));
    let after = std::fs::metadata(&log).unwrap().len();
    drop(m);
    assert!(
        after - before < 256 * 1024,
        "an idle daemon wrote {} KiB of log in one second",
        (after - before) / 1024
    );
}

// ---------------------------------------------------------------------------------------------
// Text from outside
// ---------------------------------------------------------------------------------------------

/// A request path that carries a whole fake log line, a CR and a terminal escape (clear screen).
const FORGED_PATH: &str =
    "x%0AINFO%20sync%20repo%3Dsite%20result%3D%22ok%22%20FORGED%0D%1B%5B2J%E2%80%A8";

/// Unauthenticated requests whose paths carry a fake `INFO sync … result="ok"` line, CR, ESC
/// and U+2028 (to the API and to a webhook route), in both formats: the refusal is logged on
/// one line of its own that holds the fake text as an escaped value, no line is forged, and no
/// raw CR or ESC reaches the output. In JSON each decoded value is one line of visible text
/// too (JSON's own escaping alone would give a reader the newline back). Used to write the
/// fake line as a line of its own in text.
#[test]
fn text_from_requests_never_starts_a_log_line_of_its_own() {
    for format in ["text", "json"] {
        let m = site(&format!("log: {{format: {format}}}\n"), &[], &[]);
        let d = &m.daemon;
        let r = d.post_auth(&format!("/api/repos/{FORGED_PATH}/sync"), None);
        assert_eq!(r.status, 401, "{format}");
        let r = d.get_auth(&format!("/api/repos/{FORGED_PATH}"), "not-a-token");
        assert_eq!(r.status, 401, "{format}");
        let r = d.deliver(
            &format!("/hooks/{FORGED_PATH}"),
            &push(
                SECRET,
                &m.remote.origin.url(),
                &m.remote.origin.head("main"),
                "id-1",
            ),
        );
        assert_eq!(r.status, 404, "{format}");
        let out = m.daemon.stop();
        let refused: Vec<&str> = out
            .lines()
            .into_iter()
            .filter(|l| l.contains("api call refused"))
            .collect();
        assert_eq!(refused.len(), 2, "{format}: {}", out.all());
        for line in out.lines() {
            if line.contains("FORGED") {
                assert!(
                    line.contains("api call refused"),
                    "{format}: forged: {line:?}"
                );
            }
            if format == "json" {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                for value in v.as_object().unwrap().values() {
                    if let Some(s) = value.as_str() {
                        assert!(
                            !s.contains(['\n', '\r', '\u{1b}', '\u{2028}']),
                            "{format}: a decoded value holds a control character: {line}"
                        );
                    }
                }
            } else {
                assert!(level(line).is_some(), "{format}: not a log line: {line:?}");
            }
        }
        for raw in ['\r', '\u{1b}', '\u{2028}'] {
            assert!(
                !out.stdout.contains(raw) && !out.stderr.contains(raw),
                "{format}: raw {raw:?} in\n{}",
                out.all()
            );
        }
        // The fake text is there, escaped, as the value it came in.
        let need = if format == "json" {
            let v: Value = serde_json::from_str(refused[0]).unwrap();
            v["need"].as_str().unwrap().to_string()
        } else {
            fields(refused[0])["need"].clone()
        };
        assert!(
            need.starts_with("sync x\\nINFO sync repo=site result="),
            "{format}: {need:?}"
        );
    }
}
