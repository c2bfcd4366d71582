//! Post-sync actions on a changed checkout: touch the trigger file, run the configured command.
//!
//! The command runs from argv, never a shell, with a timeout and a bounded capture of its output.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Output kept per stream; the rest is read and dropped so a chatty command never blocks on a
/// full pipe and never fills memory.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// What the post-sync command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// Exit code; `None` when killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// True when output beyond [`OUTPUT_LIMIT`] was dropped.
    pub truncated: bool,
    pub duration: Duration,
}

impl CommandResult {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// Creates `path` if missing and sets its modification time to now (`touch`), so inotify/incron
/// watchers fire.
pub fn touch(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.set_modified(SystemTime::now())
}

/// The environment `on_success` and `pre_publish` commands get: which repo, ref and commits, and
/// the tree (`dir`).
pub fn env(
    repo: &crate::config::Repo,
    remote_ref: &str,
    old: &str,
    new: &str,
    dir: &Path,
) -> [(&'static str, String); 5] {
    [
        ("HOOKMIRROR_REPO", repo.name.clone()),
        ("HOOKMIRROR_REF", remote_ref.to_string()),
        ("HOOKMIRROR_OLD", old.to_string()),
        ("HOOKMIRROR_NEW", new.to_string()),
        ("HOOKMIRROR_DIR", dir.display().to_string()),
    ]
}

/// Runs `argv` with `env` added, in `dir`, killing its whole process group after `timeout`.
pub fn run_command(
    argv: &[String],
    env: &[(&str, String)],
    dir: &Path,
    timeout: Duration,
) -> std::io::Result<CommandResult> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let start = Instant::now();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout also ends whatever it started.
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().map(capture);
    let err = child.stderr.take().map(capture);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, t1) = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stderr, t2) = err.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(CommandResult {
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        stdout,
        stderr,
        truncated: t1 || t2,
        duration: start.elapsed(),
    })
}

/// Reads a pipe to its end on a thread, keeping the first [`OUTPUT_LIMIT`] bytes.
fn capture(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<(String, bool)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut truncated = false;
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
            }
        }
        (String::from_utf8_lossy(&kept).into_owned(), truncated)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runs_without_a_shell_and_passes_env() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_command(
            &argv(&[
                "sh",
                "-c",
                "echo \"$HOOKMIRROR_REPO\"; echo err >&2; exit 3",
            ]),
            &[("HOOKMIRROR_REPO", "site".into())],
            dir.path(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(r.code, Some(3));
        assert_eq!(r.stdout, "site\n");
        assert_eq!(r.stderr, "err\n");
        // A string with shell syntax is one argv element: no shell interprets it.
        let r = run_command(
            &argv(&["echo", "$(id); rm -rf /"]),
            &[],
            dir.path(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(r.stdout, "$(id); rm -rf /\n");
    }

    #[test]
    fn a_hanging_command_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_command(
            &argv(&["sh", "-c", "sleep 30 & sleep 30"]),
            &[],
            dir.path(),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(r.timed_out);
        assert!(!r.success());
        assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
    }

    #[test]
    fn flooding_output_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_command(
            &argv(&["sh", "-c", "yes | head -c 10000000"]),
            &[],
            dir.path(),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(r.success());
        assert!(r.truncated);
        assert_eq!(r.stdout.len(), OUTPUT_LIMIT);
    }

    #[test]
    fn touch_creates_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("trigger");
        touch(&p).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        touch(&p).unwrap();
        let m = std::fs::metadata(&p).unwrap().modified().unwrap();
        assert!(m > old + Duration::from_secs(3000));
    }
}
