//! The `hookmirror` binary end to end: `check` on every shipped config and on broken ones, how the
//! config is found (`--config`, `HOOKMIRROR_CONFIG`, the default paths), `sync` against real
//! remotes on loopback (a local bare repo, `git daemon`, smart HTTP with a token), exit codes,
//! `--help`/`--version`, and secrets that never reach stdout or stderr.
//!
//! Every run gets an empty environment (PATH, an empty HOME, LC_ALL=C) so the caller's
//! HOOKMIRROR_CONFIG, RUST_LOG, git config or proxies cannot change the result.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::daemon::hookmirror_command;
use support::{GitDaemon, GitHttp, Origin, rev_parse, wait_until};

/// A run of the binary longer than this is a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// What one run of the binary did.
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    fn show(&self) -> String {
        format!(
            "hookmirror {:?} exited {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.show());
        self
    }

    /// stdout split into lines, without empty ones.
    fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The one stdout line whose first word is `name`.
    fn line(&self, name: &str) -> &str {
        let found: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one line for `{name}`\n{}",
            self.show()
        );
        found[0]
    }

    /// Fails if `needle` appears on stdout or stderr.
    fn assert_absent(&self, needle: &str) {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "{needle:?} was printed\n{}",
            self.show()
        );
    }
}

/// The binary with a clean environment; `env` adds variables, `cwd` sets the working directory
/// (default: a fresh empty one).
fn hookmirror_in(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Run {
    let scratch = tempfile::Builder::new()
        .prefix("hookmirror-cli-")
        .tempdir()
        .unwrap();
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out_path = scratch.path().join("stdout");
    let err_path = scratch.path().join("stderr");
    let mut cmd = hookmirror_command(&home);
    cmd.args(args)
        .current_dir(cwd.unwrap_or(&home))
        // Files rather than pipes: debug/trace logs can be large, and nothing has to drain them.
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut status = None;
    let finished = wait_until(RUN_TIMEOUT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
    }
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let run = Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    assert!(
        finished,
        "hookmirror did not finish within {RUN_TIMEOUT:?}\n{}",
        run.show()
    );
    run
}

fn hookmirror(args: &[&str]) -> Run {
    hookmirror_in(args, &[], None)
}

fn hookmirror_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    hookmirror_in(args, env, None)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Writes `text` to `dir/name` and returns the path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The 12-character abbreviation `sync` prints.
fn short(id: &str) -> &str {
    &id[..12]
}

/// Whether `word` stands on its own in `line` (`ok`, `FAILED`).
fn has_word(line: &str, word: &str) -> bool {
    line.split_whitespace().any(|w| w == word)
}

/// The commit checked out in `dir`.
fn head(dir: &Path) -> String {
    rev_parse(dir, "HEAD").unwrap_or_else(|| panic!("{} has no HEAD", dir.display()))
}

/// Config preamble for sync tests: fast retries so a misclassified failure cannot stall a test.
const SYNC_PREAMBLE: &str = "\
workers: 2
log:
  level: info
defaults:
  insecure_no_secret: true
  retry: {attempts: 2, initial_delay: 10ms, max_delay: 20ms}
repos:
";

/// One repo entry for [`SYNC_PREAMBLE`]; `extra` holds more keys, indented 4.
fn repo_yaml(name: &str, url: &str, dir: &Path, extra: &str) -> String {
    format!(
        "  - name: {name}\n    url: '{url}'\n    directory: '{}'\n{extra}",
        dir.display()
    )
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_accepts_every_shipped_config_and_prints_each_repo() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !path.is_file() || !["yaml", "yml", "toml", "json"].contains(&ext) {
            continue;
        }
        let p = path.to_str().unwrap();
        let run = hookmirror(&["check", "--config", p]);
        run.expect_code(0);

        // What the library makes of the same file is what each line must show.
        let config = hookmirror::config::load_file(&path)
            .unwrap_or_else(|e| panic!("{p} does not load in-process: {e}"));
        assert!(!config.repos.is_empty(), "{p} has no repositories");
        for r in &config.repos {
            let line = run.line(&r.name);
            assert!(
                line.contains(&r.path),
                "{p}: `{}` line lacks its webhook path {}\n{}",
                r.name,
                r.path,
                run.show()
            );
            assert!(
                line.contains(&r.target.to_string()),
                "{p}: `{}` line lacks its ref ({})\n{}",
                r.name,
                r.target,
                run.show()
            );
        }
        checked.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            run,
        ));
    }
    assert!(
        checked.len() >= 4,
        "expected the yaml, toml, json and gwg examples in config/, found {:?}",
        checked.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );

    // Spot checks that do not go through the library: the documented example and gwg's sample.
    let by_name = |n: &str| {
        &checked
            .iter()
            .find(|(f, _)| f == n)
            .unwrap_or_else(|| panic!("config/{n} is missing"))
            .1
    };
    let example = by_name("example.yaml");
    let site = example.line("site");
    assert!(
        site.contains("/hooks/site") && site.contains("branch main"),
        "{site}"
    );
    let docs = example.line("docs");
    assert!(
        docs.contains("/hooks/docs") && docs.contains("tag stable"),
        "{docs}"
    );
    let gwg = by_name("gwg-compatible.yaml");
    let repo1 = gwg.line("repo-1");
    assert!(
        repo1.contains("/gwg/repo-1") && repo1.contains("branch master"),
        "gwg's label/labelType become a branch: {repo1}"
    );
}

