//! Issue 14, against the real binary and real git remotes: scoped, expiring, hashed API tokens
//! (each scope in and out of its repositories, expired, wrong, one byte off), `protect_reads`
//! with bearer and basic auth, a removed token refused right after a reload, `hookmirror token
//! new`, and `?force=true` repairing a checkout whose files were edited by hand.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use hookmirror::sync::{SyncOptions, sync_once};
use serde_json::json;
use support::daemon::{Daemon, Remote, Resp, hookmirror_command, repo_yaml, scratch};
use support::{Origin, git, rev_parse};

/// The plaintext of every token below; none may appear in logs, answers or error bodies.
const READER: &str = "hm-reader-6a1f09c2d7";
const DOCS_READER: &str = "hm-docsreader-41e7bb";
const CI_DOCS: &str = "hm-cidocs-0f3a9d55e1";
const OPS: &str = "hm-ops-b7c2e4a019";
const OLD: &str = "hm-old-93d1f8c6aa";
const LEGACY: &str = "hm-legacy-5e0c7b21f4";

fn sha(token: &str) -> String {
    hex_of(&hookmirror::config::token_sha256(token))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `api` block: tokens given as SHA-256 (as `token new` prints), inline and from a file.
fn api_block(protect_reads: bool) -> String {
    format!(
        "api:\n  protect_reads: {protect_reads}\n  token: {LEGACY}\n  tokens:\n\
         \x20   - {{name: reader, sha256: {}, scopes: [read]}}\n\
         \x20   - {{name: docs-reader, token: {DOCS_READER}, scopes: [read], repos: [docs]}}\n\
         \x20   - {{name: ci-docs, sha256: {}, scopes: [sync], repos: [docs, 'docs-*']}}\n\
         \x20   - {{name: ops, token_file: ops.token, scopes: [admin], expires: 2999-01-01}}\n\
         \x20   - {{name: old, sha256: {}, scopes: [sync, read], expires: 2020-06-30}}\n",
        sha(READER),
        sha(CI_DOCS),
        sha(OLD),
    )
}

/// Three repositories (docs, docs-api, site) following one local origin, each synced once.
struct Fleet {
    daemon: Daemon,
    remote: Remote,
    work: tempfile::TempDir,
}

const NAMES: [&str; 3] = ["docs", "docs-api", "site"];

impl Fleet {
    fn start(top: &str, extra_keys: &str) -> Fleet {
        let remote = Remote::local();
        let work = scratch("api-work");
        let repos: Vec<String> = NAMES
            .iter()
            .map(|n| {
                let keys = format!("    branch: main\n    secret: hook-{n}\n{extra_keys}");
                repo_yaml(n, &remote.url(), &work.path().join(n), &keys)
            })
            .collect();
        let daemon = Daemon::builder()
            .top(top)
            .repos(&repos)
            .file("ops.token", &format!("{OPS}\n"))
            .token(OPS)
            .start();
        for n in NAMES {
            daemon.wait_syncs(n, 1);
        }
        Fleet {
            daemon,
            remote,
            work,
        }
    }

    fn dir(&self, name: &str) -> std::path::PathBuf {
        self.work.path().join(name)
    }

    fn syncs(&self, name: &str) -> u64 {
        self.daemon.status(name)["syncs"].as_u64().unwrap()
    }

    fn get(&self, path: &str, token: Option<&str>) -> Resp {
        match token {
            Some(t) => self.daemon.get_auth(path, t),
            None => self.daemon.get(path),
        }
    }

    fn post(&self, path: &str, token: Option<&str>) -> Resp {
        self.daemon.post_auth(path, token)
    }
}

/// The error message of a refusal, checked to hold none of the plaintext tokens.
#[track_caller]
fn refusal(r: &Resp, status: u16) -> String {
    let v = r.expect(status);
    for t in [READER, DOCS_READER, CI_DOCS, OPS, OLD, LEGACY] {
        assert!(!r.text.contains(t), "a token in an answer: {}", r.text);
    }
    v["error"].as_str().unwrap().to_string()
}

/// `token` with its byte at `i` changed.
fn one_byte_off(token: &str, i: usize) -> String {
    let mut b = token.as_bytes().to_vec();
    b[i] = if b[i] == b'x' { b'y' } else { b'x' };
    String::from_utf8(b).unwrap()
}

/// Edits `file` of the checkout `dir` in place so that only its content tells: same size, same
/// modification time, ctime not trusted (`core.trustctime = false`, as on filesystems whose
/// ctime is unreliable), and the index stamped well after the file (else git treats it as
/// "racily clean" and reads it whatever its stat data says).
fn edit_keeping_stat(dir: &Path, file: &str, content: &str) {
    git(dir, &["config", "core.trustctime", "false"]);
    let path = dir.join(file);
    let before = std::fs::metadata(&path).unwrap();
    assert_eq!(before.len() as usize, content.len());
    std::fs::write(&path, content).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    let index = std::fs::File::options()
        .write(true)
        .open(dir.join(".git/index"))
        .unwrap();
    index
        .set_modified(before.modified().unwrap() + Duration::from_secs(10))
        .unwrap();
}

/// The engine's repair path: a forced sync rewrites every file that differs from the commit,
/// also one whose size and times did not change (which an ordinary reset trusts), while HEAD
/// stays at the tip.
#[test]
fn a_forced_sync_rewrites_files_edited_by_hand_while_head_stayed() {
    hookmirror::sync::init_libgit2();
    let origin = Origin::new();
    origin.commit("index.html", "<h1>release</h1>\n");
    let tip = origin.commit("app/config.txt", "mode=prod\n");
    let tmp = support::daemon::scratch("force-engine");
    let dir = tmp.path().join("site");
    let r = support::plain_repo_config(&origin.url(), &dir, "");
    sync_once(&r, &SyncOptions::default()).unwrap();
    assert_eq!(rev_parse(&dir, "HEAD").unwrap(), tip);

    // Hand damage: a changed file (same size, same time), a changed file (new size), a deleted
    // file, an untracked file.
    edit_keeping_stat(&dir, "index.html", "<h1>HACKED!</h1>\n");
    sync_once(&r, &SyncOptions::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).unwrap(),
        "<h1>HACKED!</h1>\n",
        "an ordinary reset trusts the index's stat data: this is why a forced sync forgets it \
         (if an ordinary sync repairs this too now, drop this assertion)"
    );
    std::fs::write(dir.join("app/config.txt"), "mode=debug\nextra=1\n").unwrap();
    std::fs::remove_file(dir.join("README")).unwrap();
    std::fs::write(dir.join("stray.txt"), "left by hand\n").unwrap();

    // With the tip as hint (a redelivered webhook) the sync may skip everything; forced, it
    // may not.
    let s = sync_once(
        &r,
        &SyncOptions {
            hints: Some(vec![tip.clone()]),
            force: true,
            no_wait: false,
        },
    )
    .unwrap();
    assert!(s.fetched && !s.changed(), "{s:?}");
    assert_eq!(rev_parse(&dir, "HEAD").unwrap(), tip);
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).unwrap(),
        "<h1>release</h1>\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app/config.txt")).unwrap(),
        "mode=prod\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).unwrap(),
        "initial\n"
    );
    assert_eq!(git(&dir, &["status", "--porcelain"]), "?? stray.txt");
}

