//! Observability of the real `hookmirror serve`: `/metrics` scraped with a Prometheus text
//! parser (both formats; series of a removed repository gone after a reload), `/readyz` turning
//! red and green again, the history API, the status page rendered by headless Chromium (DOM
//! checked, injection escaped, screenshot taken), and the CLI's `status`, `completions`, `man`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::*;
use support::forge::*;

const TOKEN: &str = "obs-token-5f1e2d3c";

/// A parsed scrape of `/metrics` (Prometheus text format unless `accept` says otherwise).
fn scrape(d: &Daemon, accept: Option<&str>) -> (prometheus_parse::Scrape, Resp) {
    let mut req = d.client().get(d.url("/metrics"));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let r = d.send(req);
    assert_eq!(r.status, 200, "{}", r.text);
    let lines: Vec<std::io::Result<String>> = r.text.lines().map(|l| Ok(l.to_string())).collect();
    let parsed = prometheus_parse::Scrape::parse(lines.into_iter()).unwrap();
    (parsed, r)
}

/// The value of the sample `metric` whose labels include `labels` (a histogram: its count).
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(b) => b
                .iter()
                .find(|c| c.less_than.is_infinite())
                .map_or(0.0, |c| c.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_are_scraped_with_a_prometheus_parser() {
    let secret = "metrics-secret-77aa";
    let m = Mirror::start(&format!("    branch: main\n    secret: {secret}\n"));
    let (d, remote) = (&m.daemon, &m.remote);
    let forms = remote.forms();
    let c1 = remote.head();
    let c2 = remote.advance("metrics");
    let (id, delivery) = github_main_push(secret, &forms, &c1, &c2);
    d.deliver("/hooks/site", &delivery)
        .expect_queued(&["site"], &id);
    d.wait_head("site", &m.dir, &c2);
    // Refused: a wrong signature, and a path nobody serves.
    let (_, forged) = github_main_push("not-the-secret", &forms, &c1, &c2);
    assert_eq!(d.deliver("/hooks/site", &forged).status, 401);
    assert_eq!(d.deliver("/hooks/nobody", &forged).status, 404);

    let (s, r) = scrape(d, None);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    let site = [("repo", "site")];
    let syncs = |trigger, result| {
        value(
            &s,
            "hookmirror_syncs_total",
            &[("repo", "site"), ("trigger", trigger), ("result", result)],
        )
    };
    assert_eq!(syncs("startup", "updated"), Some(1.0), "{}", r.text);
    assert_eq!(syncs("webhook", "updated"), Some(1.0), "{}", r.text);
    assert_eq!(
        value(&s, "hookmirror_sync_duration_seconds", &site),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "hookmirror_push_to_synced_seconds", &site),
        Some(1.0)
    );
    let last = value(&s, "hookmirror_last_success_timestamp_seconds", &site).unwrap();
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - last).abs() < 120.0, "{last} vs {now}");
    assert_eq!(
        value(&s, "hookmirror_consecutive_failures", &site),
        Some(0.0)
    );
    let webhooks = |provider, result| {
        value(
            &s,
            "hookmirror_webhook_requests_total",
            &[("provider", provider), ("result", result)],
        )
    };
    assert_eq!(webhooks("github", "queued"), Some(1.0));
    assert_eq!(webhooks("github", "unauthorized"), Some(1.0));
    assert_eq!(webhooks("github", "not_found"), Some(1.0));
    assert_eq!(webhooks("gitlab", "queued"), Some(0.0));
    assert_eq!(value(&s, "hookmirror_queue_pending", &[]), Some(0.0));
    assert_eq!(value(&s, "hookmirror_syncs_running", &[]), Some(0.0));
    assert_eq!(
        value(&s, "hookmirror_reloads_total", &[("result", "ok")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &s,
            "hookmirror_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(value(&s, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(value(&s, "process_open_fds", &[]).unwrap() > 3.0);
    assert!(value(&s, "process_cpu_seconds_total", &[]).unwrap() > 0.0);
    let start = value(&s, "process_start_time_seconds", &[]).unwrap();
    // /proc's boot time is in whole seconds: the start time may be off by one.
    assert!(
        now - start > -2.0 && now - start < 600.0,
        "{start} vs {now}"
    );
    // Every label value is from a bounded set.
    for sample in &s.samples {
        for (k, v) in sample.labels.iter() {
            let allowed = match k.as_str() {
                "repo" => v == "site",
                "trigger" => {
                    ["webhook", "api", "startup", "schedule", "lag", "reload"].contains(&v.as_str())
                }
                "provider" => hookmirror::metrics::PROVIDERS.contains(&v.as_str()),
                _ => true,
            };
            assert!(allowed, "{} {k}={v}", sample.metric);
        }
    }

    // OpenMetrics when asked for.
    let r = d.send(d.client().get(d.url("/metrics")).header(
        "Accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ));
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers
    );
    assert!(r.text.ends_with("# EOF\n"));
    assert!(r.text.contains("# TYPE hookmirror_syncs counter"));

    // The history API: both syncs, oldest first.
    let h = d.get("/api/repos/site/history").expect(200);
    let results: Vec<&str> = h["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["updated", "updated"], "{h}");
    assert_eq!(h["syncs"][1]["trigger"], "webhook");
    assert_eq!(h["syncs"][1]["commit"], c2.as_str());
    assert_eq!(d.get("/api/repos/nobody/history").status, 404);
}

#[test]
fn a_removed_repository_leaves_the_metrics_after_a_reload() {
    let remote = support::daemon::Remote::new();
    let work = scratch("work");
    let repo = |name: &str| {
        repo_yaml(
            name,
            &remote.url(),
            &work.path().join(name),
            "    secret: s\n",
        )
    };
    let d = Daemon::start("", &[repo("site"), repo("docs")]);
    d.wait_syncs("site", 1);
    d.wait_syncs("docs", 1);
    let (s, _) = scrape(&d, None);
    assert!(value(&s, "hookmirror_consecutive_failures", &[("repo", "docs")]).is_some());
    d.replace_config(&config_text("", &[repo("site")]));
    d.wait_reloads(1);
    let (s, r) = scrape(&d, None);
    assert!(!r.text.contains("repo=\"docs\""), "{}", r.text);
    assert!(value(&s, "hookmirror_consecutive_failures", &[("repo", "site")]).is_some());
    assert_eq!(
        value(&s, "hookmirror_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
}

#[test]
fn readyz_turns_red_while_a_repository_fails_and_green_when_it_recovers() {
    let m = Mirror::on(support::daemon::Remote::new())
        .keys("    secret: s\n")
        .daemon(
            Daemon::builder()
                .top(&format!(
                    "api: {{token: {TOKEN}}}\nhealth: {{max_consecutive_failures: 2}}\n"
                ))
                .token(TOKEN),
        )
        .start();
    let d = &m.daemon;
    assert_eq!(
        d.get("/readyz").expect(200),
        serde_json::json!({"ready": true})
    );
    assert_eq!(d.get("/healthz").status, 200);
    let bare = m.remote.origin.bare.clone();
    let away = m.remote.origin.root.path().join("away.git");
    std::fs::rename(&bare, &away).unwrap();
    assert_eq!(d.api_sync("site").status, 502);
    // One failure is below the limit of two.
    assert_eq!(d.get("/readyz").status, 200);
    assert_eq!(d.api_sync("site").status, 502);
    // Reads are protected (`api.token` is set): a probe without a token learns that one
    // repository is not ready, not which or why (the error names the URL). It used to get both.
    let r = d.get("/readyz");
    let v = r.expect(503);
    assert_eq!(v["ready"], false);
    assert_eq!(v["unready"], 1, "{v}");
    assert!(v.get("repos").is_none(), "{v}");
    assert!(
        !r.text.contains("site") && !r.text.contains("origin.git"),
        "{}",
        r.text
    );
    let refused = d.logs().matches("api call refused").count();
    let v = d.get_auth("/readyz", TOKEN).expect(503);
    assert_eq!(
        d.logs().matches("api call refused").count(),
        refused,
        "probes are not logged"
    );
    assert_eq!(v["repos"][0]["name"], "site");
    assert_eq!(v["repos"][0]["reason"], "failing");
    assert_eq!(v["repos"][0]["consecutive_failures"], 2);
    assert!(v["repos"][0]["last_error"]["message"].is_string(), "{v}");
    // /healthz stays green: the process serves.
    assert_eq!(d.get("/healthz").status, 200);
    std::fs::rename(&away, &bare).unwrap();
    assert_eq!(d.api_sync("site").status, 200);
    assert_eq!(d.get("/readyz").expect(200)["ready"], true);
}

#[test]
fn readyz_waits_for_every_first_sync() {
    let remote = support::daemon::Remote::new();
    let work = scratch("work");
    let site = repo_yaml(
        "site",
        &remote.url(),
        &work.path().join("site"),
        "    secret: s\n",
    );
    let d = Daemon::builder()
        .top(&format!(
            "initialise: false\napi: {{token: {TOKEN}, protect_reads: false}}\n"
        ))
        .token(TOKEN)
        .repo(site)
        .start();
    // Reads are open: anyone sees which repository and why.
    let v = d.get("/readyz").expect(503);
    assert_eq!(v["repos"][0]["name"], "site");
    assert_eq!(v["repos"][0]["reason"], "never_synced");
    assert_eq!(d.api_sync("site").status, 200);
    assert_eq!(d.get("/readyz").status, 200);
}

/// Headless Chromium with a private profile; `args` after the fixed flags, `url` last.
fn chromium(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .env("HOME", profile)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .expect("chromium is installed (.ci/run installs it)");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // A watchdog: Chromium that hangs is killed (with its helpers) after two minutes.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    out
}

#[test]
fn the_status_page_renders_in_a_real_browser() {
    let secret = "page-secret-31c2";
    let remote = support::daemon::Remote::new();
    let work = scratch("work");
    // A repository whose error message carries markup (the path is in libgit2's message).
    let evil_dir = work.path().join("<img src=x onerror=alert(1)>");
    let evil_url = format!("file://{}", evil_dir.display());
    let m = Mirror::on(remote)
        .keys(&format!("    branch: main\n    secret: {secret}\n"))
        .daemon(Daemon::builder().repo(repo_yaml(
            "broken",
            &evil_url,
            &work.path().join("broken"),
            "    secret: s\n",
        )))
        .start();
    let d = &m.daemon;
    d.wait_for("broken", "a failure", |s| {
        s["failures"].as_u64() >= Some(1) && idle(s)
    });
    let forms = m.remote.forms();
    let mut head = m.remote.head();
    for i in 0..3 {
        let next = m.remote.advance(&format!("page {i}"));
        let (id, delivery) = github_main_push(secret, &forms, &head, &next);
        d.deliver("/hooks/site", &delivery)
            .expect_queued(&["site"], &id);
        d.wait_head("site", &m.dir, &next);
        head = next;
    }
    let with_id = |mut d: Delivery, id: &str| {
        for (k, v) in d.headers.iter_mut() {
            if k.eq_ignore_ascii_case("X-GitHub-Delivery") {
                *v = id.into();
            }
        }
        d
    };
    // A signed delivery whose id is markup: listed, escaped (GitHub signs the body only).
    let (_, signed) = github_main_push(secret, &forms, &head, &head);
    let signed = with_id(signed, "<script>document.title='owned'</script>");
    assert_eq!(d.deliver("/hooks/site", &signed).status, 202);
    d.wait_idle("site");
    // 120 forged deliveries (more than the list holds), with ids their sender chose: refused,
    // counted, never listed. They used to push the verified ones out of the list.
    for i in 0..120 {
        let (_, forged) = github_main_push("wrong", &forms, &head, &head);
        let forged = with_id(forged, &format!("forged-{i}"));
        assert_eq!(d.deliver("/hooks/site", &forged).status, 401);
    }
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains(
            "hookmirror_webhook_requests_total{provider=\"github\",result=\"unauthorized\"} 120"
        ),
        "{metrics}"
    );

    let raw = d.get("/");
    assert_eq!(raw.status, 200);
    assert!(
        raw.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(!raw.text.contains("<script"), "{}", raw.text);
    assert!(!raw.text.contains("<img src=x"), "{}", raw.text);
    assert!(!raw.text.contains("forged-"), "{}", raw.text);
    // The page's headers: only its own style sheet may apply, nothing frames it, no referrer.
    let header = |r: &Resp, name: &str| {
        r.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {name} on the answer: {:?}", r.headers))
    };
    let csp = header(&raw, "content-security-policy");
    for part in [
        "default-src 'none'",
        "style-src 'sha256-",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
    for r in [&raw, &d.get("/api/repos"), &d.get("/metrics")] {
        assert_eq!(header(r, "x-content-type-options"), "nosniff");
        assert_eq!(header(r, "x-frame-options"), "DENY");
        assert_eq!(header(r, "referrer-policy"), "no-referrer");
        assert!(header(r, "content-security-policy").contains("frame-ancestors 'none'"));
    }

    let profile = scratch("chromium");
    // A control: this Chromium reports a CSP violation on stderr as a console message.
    let control = chromium(
        profile.path(),
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
        "data:text/html,<meta http-equiv='Content-Security-Policy' content=\"style-src 'none'\"><style>b{}</style>",
    );
    assert!(
        String::from_utf8_lossy(&control.stderr).contains("Content Security Policy"),
        "{}",
        String::from_utf8_lossy(&control.stderr)
    );
    let out = chromium(
        profile.path(),
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
        &d.url("/"),
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let console = String::from_utf8_lossy(&out.stderr);
    assert!(
        dom.contains("<table id=\"repos\">"),
        "chromium: {console}\n{dom}"
    );
    assert!(
        !console.contains("Content Security Policy"),
        "the page breaks its own policy: {console}"
    );
    // One row per repository, in config order.
    let site_row = dom.find("data-repo=\"site\"").expect(&dom);
    let broken_row = dom.find("data-repo=\"broken\"").expect(&dom);
    assert!(site_row < broken_row);
    // The browser parsed no injected element: the markup is text.
    assert!(!dom.contains("<img src=\"x\""), "{dom}");
    assert!(!dom.contains("<script>document"), "{dom}");
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "{dom}"
    );
    assert!(dom.contains("<title>hookmirror"), "{dom}");
    // Charts: site synced 4 times (start-up and three pushes), broken failed at least once.
    let site_part = &dom[site_row..broken_row];
    assert_eq!(
        site_part.matches("<rect class=\"r-updated\"").count(),
        4,
        "{site_part}"
    );
    assert!(site_part.contains(&head[..7]));
    assert!(
        site_part.contains(" ago</time>") || site_part.contains(">just now</time>"),
        "{site_part}"
    );
    let broken_part = &dom[broken_row..];
    assert!(
        broken_part.contains("<rect class=\"r-failed\""),
        "{broken_part}"
    );
    // The delivery list: the verified ones only, newest (the markup id) first.
    let list = &dom[dom.find("<table id=\"deliveries\">").unwrap()..];
    assert_eq!(list.matches("<td>queued</td>").count(), 4, "{list}");
    assert_eq!(list.matches("<td>unauthorized</td>").count(), 0, "{list}");
    assert!(!list.contains("forged-"), "{list}");
    assert!(list.find("document.title").unwrap() < list.find("queued").unwrap());
    assert!(dom.contains("http-equiv=\"refresh\""));

    let png = profile.path().join("status-page.png");
    let shot = format!("--screenshot={}", png.display());
    let out = chromium(
        profile.path(),
        &[&shot, "--window-size=1280,900"],
        &d.url("/"),
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{}",
        bytes.len()
    );
    if let Some(to) = std::env::var_os("HOOKMIRROR_SCREENSHOT") {
        std::fs::copy(&png, to).unwrap();
    }
}

#[test]
fn the_cli_asks_the_daemon_and_documents_itself() {
    let m = Mirror::on(support::daemon::Remote::new())
        .keys("    secret: s\n")
        .daemon(
            Daemon::builder()
                .top(&format!("api: {{token: {TOKEN}}}\n"))
                .token(TOKEN),
        )
        .start();
    let home = scratch("cli");
    let out = hookmirror_command(home.path())
        .arg("status")
        .arg("--config")
        .arg(&m.daemon.config)
        .env("HOOKMIRROR_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{stdout}");
    let commit = m.first["commit"].as_str().unwrap();
    assert!(
        lines[1].starts_with("site ") && lines[1].contains(&commit[..12]),
        "{stdout}"
    );
    assert!(lines[1].contains("idle"), "{stdout}");

    // A wrong token is refused and said so.
    let out = hookmirror_command(home.path())
        .args(["status", "--token", "wrong", "--config"])
        .arg(&m.daemon.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    // Completions and the man page need no config.
    for shell in ["bash", "zsh", "fish"] {
        let out = hookmirror_command(home.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("hookmirror") && script.contains("status"),
            "{shell}"
        );
    }
    let out = hookmirror_command(home.path()).arg("man").output().unwrap();
    assert!(out.status.success());
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(
        roff.starts_with(".ie") || roff.contains(".TH hookmirror"),
        "{roff}"
    );
    for sub in ["check", "sync", "serve", "status", "completions", "man"] {
        assert!(roff.contains(sub), "{sub}");
    }
    let page = home.path().join("hookmirror.1");
    std::fs::write(&page, roff.as_bytes()).unwrap();
    if Command::new("man").arg("--version").output().is_ok() {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        assert!(rendered.status.success(), "{rendered:?}");
        assert!(String::from_utf8_lossy(&rendered.stdout).contains("NAME"));
    } else {
        eprintln!("man is not installed: the page was generated but not rendered");
    }
}