#[test]
fn check_redacts_credentials_and_never_prints_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let url_token = "hm-URLTOKEN-4b7e1c";
    let auth_token = "hm-AUTHTOKEN-92d0aa";
    let hook_secret = "hm-HOOKSECRET-5f31e8";
    let api_token = "hm-APITOKEN-0c66d2";
    let config = write(
        tmp.path(),
        "hookmirror.yaml",
        &format!(
            "api:\n  token: {api_token}\nrepos:\n  \
             - name: site\n    url: https://deploy:{url_token}@git.example.com/ops/site.git\n    \
               directory: /srv/site\n    branch: main\n    secret: {hook_secret}\n  \
             - name: docs\n    url: https://gitlab.example.com/g/docs.git\n    \
               directory: /srv/docs\n    tag: v1\n    secrets: [{hook_secret}-old, {hook_secret}-new]\n    \
               auth:\n      username: nouser\n      token: {auth_token}\n"
        ),
    );
    for extra in [&[][..], &["--log-level", "trace"][..]] {
        let mut args = vec!["check", "--config", &config];
        args.extend_from_slice(extra);
        let run = hookmirror(&args);
        run.expect_code(0);
        let site = run.line("site");
        assert!(
            site.contains("https://deploy:***@git.example.com/ops/site.git"),
            "URL shown with the password masked: {site}"
        );
        assert!(site.contains("/hooks/site") && site.contains("branch main"));
        let docs = run.line("docs");
        assert!(docs.contains("/hooks/docs") && docs.contains("tag v1"));
        for secret in [url_token, auth_token, hook_secret, api_token] {
            run.assert_absent(secret);
        }
    }
}

/// Both branch and tag, a bad cron expression, a duplicate name, a missing secret: every one is
/// on stderr with `file:line` where the line is known; nothing on stdout.
#[test]
fn check_lists_every_problem_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "\
listen: 127.0.0.1:8080
repos:
  - name: site
    url: /srv/git/site.git
    directory: /srv/site
    secret: s1
    branch: main
    tag: v1
  - name: site
    url: /srv/git/other.git
    directory: /srv/other
    secret: s2
    schedule: '61 * * *'
  - name: docs
    url: /srv/git/docs.git
    directory: /srv/docs
