//! What `check` and `sync` do: load the config, act, print a line per repository, return an
//! exit code. Kept apart from `main` so tests can call them. `token new` is in `token`.

mod token;

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{Config, LoadError, Repo};
use crate::sync::{self, Outcome, SyncOptions};

pub use token::token;

/// Exit code for a config that does not load, or bad usage.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code when any sync failed.
pub const EXIT_SYNC_FAILED: i32 = 1;

/// Prints every problem in a config that did not load.
pub fn print_load_error(e: &LoadError, out: &mut dyn Write) {
    match e {
        LoadError::Invalid(problems) => {
            let _ = writeln!(
                out,
                "config is invalid ({} problem{}):",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in problems {
                let _ = writeln!(out, "  {p}");
            }
        }
        other => {
            let _ = writeln!(out, "{other}");
        }
    }
}

/// One line per repository: name, redacted URL, ref, directory, webhook path, schedule.
pub fn check(config: &Config, out: &mut dyn Write) -> i32 {
    let source = config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{source}: ok, {} repositor{}, listen {}, {} workers",
        config.repos.len(),
        if config.repos.len() == 1 { "y" } else { "ies" },
        config.listen,
        config.workers
    );
    for r in &config.repos {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.name,
            r.url.redacted(),
            r.target,
            r.directory.display(),
            r.path,
            r.schedule
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no schedule".into()),
        );
    }
    if let Some(f) = &config.fleet {
        let _ = writeln!(
            out,
            "fleet: node {}, stream {} ({} replica{}), NATS {}",
            f.node.as_deref().unwrap_or("(the host name)"),
            f.stream,
            f.replicas,
            if f.replicas == 1 { "" } else { "s" },
            f.servers.join(", ")
        );
    }
    let api = &config.api;
    if !api.tokens.is_empty() || api.protect_reads {
        let reads = if api.protect_reads {
            "reads need a token with `read`"
        } else {
            "reads open"
        };
        let _ = writeln!(out, "api: {reads}; {} token(s)", api.tokens.len());
    }
    for t in &api.tokens {
        let repos = match &t.repos {
            None => "every repository".to_string(),
            Some(ps) => ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
        };
        let mut expires = t
            .expires
            .map(|e| format!("expires {}", e.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_else(|| "no expiry".into());
        if t.disabled.is_some() {
            expires.push_str("\tDISABLED (its token_file cannot be read)");
        }
        let _ = writeln!(
            out,
            "token\t{}\t{}\t{repos}\t{expires}",
            t.name,
            t.scopes.names().join(",")
        );
    }
    for w in config.notices(chrono::Utc::now()) {
        let _ = writeln!(out, "warning: {w}");
    }
    0
}

/// Syncs the named repositories (all when `names` is empty), `config.workers` at a time; prints
/// one line per repository in config order to `out`; usage errors go to `err`.
pub fn sync(config: &Config, names: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let unknown: Vec<&String> = names.iter().filter(|n| config.repo(n).is_none()).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = config.repos.iter().map(|r| r.name.as_str()).collect();
        let _ = writeln!(
            err,
            "unknown repositor{}: {}; known: {}",
            if unknown.len() == 1 { "y" } else { "ies" },
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        );
        return EXIT_CONFIG;
    }
    let repos: Vec<&Repo> = config
        .repos
        .iter()
        .filter(|r| names.is_empty() || names.contains(&r.name))
        .collect();
    let results: Vec<Mutex<Option<Outcome>>> = repos.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..config.workers.min(repos.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(repo) = repos.get(i) else { break };
                    let outcome = sync::sync_with_retry(repo, &SyncOptions::default(), |d| {
                        std::thread::sleep(d);
                        true
                    });
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(outcome);
                    }
                }
            });
        }
    });
    let mut failed = 0;
    for (repo, slot) in repos.iter().zip(results) {
        let Some(outcome) = slot.into_inner().ok().flatten() else {
            continue;
        };
        if !outcome.ok() {
            failed += 1;
        }
        let _ = writeln!(out, "{}", outcome_line(repo, &outcome));
    }
    if failed > 0 { EXIT_SYNC_FAILED } else { 0 }
}

/// `name  ok  old → new  (changed, 120 ms)` or `name  FAILED  kind: message`.
pub fn outcome_line(repo: &Repo, o: &Outcome) -> String {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let ms = o.duration.as_millis();
    match &o.result {
        Ok(s) => {
            let what = if s.cloned {
                format!("cloned {}", short(&s.new))
            } else if s.changed() {
                format!(
                    "{} → {}",
                    s.old.as_deref().map(short).unwrap_or_else(|| "none".into()),
                    short(&s.new)
                )
            } else {
                format!("unchanged at {}", short(&s.new))
            };
            let mut line = format!(
                "{}\t{}\t{what}\t{}\t{ms} ms",
                repo.name,
                if o.ok() { "ok" } else { "FAILED" },
                s.remote_ref
            );
            for n in o
                .recovered
                .iter()
                .map(|r| r.to_string())
                .chain(s.notes.clone())
            {
                line.push_str(&format!("\t[{n}]"));
            }
            if let Some(e) = &o.touch_error {
                line.push_str(&format!("\ttouch: {e}"));
            }
            match &o.command {
                Some(Ok(c)) if !c.success() => line.push_str(&format!(
                    "\ton_success command failed (exit {:?}{})",
                    c.code,
                    if c.timed_out { ", timed out" } else { "" }
                )),
                Some(Err(e)) => line.push_str(&format!("\t{e}")),
                _ => {}
            }
            line
        }
        Err(e) => {
            let mut line = format!(
                "{}\tFAILED\t{}: {}\t{} attempt{}\t{ms} ms",
                repo.name,
                e.kind.as_str(),
                e.message,
                o.attempts,
                if o.attempts == 1 { "" } else { "s" }
            );
            for r in &o.recovered {
                line.push_str(&format!("\t[{r}]"));
            }
            line
        }
    }
}