/// Every scope in and out of its repositories, an expired token, a wrong one, one that differs in
/// a single byte (first, middle, last), none: the status, the message, the challenge, and that
/// refused calls did nothing. No plaintext token in logs, status or error bodies; the log names
/// the token of each call.
#[test]
fn each_scope_in_and_out_of_its_repos_expired_wrong_and_one_byte_off() {
    let f = Fleet::start(&api_block(true), "");
    let d = &f.daemon;
    d.get("/healthz");
    assert_eq!(d.get("/healthz").status, 200, "health stays open");

    // read: every repository, but no sync, no reload.
    let v = f.get("/api/repos", Some(READER)).expect(200);
    assert_eq!(v["repos"].as_array().unwrap().len(), 3);
    f.get("/api/repos/site", Some(READER)).expect(200);
    let m = refusal(&f.post("/api/repos/docs/sync", Some(READER)), 403);
    assert_eq!(m, "token `reader` lacks the `sync` scope");
    refusal(&f.post("/api/reload", Some(READER)), 403);

    // read, limited to docs: the list shows docs alone; another repo is 403.
    let v = f.get("/api/repos", Some(DOCS_READER)).expect(200);
    let names: Vec<&str> = v["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docs"]);
    f.get("/api/repos/docs", Some(DOCS_READER)).expect(200);
    let m = refusal(&f.get("/api/repos/site", Some(DOCS_READER)), 403);
    assert_eq!(m, "token `docs-reader` lacks access to repository `site`");

    // sync on docs and docs-*: in scope it syncs, out of scope (existing or not) 403 that does
    // not list what it could reach; reads and reload are not its business.
    let v = f.post("/api/repos/docs/sync", Some(CI_DOCS)).expect(202);
    assert_eq!(v, json!({"queued": ["docs"]}));
    let v = f
        .post("/api/repos/docs-api/sync?wait=true", Some(CI_DOCS))
        .expect(200);
    assert_eq!((&v["name"], &v["ok"]), (&json!("docs-api"), &json!(true)));
    for repo in ["site", "nope"] {
        let m = refusal(
            &f.post(&format!("/api/repos/{repo}/sync"), Some(CI_DOCS)),
            403,
        );
        assert_eq!(
            m,
            format!("token `ci-docs` lacks access to repository `{repo}`")
        );
    }
    let m = refusal(&f.get("/api/repos", Some(CI_DOCS)), 403);
    assert_eq!(m, "token `ci-docs` lacks the `read` scope");
    let m = refusal(&f.post("/api/reload", Some(CI_DOCS)), 403);
    assert_eq!(m, "token `ci-docs` lacks the `admin` scope");

    // admin (from a file) and the single api.token: everything.
    for t in [OPS, LEGACY] {
        f.get("/api/repos/site", Some(t)).expect(200);
        f.post("/api/repos/nope/sync", Some(t)).expect(404);
    }
    let v = f
        .post("/api/repos/site/sync?wait=true", Some(OPS))
        .expect(200);
    assert_eq!(v["ok"], true);

    // Expired: 401 saying so, for reads and writes.
    for r in [
        f.get("/api/repos", Some(OLD)),
        f.post("/api/repos/docs/sync", Some(OLD)),
    ] {
        let m = refusal(&r, 401);
        assert_eq!(m, "token `old` expired at 2020-06-30 00:00:00 UTC");
    }

    // Wrong, one byte off (first, middle, last), empty, none: 401, nothing named. The challenge
    // is Basic on reads (a browser can log in), Bearer on writes.
    let mut wrong = vec!["hm-nobody-000000".to_string()];
    for t in [CI_DOCS, OPS, READER] {
        for i in [0, t.len() / 2, t.len() - 1] {
            wrong.push(one_byte_off(t, i));
        }
    }
    for t in wrong
        .iter()
        .map(|w| Some(w.as_str()))
        .chain([Some(""), None])
    {
        let r = f.get("/api/repos/site", t);
        let m = refusal(&r, 401);
        assert!(!m.contains('`'), "no token named: {m}");
        assert_eq!(r.headers["www-authenticate"], "Basic realm=\"hookmirror\"");
        let r = f.post("/api/repos/site/sync", t);
        refusal(&r, 401);
        assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"hookmirror\"");
        refusal(&f.post("/api/reload", t), 401);
    }

    // What ran: docs twice (start-up, ci-docs), docs-api twice, site twice (start-up, ops);
    // every refused call did nothing.
    d.wait_syncs("docs", 2);
    std::thread::sleep(Duration::from_millis(300));
    let counts: Vec<u64> = NAMES.iter().map(|n| f.syncs(n)).collect();
    assert_eq!(counts, [2, 2, 2]);

    // The plaintext of no token in the status API or the logs; the logs name each caller.
    let all = f.get("/api/repos", Some(OPS)).text;
    for t in [READER, DOCS_READER, CI_DOCS, OPS, OLD, LEGACY] {
        assert!(!all.contains(t));
    }
    d.assert_clean_logs(&[READER, DOCS_READER, CI_DOCS, OPS, OLD, LEGACY]);
    let logs = d.logs();
    for line in [
        "api sync requested token=\"ci-docs\" repo=docs",
        "api sync requested token=\"ops\" repo=site",
        "api call refused token=\"ci-docs\" need=\"sync site\" reason=\"forbidden\"",
        "api call refused token=\"old\"",
        "api call refused token=\"-\" need=\"read site\" reason=\"invalid\"",
    ] {
        assert!(logs.contains(line), "no `{line}` in the logs:\n{logs}");
    }
}