";
    let config = write(tmp.path(), "bad.yaml", text);
    for cmd in ["check", "sync"] {
        let run = hookmirror(&[cmd, "--config", &config]);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "nothing on stdout\n{}", run.show());
        let has = |line: Option<usize>, needles: &[&str]| {
            let at = match line {
                Some(n) => format!("{config}:{n}:"),
                None => format!("{config}:"),
            };
            assert!(
                run.stderr
                    .lines()
                    .any(|l| l.contains(&at) && needles.iter().all(|n| l.contains(n))),
                "no stderr line with {at:?} and {needles:?}\n{}",
                run.show()
            );
        };
        has(Some(8), &["`site`", "branch", "tag", "not both"]);
        has(Some(13), &["schedule", "61 * * *", "not a cron expression"]);
        has(Some(9), &["`site`", "name", "also used"]);
        has(None, &["`docs`", "no webhook secret"]);
    }
}

/// The same mix plus an unknown key: the unknown key must not hide the other problems.
#[test]
fn check_reports_an_unknown_key_together_with_the_other_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "\
repos:
  - name: site
    url: /srv/git/site.git
    directory: /srv/site
    secret: s1
    branch: main
    tag: v1
  - name: site
    url: /srv/git/other.git
    directory: /srv/other
    secret: s2
    schedule: 'every day'
  - name: docs
    url: /srv/git/docs.git
    directory: /srv/docs
    brnach: main
";
    let config = write(tmp.path(), "bad.yaml", text);
    let run = hookmirror(&["check", "--config", &config]);
    run.expect_code(2);
    assert!(run.stdout.is_empty(), "nothing on stdout\n{}", run.show());
    let expected: [(&str, &[&str]); 5] = [
        (":16:", &["unknown key `brnach`"]),
        (":7:", &["branch", "tag", "not both"]),
        (":12:", &["every day", "not a cron expression"]),
        (":8:", &["`site`", "also used"]),
        (":", &["`docs`", "no webhook secret"]),
    ];
    let missing: Vec<_> = expected
        .iter()
        .filter(|(at, needles)| {
            let at = format!("{config}{at}");
            !run.stderr
                .lines()
                .any(|l| l.contains(&at) && needles.iter().all(|n| l.contains(n)))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "problems not reported: {missing:?}\n{}",
        run.show()
    );
}

#[test]
fn a_missing_or_unreadable_config_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.yaml");
    let missing = missing.to_str().unwrap();
    for cmd in ["check", "sync"] {
        let run = hookmirror(&[cmd, "--config", missing]);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{}", run.show());
        assert!(
            run.stderr.contains(missing) && run.stderr.contains("No such file"),
            "names the file and why\n{}",
            run.show()
        );
    }
    // Through the environment variable too.
    let run = hookmirror_env(&["check"], &[("HOOKMIRROR_CONFIG", missing)]);
    run.expect_code(2);
    assert!(run.stderr.contains(missing), "{}", run.show());

    // An extension that names no format.
    let ini = write(tmp.path(), "hookmirror.ini", "repos = []\n");
    let run = hookmirror(&["check", "--config", &ini]);
    run.expect_code(2);
    assert!(
        run.stderr.contains(&ini) && run.stderr.contains(".yaml"),
        "says which extensions work\n{}",
        run.show()
    );

    // A syntax error carries its line.
    let broken = write(
        tmp.path(),
        "broken.json",
        "{\n  \"workers\": 2,\n  \"repos\": [\n}\n",
    );
    let run = hookmirror(&["check", "--config", &broken]);
    run.expect_code(2);
    assert!(run.stdout.is_empty(), "{}", run.show());
    assert!(
        run.stderr.contains(&format!("{broken}:4:")),
        "{}",
        run.show()
    );
}

