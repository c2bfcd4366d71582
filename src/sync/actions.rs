//! Post-sync actions on a changed checkout: touch the trigger file, run the configured command.
//!
//! The command runs from argv, never a shell, in a process group of its own, with a deadline
//! that holds whatever it starts: output is read until the deadline and no longer, the group
//! is killed there, the pipes closed and the command reaped, so neither a background child
//! holding the pipes (`sleep 30 & exit 0`) nor one that left the group (`setsid`) can keep a
//! sync waiting. Capture is bounded.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

/// Output kept per stream; the rest is read and dropped so a chatty command never blocks on a
/// full pipe and never fills memory.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// How often a running command is checked for its exit while its pipes are quiet (a SIGCHLD
/// handler is not a library's to install).
const EXIT_CHECK: Duration = Duration::from_millis(20);

/// What the post-sync command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// Exit code; `None` when killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub timed_out: bool,
    /// The command exited, but processes it started still held its output at the deadline:
    /// its process group was killed and the output closed there (the exit code stands).
    pub leftovers_killed: bool,
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

/// How the wait for a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// It exited and its output reached its end.
    Finished,
    /// It exited, but something it started still held its output at the deadline.
    Leftovers,
    /// It was still running at the deadline.
    TimedOut,
}

/// Runs `argv` with `env` added, in `dir`, in its own process group; returns by `timeout`
/// whatever the command and its children do.
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
    let deadline = start + timeout;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the deadline also ends whatever it started.
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
    let mut out = Capture::new(child.stdout.take());
    let mut err = Capture::new(child.stderr.take());
    let mut exited = false;
    let end = loop {
        // Seen without reaping: the leader stays a zombie until the end, so its pid, which
        // is the group's id, cannot be reused by another process before the group is killed.
        exited = exited || has_exited(pid)?;
        let open = out.is_open() || err.is_open();
        if exited && !open {
            break End::Finished;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break if exited {
                End::Leftovers
            } else {
                End::TimedOut
            };
        }
        let wait = if exited { left } else { left.min(EXIT_CHECK) };
        read_ready(&mut out, &mut err, wait)?;
    };
    if end != End::Finished {
        // Everything still in the group is ours and late. A child that left the group
        // (`setsid`) is out of reach of the signal; it loses its pipes below, and its next
        // write fails.
        let _ = killpg(pid, Signal::SIGKILL);
    }
    let truncated = out.truncated || err.truncated;
    let (stdout, stderr) = (out.finish(), err.finish());
    let status = child.wait()?;
    Ok(CommandResult {
        code: if end == End::TimedOut {
            None
        } else {
            status.code()
        },
        timed_out: end == End::TimedOut,
        leftovers_killed: end == End::Leftovers,
        stdout,
        stderr,
        truncated,
        duration: start.elapsed(),
    })
}

/// Whether the child `pid` has exited, leaving it unreaped.
fn has_exited(pid: Pid) -> std::io::Result<bool> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), flags) {
        Ok(WaitStatus::StillAlive) => Ok(false),
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits up to `wait` for output on the open pipes and reads what came.
fn read_ready<A, B>(a: &mut Capture<A>, b: &mut Capture<B>, wait: Duration) -> std::io::Result<()>
where
    A: Read + AsFd,
    B: Read + AsFd,
{
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    let (ready_a, ready_b) = {
        let mut fds = Vec::with_capacity(2);
        for pipe in [a.fd(), b.fd()].into_iter().flatten() {
            fds.push(PollFd::new(pipe, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let mut ready = fds.iter().map(|f| f.any().unwrap_or(true));
        let ra = a.is_open() && ready.next().unwrap_or(false);
        let rb = b.is_open() && ready.next().unwrap_or(false);
        (ra, rb)
    };
    if ready_a {
        a.read_once();
    }
    if ready_b {
        b.read_once();
    }
    Ok(())
}

/// One output pipe and what was kept of it.
struct Capture<P> {
    pipe: Option<P>,
    kept: Vec<u8>,
    truncated: bool,
}

impl<P: Read + AsFd> Capture<P> {
    fn new(pipe: Option<P>) -> Self {
        Capture {
            pipe,
            kept: Vec::new(),
            truncated: false,
        }
    }

    fn is_open(&self) -> bool {
        self.pipe.is_some()
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pipe.as_ref().map(AsFd::as_fd)
    }

    /// One read of a pipe `poll` found ready (so it does not block): keeps up to
    /// [`OUTPUT_LIMIT`] bytes, closes the pipe at its end.
    fn read_once(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut buf = [0u8; 8192];
        match pipe.read(&mut buf) {
            Ok(0) => self.pipe = None,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&buf[..n.min(room)]);
                self.truncated |= n > room;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => self.pipe = None,
        }
    }

    /// Closes the pipe (whoever still holds the other end gets EPIPE) and returns the text.
    fn finish(mut self) -> String {
        self.pipe = None;
        String::from_utf8_lossy(&self.kept).into_owned()
    }
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
    fn a_background_child_holding_the_pipes_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_command(
            &argv(&["sh", "-c", "sleep 30 & echo started; exit 0"]),
            &[],
            dir.path(),
            Duration::from_millis(500),
        )
        .unwrap();
        assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
        assert_eq!(
            (r.code, r.timed_out, r.leftovers_killed),
            (Some(0), false, true)
        );
        assert_eq!(r.stdout, "started\n");
    }

    #[test]
    fn a_child_that_left_the_group_does_not_hold_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_command(
            &argv(&["sh", "-c", "setsid sleep 25 & sleep 100"]),
            &[],
            dir.path(),
            Duration::from_millis(500),
        )
        .unwrap();
        assert!(r.timed_out);
        assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
    }

    #[test]
    fn a_background_child_that_closed_its_output_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let r = run_command(
            &argv(&[
                "sh",
                "-c",
                "sleep 30 >/dev/null 2>&1 & echo $! > pid; echo done",
            ]),
            &[],
            dir.path(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(r.success() && !r.leftovers_killed, "{r:?}");
        assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok());
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
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
