//! Faults for the fault suite, all real: remotes that accept and then hang, trickle or crawl
//! ([`BadRemote`]), a proxy that lets a transfer start and then slows it to a trickle
//! ([`Throttle`]), a small tmpfs to fill ([`Tmpfs`]), a large tree to interrupt
//! ([`write_tree_round`]), and the round count and seed of the kill loops ([`rounds`],
//! [`seed`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Origin, git};

/// How a [`BadRemote`] answers a connection.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Accepts and never sends a byte.
    Hang,
    /// Sends one byte every so often: far below any useful rate.
    Trickle(Duration),
    /// Sends `n` bytes every `every`: fast enough never to stall, but the pkt-line it sends
    /// never ends, so only the sync's deadline stops it.
    Crawl { n: usize, every: Duration },
}

/// A TCP server on 127.0.0.1 that hands each connection to a handler thread; stopped (every
/// handler told to end, and joined) on drop.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(handle: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (connections.clone(), stop.clone());
        let handle = Arc::new(handle);
        let thread = std::thread::spawn(move || {
            let mut open = Vec::new();
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        let (halt, handle) = (halt.clone(), handle.clone());
                        open.push(std::thread::spawn(move || handle(stream, &halt)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for t in open {
                let _ = t.join();
            }
        });
        Listener {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server on 127.0.0.1 that accepts connections and answers per its [`Behaviour`]. What
/// it sends is the start of a git pkt-line of the largest length (`fff0`), so a git client
/// keeps waiting for the rest. Stopped (every connection closed) on drop.
pub struct BadRemote {
    pub port: u16,
    listener: Listener,
}

impl BadRemote {
    pub fn start(behaviour: Behaviour) -> BadRemote {
        let listener = Listener::start(move |stream, halt| serve(stream, behaviour, halt));
        BadRemote {
            port: listener.port,
            listener,
        }
    }

    /// `git://127.0.0.1:PORT/x.git`.
    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/x.git", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.listener.connections.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, halt: &AtomicBool) {
    let header = b"fff0";
    let (n, every) = match behaviour {
        Behaviour::Hang => (0, Duration::from_millis(50)),
        Behaviour::Trickle(every) => (1, every),
        Behaviour::Crawl { n, every } => (n, every),
    };
    let mut sent = 0usize;
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    while !halt.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        waited += step;
        if n == 0 || waited < every {
            continue;
        }
        waited = Duration::ZERO;
        let chunk: Vec<u8> = (sent..sent + n)
            .map(|i| header.get(i).copied().unwrap_or(b'a'))
            .collect();
        if stream.write_all(&chunk).is_err() {
            return;
        }
        sent += n;
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`: requests pass unchanged; of each
/// connection's answer the first `fast` bytes pass at once and the rest `rate` bytes per 100 ms
/// — a transfer that starts well and then slows down.
pub struct Throttle {
    pub port: u16,
    _listener: Listener,
}

impl Throttle {
    pub fn start(upstream: u16, fast: usize, rate: usize) -> Throttle {
        let listener = Listener::start(move |client, halt| {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::scope(|s| {
                // Requests: unchanged.
                s.spawn(|| pipe(c2, s2, usize::MAX, 0, halt));
                pipe(server, client, fast, rate, halt);
            });
        });
        Throttle {
            port: listener.port,
            _listener: listener,
        }
    }
}

/// Copies `from` to `to`: `fast` bytes as they come, then `rate` bytes per 100 ms.
fn pipe(mut from: TcpStream, mut to: TcpStream, fast: usize, rate: usize, halt: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut passed = 0usize;
    let mut backlog: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = true;
    while !halt.load(Ordering::SeqCst) && (open || !backlog.is_empty()) {
        if open {
            match from.read(&mut buf) {
                Ok(0) => open = false,
                Ok(n) => backlog.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => open = false,
            }
        }
        let now = if passed < fast {
            backlog.len().min(fast - passed)
        } else {
            std::thread::sleep(Duration::from_millis(100));
            backlog.len().min(rate)
        };
        if now > 0 {
            if to.write_all(&backlog[..now]).is_err() {
                break;
            }
            backlog.drain(..now);
            passed += now;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// A tmpfs of a fixed size mounted on a folder of its own (unmounted on drop), to fill up.
pub struct Tmpfs {
    pub dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `16m`); `Err` says why it cannot (not root, no
    /// CAP_SYS_ADMIN in a container): the caller skips its test with that reason.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::Builder::new()
            .prefix("hookmirror-tmpfs-")
            .tempdir()
            .unwrap();
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }

    /// Bytes free (tmpfs keeps none back for root).
    pub fn free(&self) -> u64 {
        let out = super::run("stat", &["-f", "-c", "%a %S", self.dir.to_str().unwrap()]);
        let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }

    /// Fills the filesystem until `leave` bytes are free, with a file `filler` (replaced).
    pub fn fill_leaving(&self, leave: u64) {
        let filler = self.dir.join("filler");
        let _ = std::fs::remove_file(&filler);
        let free = self.free();
        let size = free.saturating_sub(leave);
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x5au8; 1 << 16];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if f.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }

    /// Frees what [`Tmpfs::fill_leaving`] took.
    pub fn unfill(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Makes a commit on `main` of the origin's bare repository whose `tree/` holds `files` files of
/// about `size` bytes, each naming `round` (so every file changes from round to round); returns
/// it. One `git fast-import`: quick, and a tree large enough that checking it out takes a while.
/// (The origin's work clone does not see it.)
pub fn write_tree_round(origin: &Origin, files: usize, size: usize, round: usize) -> String {
    let mut stream = format!(
        "commit refs/heads/main\ncommitter Hookmirror Test <test@hookmirror.invalid> 0 +0000\ndata <<EOT\nround {round}\nEOT\nfrom refs/heads/main^0\n"
    )
    .into_bytes();
    for i in 0..files {
        let line = format!("file {i} round {round}\n");
        let body = line.repeat(size / line.len() + 1);
        let path = format!("tree/d{:02}/f{i:05}.txt", i % 40);
        stream.extend_from_slice(
            format!("M 100644 inline {path}\ndata {}\n{body}\n", body.len()).as_bytes(),
        );
    }
    let mut child = super::git_command(&origin.bare)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import failed");
    git(&origin.bare, &["rev-parse", "refs/heads/main"])
}

/// Rounds of a kill loop: `HOOKMIRROR_FAULT_ROUNDS`, else `ci` (what CI runs).
pub fn rounds(ci: usize) -> usize {
    std::env::var("HOOKMIRROR_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// The random seed of a kill loop: `HOOKMIRROR_FAULT_SEED` to replay one, else a fresh one;
/// printed so a failing run can be replayed.
pub fn seed(what: &str) -> u64 {
    let seed = std::env::var("HOOKMIRROR_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{what}: HOOKMIRROR_FAULT_SEED={seed}");
    seed
}

/// Lock files, temp packs of killed fetches and packs without an index anywhere in `git_dir`:
/// what a sync must have cleaned up after a kill.
pub fn leftovers(git_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![git_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if (name.ends_with(".lock") && name != "hookmirror.lock")
                || name.starts_with("pack_git2_")
                || name.starts_with("tmp_object_git2_")
                || (name.ends_with(".pack") && !p.with_extension("idx").exists())
            {
                found.push(p.strip_prefix(git_dir).unwrap().display().to_string());
            }
        }
    }
    found
}