#[test]
fn hookmirror_config_env_var_is_honoured_and_the_flag_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let from_env = write(
        tmp.path(),
        "env.toml",
        "[[repos]]\nname = \"from-env\"\nurl = \"/srv/git/a.git\"\ndirectory = \"/srv/a\"\nsecret = \"s\"\n",
    );
    let from_flag = write(
        tmp.path(),
        "flag.json",
        r#"{"repos": [{"name": "from-flag", "url": "/srv/git/b.git", "directory": "/srv/b", "secret": "s", "branch": "live"}]}"#,
    );

    let run = hookmirror_env(&["check"], &[("HOOKMIRROR_CONFIG", &from_env)]);
    run.expect_code(0);
    assert!(
        run.line("from-env").contains("/hooks/from-env"),
        "{}",
        run.show()
    );
    assert!(
        run.stdout.contains(&from_env),
        "names the file it read\n{}",
        run.show()
    );

    let run = hookmirror_env(
        &["check", "--config", &from_flag],
        &[("HOOKMIRROR_CONFIG", &from_env)],
    );
    run.expect_code(0);
    assert!(
        run.line("from-flag").contains("branch live"),
        "{}",
        run.show()
    );
    assert!(!run.stdout.contains("from-env"), "{}", run.show());

    // An env var naming a missing file is an error even when a default config exists.
    write(
        tmp.path(),
        "hookmirror.toml",
        &std::fs::read_to_string(&from_env).unwrap(),
    );
    let run = hookmirror_in(
        &["check"],
        &[("HOOKMIRROR_CONFIG", "/nonexistent/hookmirror.yaml")],
        Some(tmp.path()),
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("/nonexistent/hookmirror.yaml"),
        "{}",
        run.show()
    );
}

#[test]
fn without_flag_or_env_the_default_paths_are_searched() {
    let system: Vec<String> = ["yaml", "yml", "toml", "json"]
        .iter()
        .map(|e| format!("/etc/hookmirror/config.{e}"))
        .filter(|p| Path::new(p).exists())
        .collect();
    if !system.is_empty() {
        eprintln!("skipped: {system:?} exists on this machine and would be found first");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = hookmirror_in(&["check"], &[], Some(tmp.path()));
    run.expect_code(2);
    assert!(
        run.stderr.contains("no config file found")
            && run.stderr.contains("/etc/hookmirror/config.yaml")
            && run.stderr.contains("hookmirror.yaml"),
        "lists where it looked\n{}",
        run.show()
    );

    write(
        tmp.path(),
        "hookmirror.yml",
        "repos:\n  - name: in-cwd\n    url: /srv/git/a.git\n    directory: /srv/a\n    secret: s\n",
    );
    let run = hookmirror_in(&["check"], &[], Some(tmp.path()));
    run.expect_code(0);
    run.line("in-cwd");
}

// ---------------------------------------------------------------------------------------------
// sync
// ---------------------------------------------------------------------------------------------

#[test]
fn sync_clones_updates_and_selects_repos_from_real_remotes() {
    let local = Origin::new();
    let remote = Origin::new();
    let daemon = GitDaemon::start(remote.root.path());
    let tmp = tempfile::tempdir().unwrap();
    let local_dir = tmp.path().join("checkouts/local");
    let remote_dir = tmp.path().join("checkouts/remote");
    // Logs configured for stdout must still leave stdout to the result lines.
    let text = format!(
        "{}{}{}",
        SYNC_PREAMBLE.replace("  level: info\n", "  level: debug\n  output: stdout\n"),
        repo_yaml("local", &local.url(), &local_dir, ""),
        repo_yaml(
            "remote",
            &daemon.url("origin.git"),
            &remote_dir,
            "    branch: main\n"
        ),
    );
    let config = write(tmp.path(), "hookmirror.yaml", &text);

    // First run: both cloned.
    let run = hookmirror(&["sync", "--config", &config]);
    run.expect_code(0);
    assert_eq!(run.lines().len(), 2, "one line per repo\n{}", run.show());
    assert!(
        run.lines()[0].starts_with("local") && run.lines()[1].starts_with("remote"),
        "config order\n{}",
        run.show()
    );
    for (name, origin, dir) in [
        ("local", &local, &local_dir),
        ("remote", &remote, &remote_dir),
    ] {
        let line = run.line(name);
        let tip = origin.head("main");
        assert!(
            has_word(line, "ok") && line.contains("cloned") && line.contains(short(&tip)),
            "{line}"
        );
        assert_eq!(head(dir), tip, "{name} checkout at origin's head");
    }
    assert_eq!(
        std::fs::read_to_string(remote_dir.join("README")).unwrap(),
        "initial\n"
    );

    // A new commit on one origin: that line shows old → new, the other is unchanged.
    let before = local.head("main");
    let after = local.commit("index.html", "v2\n");
    let run = hookmirror(&["sync", "--config", &config, "--log-level", "warn"]);
    run.expect_code(0);
    let line = run.line("local");
    assert!(
        has_word(line, "ok") && line.contains(short(&before)) && line.contains(short(&after)),
        "{line}"
    );
    let line = run.line("remote");
    assert!(has_word(line, "ok") && line.contains("unchanged"), "{line}");
    assert_eq!(head(&local_dir), after);
    assert_eq!(
        std::fs::read_to_string(local_dir.join("index.html")).unwrap(),
        "v2\n"
    );

    // `sync NAME`: only that repo, even though both origins moved.
    let local_next = local.commit("index.html", "v3\n");
    let remote_before = remote.head("main");
    let remote_next = remote.commit("page.html", "p\n");
    let run = hookmirror(&["sync", "--config", &config, "remote"]);
    run.expect_code(0);
    assert_eq!(run.lines().len(), 1, "only the named repo\n{}", run.show());
    let line = run.line("remote");
    assert!(
        has_word(line, "ok")
            && line.contains(short(&remote_before))
            && line.contains(short(&remote_next)),
        "{line}"
    );
    assert_eq!(head(&remote_dir), remote_next);
    assert_eq!(head(&local_dir), after, "the other repo was left alone");

    // Unknown names: exit 2, nothing synced, the message names it and the known repos.
    for args in [&["nosuch"][..], &["local", "nosuch"][..]] {
        let mut full = vec!["sync", "--config", &config];
        full.extend_from_slice(args);
        let run = hookmirror(&full);
        run.expect_code(2);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains("nosuch") && all.contains("local") && all.contains("remote"),
            "{}",
            run.show()
        );
        assert!(
            !run.stdout.lines().any(|l| has_word(l, "ok")),
            "{}",
            run.show()
        );
        assert_eq!(head(&local_dir), after, "nothing was synced");
    }

    // Finally everything catches up.
    let run = hookmirror(&["sync", "--config", &config]);
    run.expect_code(0);
    assert_eq!(head(&local_dir), local_next);
    assert!(
        run.line("remote").contains("unchanged at"),
        "{}",
        run.show()
    );
}