/// A browser logs in to a protected read with HTTP basic auth: any user name, the token as
/// password. A wrong password is 401 with the Basic challenge again.
#[test]
fn basic_auth_works_on_a_protected_get() {
    let f = Fleet::start(&api_block(true), "");
    let d = &f.daemon;
    let basic = |user: &str, password: &str| {
        d.send(
            d.client()
                .get(d.url("/api/repos"))
                .basic_auth(user, Some(password)),
        )
    };
    for user in ["admin", "", "browser user"] {
        let v = basic(user, READER).expect(200);
        assert_eq!(v["repos"].as_array().unwrap().len(), 3);
    }
    assert_eq!(
        basic("x", DOCS_READER).expect(200)["repos"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = basic("x", &one_byte_off(READER, 3));
    refusal(&r, 401);
    assert_eq!(r.headers["www-authenticate"], "Basic realm=\"hookmirror\"");
    // Basic auth works for writes too (same token, same scopes).
    let r = d.send(
        d.client()
            .post(d.url("/api/repos/docs/sync"))
            .basic_auth("ci", Some(CI_DOCS)),
    );
    r.expect(202);
    d.assert_clean_logs(&[READER, DOCS_READER, CI_DOCS]);
}

/// `protect_reads: false` (the default with `api.tokens`): reads are open as before, whatever
/// credential comes; writes still need a token with the scope.
#[test]
fn protect_reads_off_leaves_gets_open() {
    let f = Fleet::start(&api_block(false), "");
    for t in [None, Some("garbage"), Some(CI_DOCS), Some(OLD)] {
        let v = f.get("/api/repos", t).expect(200);
        assert_eq!(v["repos"].as_array().unwrap().len(), 3, "{t:?}");
        f.get("/api/repos/site", t).expect(200);
    }
    refusal(&f.post("/api/repos/docs/sync", None), 401);
    refusal(&f.post("/api/repos/site/sync", Some(CI_DOCS)), 403);
    f.post("/api/repos/docs/sync", Some(CI_DOCS)).expect(202);
}

/// A reload puts token changes in force at once: a removed token is refused on the next request,
/// a new one works, a rotated token file takes effect; `POST /api/reload` (admin) reloads and
/// answers with the outcome.
#[test]
fn reload_applies_token_changes_at_once() {
    let f = Fleet::start(&api_block(true), "");
    let d = &f.daemon;
    f.post("/api/repos/docs/sync?wait=true", Some(CI_DOCS))
        .expect(200);

    // ci-docs removed, ci-site added.
    let ci_site = "hm-cisite-77ab01c3";
    let body = std::fs::read_to_string(&d.target).unwrap();
    let body = body.split_once('\n').unwrap().1.replace(
        &format!(
            "{{name: ci-docs, sha256: {}, scopes: [sync], repos: [docs, 'docs-*']}}",
            sha(CI_DOCS)
        ),
        &format!(
            "{{name: ci-site, sha256: {}, scopes: [sync], repos: [site]}}",
            sha(ci_site)
        ),
    );
    assert!(body.contains("ci-site"));
    d.replace_config(&body);
    d.wait_reloads(1);
    let m = refusal(&f.post("/api/repos/docs/sync", Some(CI_DOCS)), 401);
    assert_eq!(m, "the token is not valid");
    f.post("/api/repos/site/sync?wait=true", Some(ci_site))
        .expect(200);
    refusal(&f.post("/api/repos/docs/sync", Some(ci_site)), 403);

    // The admin token's file rotated: the old token stops, the new one works.
    let new_ops = "hm-ops-rotated-2c9d";
    let file = d.conf().join("ops.token");
    std::fs::write(file.with_extension("new"), format!("{new_ops}\n")).unwrap();
    std::fs::rename(file.with_extension("new"), &file).unwrap();
    assert!(
        support::wait_until(support::daemon::WAIT, || {
            f.get("/api/repos", Some(new_ops)).status == 200
        }),
        "the new token never worked:\n{}",
        d.logs()
    );
    refusal(&f.get("/api/repos", Some(OPS)), 401);

    // POST /api/reload (admin only) reloads and waits for the outcome.
    let before = f.get("/api/repos", Some(new_ops)).expect(200)["reload"]["reloads"]
        .as_u64()
        .unwrap();
    let v = f.post("/api/reload?wait=true", Some(new_ops)).expect(200);
    assert_eq!(v["reload"]["reloads"].as_u64(), Some(before + 1), "{v}");
    refusal(&f.post("/api/reload", Some(READER)), 403);
    let v = f.post("/api/reload", Some(LEGACY)).expect(202);
    assert_eq!(v, json!({"reload": "requested"}));
    // A config that does not load: 422 with the reason, and the tokens in force stay.
    d.replace_config(&body.replace("scopes: [read]}", "scopes: [reed]}"));
    let r = f.post("/api/reload?wait=true", Some(new_ops));
    let v = r.expect(422);
    assert!(
        v["reload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("`reed` is not a scope"),
        "{v}"
    );
    f.get("/api/repos", Some(READER)).expect(200);
    d.assert_clean_logs(&[READER, CI_DOCS, OPS, LEGACY, ci_site, new_ops]);
}

/// `?force=true` is the repair path: files edited, deleted or added by hand while HEAD stayed at
/// the tip are put back as the commit has them (untracked files as `clean:` says), and the
/// answer says nothing changed.
#[test]
fn force_restores_a_tree_edited_by_hand_while_head_stayed() {
    for clean in [false, true] {
        let f = Fleet::start(&api_block(true), &format!("    clean: {clean}\n"));
        let tip = f.remote.advance("content");
        let dir = f.dir("site");
        f.post("/api/repos/site/sync?wait=true", Some(CI_DOCS))
            .expect(403);
        f.post("/api/repos/site/sync?wait=true", Some(OPS))
            .expect(200);
        assert_eq!(rev_parse(&dir, "HEAD").unwrap(), tip);
        let readme = std::fs::read_to_string(dir.join("README")).unwrap();

        std::fs::write(dir.join("README"), "defaced\n").unwrap();
        std::fs::write(dir.join("stray.html"), "left by hand\n").unwrap();
        let v = f
            .post("/api/repos/site/sync?force=true&wait=true", Some(OPS))
            .expect(200);
        assert_eq!(
            (&v["ok"], &v["changed"], &v["fetched"], v["commit"].as_str()),
            (
                &json!(true),
                &json!(false),
                &json!(true),
                Some(tip.as_str())
            ),
            "{v:#}"
        );
        assert_eq!(std::fs::read_to_string(dir.join("README")).unwrap(), readme);
        assert_eq!(dir.join("stray.html").exists(), !clean, "clean: {clean}");
        let status = git(&dir, &["status", "--porcelain"]);
        assert_eq!(status, if clean { "" } else { "?? stray.html" });

        // Deleted by hand, then forced without waiting: 202 that says so.
        std::fs::remove_file(dir.join("README")).unwrap();
        let v = f
            .post("/api/repos/site/sync?force=true", Some(OPS))
            .expect(202);
        assert_eq!(v, json!({"queued": ["site"], "force": true}));
        assert!(
            support::wait_until(support::daemon::WAIT, || dir.join("README").exists()),
            "README never came back"
        );
        f.daemon.wait_idle("site");
        assert_eq!(rev_parse(&dir, "HEAD").unwrap(), tip);
        let logs = f.daemon.logs();
        assert!(
            logs.contains("api sync requested token=\"ops\" repo=site force=true"),
            "{logs}"
        );
    }
}

/// `hookmirror token new` prints a fresh token once and a block that, pasted into the config,
/// makes the daemon accept exactly that token for exactly its scope and repositories; the config
/// holds only the SHA-256. `check` shows the tokens and reports a bad one with file and line.
#[test]
fn token_new_prints_a_token_the_daemon_accepts_and_check_reports_bad_ones() {
    let home = scratch("token-new");
    let run = |args: &[&str]| {
        let out = hookmirror_command(home.path()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let new = || {
        let (code, out, err) = run(&[
            "token",
            "new",
            "--name",
            "ci-docs",
            "--scope",
            "sync",
            "--repo",
            "docs",
            "--repo",
            "docs-*",
            "--expires",
            "2999-12-31",
        ]);
        assert_eq!(code, Some(0), "{out}{err}");
        let token = out
            .lines()
            .find(|l| l.starts_with("hm_"))
            .unwrap_or_else(|| panic!("no token in {out}"))
            .to_string();
        let block = out[out.find("    - name:").unwrap()..].to_string();
        (token, block)
    };
    let (token, block) = new();
    let (other, _) = new();
    assert_ne!(token, other, "each run makes a new token");
    assert_eq!(
        token.len(),
        3 + 43,
        "hm_ and 32 random bytes in base64url: {token}"
    );
    assert!(
        !block.contains(&token) && block.contains(&sha(&token)),
        "{block}"
    );
    let (code, _, err) = run(&["token", "new", "--name", "x", "--scope", "write"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`write` is not a scope"), "{err}");

    let remote = Remote::local();
    let work = scratch("token-new-work");
    let repos: Vec<String> = NAMES
        .iter()
        .map(|n| {
            repo_yaml(
                n,
                &remote.url(),
                &work.path().join(n),
                &format!("    secret: s-{n}\n"),
            )
        })
        .collect();
    let d = Daemon::builder()
        .top(&format!("api:\n  tokens:\n{block}"))
        .repos(&repos)
        .start();
    for n in NAMES {
        d.wait_syncs(n, 1);
    }
    assert!(!std::fs::read_to_string(&d.target).unwrap().contains(&token));
    d.post_auth("/api/repos/docs/sync?wait=true", Some(&token))
        .expect(200);
    d.post_auth("/api/repos/docs-api/sync", Some(&token))
        .expect(202);
    refusal(&d.post_auth("/api/repos/site/sync", Some(&token)), 403);
    refusal(&d.post_auth("/api/repos/docs/sync", Some(&other)), 401);
    d.get("/api/repos").expect(200);
    d.assert_clean_logs(&[&token, &other]);

    // `check` lists the token (never its secret) and says what is wrong where.
    let (code, out, err) = run(&["check", "--config", d.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("token\tci-docs\tsync\tdocs, docs-*\texpires 2999-12-31 00:00 UTC"),
        "{out}"
    );
    let bad = std::fs::read_to_string(&d.target)
        .unwrap()
        .replace(&sha(&token), "12345")
        .replace("scopes: [\"sync\"]", "scopes: [\"sync\", \"root\"]")
        .replace("2999-12-31", "2999-13-31");
    std::fs::write(&d.target, &bad).unwrap();
    let (code, out, err) = run(&["check", "--config", d.config.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let file = d.config.display().to_string();
    for (needle, field, message) in [
        ("sha256:", "sha256", "is not a SHA-256"),
        ("scopes:", "scopes", "`root` is not a scope"),
        ("expires:", "expires", "`2999-13-31` is not a date"),
    ] {
        let want = format!(
            "{file}:{}: `api.tokens[ci-docs].{field}`: {message}",
            line_of(needle)
        );
        assert!(err.contains(&want), "no `{want}` in:\n{err}");
    }
}

/// A forced request that arrives while an ordinary sync of the repository is queued rides along
/// with it: one sync runs, and it is forced. (`workers: 1`, held by another repository's
/// `on_success` until the test lets it go; the hand edit keeps size and times, which only a
/// forced sync looks past.)
#[test]
fn a_forced_request_rides_along_with_a_queued_sync() {
    let (slow, site) = (Remote::local(), Remote::local());
    let work = scratch("api-ride");
    let release = work.path().join("release");
    let hold = format!(
        "    on_success:\n      command: [sh, -c, 'while [ ! -e {} ]; do sleep 0.05; done']\n",
        release.display()
    );
    let d = Daemon::builder()
        .top(&format!("workers: 1\napi: {{token: {OPS}}}\n"))
        .repo(repo_yaml(
            "slow",
            &slow.url(),
            &work.path().join("slow"),
            &format!("    secret: s1\n{hold}"),
        ))
        .repo(repo_yaml(
            "site",
            &site.url(),
            &work.path().join("site"),
            "    secret: s2\n",
        ))
        .token(OPS)
        .start();
    std::fs::write(&release, "").unwrap();
    d.wait_syncs("slow", 1);
    d.wait_syncs("site", 1);
    std::fs::remove_file(&release).unwrap();

    let dir = work.path().join("site");
    edit_keeping_stat(&dir, "README", "DEFACED\n");

    // slow changes, so its on_success holds the only worker; site's ordinary sync queues.
    slow.advance("hold the worker");
    d.post_auth("/api/repos/slow/sync", Some(OPS)).expect(202);
    d.wait_for("slow", "syncing", |s| s["state"] == "syncing");
    d.post_auth("/api/repos/site/sync", Some(OPS)).expect(202);
    d.wait_for("site", "queued", |s| s["state"] == "queued");
    let v = d
        .post_auth("/api/repos/site/sync?force=true", Some(OPS))
        .expect(202);
    assert_eq!(v["force"], true);
    assert_eq!(
        d.status("site")["state"],
        "queued",
        "still waiting for the worker"
    );

    std::fs::write(&release, "").unwrap();
    let s = d.wait_syncs("site", 2);
    assert_eq!(s["syncs"], 2, "one sync covered both requests: {s:#}");
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).unwrap(),
        "initial\n"
    );
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.status("site")["syncs"], 2, "and no second one");
}

/// After a forced sync the index is whole: `git status --porcelain` in the checkout shows
/// nothing but what was left there by hand (an untracked file with `clean: false`), whether
/// the forced sync repaired a file or had nothing to repair, and an ordinary sync afterwards
/// keeps it so. It used to show every file the forced sync did not rewrite as staged-deleted
/// and untracked (`D  f0.txt`, `?? f0.txt`): the index was emptied before the checkout, which
/// writes back only the entries of the files it rewrites.
#[test]
fn after_a_forced_sync_git_status_is_clean() {
    for clean in [false, true] {
        let remote = Remote::local();
        for i in 0..4 {
            remote
                .origin
                .commit(&format!("f{i}.txt"), &format!("file {i}\n"));
        }
        let work = scratch("force-status");
        let dir = work.path().join("site");
        let keys = format!("    branch: main\n    secret: hook-site\n    clean: {clean}\n");
        let d = Daemon::builder()
            .top(&format!("api:\n  token: {OPS}\n"))
            .repo(repo_yaml("site", &remote.url(), &dir, &keys))
            .token(OPS)
            .start();
        d.wait_syncs("site", 1);
        assert_eq!(git(&dir, &["status", "--porcelain"]), "");

        // Forced with nothing to repair.
        d.post_auth("/api/repos/site/sync?force=true&wait=true", Some(OPS))
            .expect(200);
        assert_eq!(git(&dir, &["status", "--porcelain"]), "", "clean: {clean}");

        // Forced after edits by hand: one file so that only its content tells, one untracked.
        edit_keeping_stat(&dir, "f1.txt", "FILE 1\n");
        std::fs::write(dir.join("stray.html"), "left by hand\n").unwrap();
        d.post_auth("/api/repos/site/sync?force=true&wait=true", Some(OPS))
            .expect(200);
        assert_eq!(
            std::fs::read_to_string(dir.join("f1.txt")).unwrap(),
            "file 1\n"
        );
        let stray = if clean { "" } else { "?? stray.html" };
        assert_eq!(
            git(&dir, &["status", "--porcelain"]),
            stray,
            "clean: {clean}"
        );

        // An ordinary sync of a new commit afterwards.
        let tip = remote.origin.commit("f2.txt", "file 2, changed\n");
        d.post_auth("/api/repos/site/sync?wait=true", Some(OPS))
            .expect(200);
        assert_eq!(rev_parse(&dir, "HEAD").unwrap(), tip);
        assert_eq!(
            git(&dir, &["status", "--porcelain"]),
            stray,
            "clean: {clean}"
        );
    }
}