#[test]
fn sync_reports_failed_remotes_and_still_syncs_the_rest() {
    let origin = Origin::new();
    let daemon = GitDaemon::start(origin.root.path());
    let tmp = tempfile::tempdir().unwrap();
    let good_dir = tmp.path().join("good");
    let gone_dir = tmp.path().join("gone");
    let dead_dir = tmp.path().join("dead");
    // Nothing listens on `dead`'s port: a transient failure, retried once (logged), then FAILED.
    let dead_url = format!("git://127.0.0.1:{}/origin.git", support::free_port());
    // Logs configured for stdout go to stderr under `sync`: stdout carries only result lines.
    let text = format!(
        "{}{}{}{}",
        SYNC_PREAMBLE.replace("  level: info\n", "  level: info\n  output: stdout\n"),
        repo_yaml("gone", &daemon.url("no-such-repo.git"), &gone_dir, ""),
        repo_yaml("good", &daemon.url("origin.git"), &good_dir, ""),
        repo_yaml("dead", &dead_url, &dead_dir, ""),
    );
    let config = write(tmp.path(), "hookmirror.yaml", &text);

    let run = hookmirror(&["sync", "--config", &config]);
    run.expect_code(1);
    assert_eq!(
        run.lines().len(),
        3,
        "only result lines on stdout\n{}",
        run.show()
    );
    let gone = run.line("gone");
    assert!(
        has_word(gone, "FAILED") && gone.contains("not_found") && gone.contains("1 attempt"),
        "a missing repository fails at once: {gone}\n{}",
        run.show()
    );
    let dead = run.line("dead");
    assert!(
        has_word(dead, "FAILED") && dead.contains("2 attempts"),
        "an unreachable remote is retried: {dead}\n{}",
        run.show()
    );
    assert!(
        run.stderr.contains("retrying"),
        "the retry is logged on stderr\n{}",
        run.show()
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "no colour codes when stderr is not a terminal\n{}",
        run.show()
    );
    assert!(has_word(run.line("good"), "ok"), "{}", run.show());
    assert_eq!(head(&good_dir), origin.head("main"));
    assert!(rev_parse(&gone_dir, "HEAD").is_none());

    // Selecting only the healthy repo succeeds; selecting a broken one fails.
    let next = origin.commit("f", "x\n");
    let run = hookmirror(&["sync", "--config", &config, "good"]);
    run.expect_code(0);
    assert_eq!(head(&good_dir), next);
    let run = hookmirror(&["sync", "--config", &config, "gone"]);
    run.expect_code(1);
    assert_eq!(run.lines().len(), 1, "{}", run.show());
    assert!(has_word(run.line("gone"), "FAILED"), "{}", run.show());
}

#[test]
fn secrets_never_reach_stdout_or_stderr_even_at_trace_level() {
    use base64::Engine as _;
    let origin = Origin::new();
    let right = "hm-RIGHT-7c2f9e41b0";
    let wrong = "hm-WRONG-d83a15e6f2";
    let wrong_in_url = "hm-URLWRONG-5be0c7a3";
    let hook_secret = "hm-HOOK-a4f09b12";
    let http = GitHttp::start(origin.root.path(), "nouser", right);
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "api:\n  token: {hook_secret}-api\n{}{}{}{}{}",
        SYNC_PREAMBLE.replace(
            "  insecure_no_secret: true\n",
            &format!("  secret: {hook_secret}\n")
        ),
        repo_yaml(
            "wrong-token",
            &http.url("origin.git"),
            &tmp.path().join("a"),
            &format!("    auth: {{username: nouser, token: {wrong}}}\n"),
        ),
        repo_yaml(
            "wrong-url",
            &http.url_with_credentials("origin.git", "nouser", wrong_in_url),
            &tmp.path().join("b"),
            "",
        ),
        repo_yaml(
            "right-token",
            &http.url("origin.git"),
            &tmp.path().join("c"),
            &format!("    auth: {{username: nouser, token: {right}}}\n"),
        ),
        // Unreachable, credentials in the URL: retried, so a warning is logged for it.
        repo_yaml(
            "dead",
            &format!(
                "http://nouser:{wrong_in_url}@127.0.0.1:{}/origin.git",
                support::free_port()
            ),
            &tmp.path().join("d"),
            "",
        ),
    );
    let config = write(tmp.path(), "hookmirror.yaml", &text);
    let b64 = |user: &str, token: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    };
    let forbidden = [
        right.to_string(),
        wrong.to_string(),
        wrong_in_url.to_string(),
        hook_secret.to_string(),
        b64("nouser", right),
        b64("nouser", wrong),
        b64("nouser", wrong_in_url),
    ];

    let runs = [
        hookmirror(&["sync", "--config", &config]),
        hookmirror(&["sync", "--config", &config, "--log-level", "debug"]),
        hookmirror(&["sync", "--config", &config, "--log-level", "trace"]),
        hookmirror_env(&["sync", "--config", &config], &[("RUST_LOG", "trace")]),
        hookmirror(&["check", "--config", &config, "--log-level", "trace"]),
    ];
    for run in &runs[..4] {
        run.expect_code(1);
        for name in ["wrong-token", "wrong-url"] {
            let line = run.line(name);
            assert!(
                has_word(line, "FAILED") && line.contains("auth"),
                "{line}\n{}",
                run.show()
            );
        }
        assert!(has_word(run.line("right-token"), "ok"), "{}", run.show());
        assert!(has_word(run.line("dead"), "FAILED"), "{}", run.show());
        assert!(
            run.stderr.contains("retrying"),
            "logs were written (and checked)\n{}",
            run.show()
        );
        for f in &forbidden {
            run.assert_absent(f);
        }
    }
    runs[4].expect_code(0);
    for name in ["wrong-url", "dead"] {
        assert!(
            runs[4].line(name).contains("nouser:***@"),
            "{}",
            runs[4].show()
        );
    }
    for f in &forbidden {
        runs[4].assert_absent(f);
    }
    assert!(
        http.unauthorized_requests() > 0,
        "the wrong tokens reached the server"
    );
    assert_eq!(head(&tmp.path().join("c")), origin.head("main"));
    // The token from the URL is not stored in the checkout's config either.
    if let Ok(cfg) = std::fs::read_to_string(tmp.path().join("b/.git/config")) {
        assert!(!cfg.contains(wrong_in_url), "{cfg}");
    }
}

// ---------------------------------------------------------------------------------------------
// help, version, usage
// ---------------------------------------------------------------------------------------------

#[test]
fn help_version_and_usage_errors() {
    for args in [
        &["--help"][..],
        &["sync", "--help"][..],
        &["check", "--help"][..],
    ] {
        let run = hookmirror(args);
        run.expect_code(0);
        assert!(run.stdout.contains("--config"), "{}", run.show());
        assert!(run.stdout.contains("HOOKMIRROR_CONFIG"), "{}", run.show());
    }
    assert!(hookmirror(&["--help"]).stdout.contains("sync"));

    let version = format!("hookmirror {}", env!("CARGO_PKG_VERSION"));
    for flag in ["--version", "-V"] {
        let run = hookmirror(&[flag]);
        run.expect_code(0);
        assert_eq!(run.stdout.trim(), version, "{}", run.show());
    }
    // The version really is Cargo.toml's.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))),
        "{manifest}"
    );

    // Usage errors exit 2, like an invalid config.
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["check", "--no-such-flag"][..],
    ] {
        let run = hookmirror(args);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{}", run.show());
        assert!(run.stderr.contains("Usage"), "{}", run.show());
    }
}

/// The transport keys: a wrong `transport`, a proxy that is not `http://`, an idle timeout out
/// of range, each at its line; then, in a config that is otherwise valid, a CA file that is
/// missing and one that holds no certificate.
#[test]
fn check_reports_the_transport_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "\
ssh:
  idle_timeout: 2d
repos:
  - name: site
    url: https://git.example.org/site.git
    directory: /srv/site
    secret: s1
    transport: curl
    auth:
      proxy: socks5://proxy:1080
";
    let config = write(tmp.path(), "bad.yaml", text);
    let run = hookmirror(&["check", "--config", &config]);
    run.expect_code(2);
    for (line, needles) in [
        (2, &["ssh.idle_timeout", "between 1s and 24h"][..]),
        (8, &["transport", "`curl`", "hookmirror, libgit2"][..]),
        (10, &["auth.proxy", "only http:// proxies"][..]),
    ] {
        let mut with_line = vec![format!("{config}:{line}:")];
        with_line.extend(needles.iter().map(|n| n.to_string()));
        assert!(
            run.stderr
                .lines()
                .any(|l| with_line.iter().all(|n| l.contains(n.as_str()))),
            "no stderr line with {with_line:?}\n{}",
            run.show()
        );
    }

    write(tmp.path(), "empty.pem", "not a certificate\n");
    for (file, says) in [
        ("missing.pem", "cannot read"),
        ("empty.pem", "holds no PEM certificate"),
    ] {
        let text = format!(
            "repos:\n  - name: site\n    url: https://git.example.org/site.git\n    directory: /srv/site\n    secret: s1\n    transport: libgit2\n    auth:\n      proxy: http://proxy:3128\n      ca_file: {file}\n"
        );
        let config = write(tmp.path(), "ca.yaml", &text);
        let run = hookmirror(&["check", "--config", &config]);
        run.expect_code(2);
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains("auth.ca_file") && l.contains(file) && l.contains(says)),
            "{}",
            run.show()
        );
    }
}
