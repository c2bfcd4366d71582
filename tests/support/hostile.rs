//! Remotes that misbehave on purpose: the server is the attacker. A `git://` server
//! ([`HostileGit`]) and a smart-HTTP server ([`HostileHttp`]) written here on plain TCP, so they
//! can send what no real server would — an advertisement or a pack that never ends, a pack
//! header declaring 2^32-1 objects, an `ERR` or side-band 3 message with `\n`, CR and ESC in
//! it, a default branch whose name holds control characters, redirects to another port, with
//! `?@`, `#@` or userinfo, or to another scheme — and a TCP listener that accepts and never
//! speaks ([`Silent`]). (Invalid pkt-line lengths — `ffff`, `0003`, not hex — are the parsers'
//! unit tests and proptests in src/sync: the binary refused them before as now.) Where a test needs a real repository behind the misbehaviour, `git
//! upload-pack` serves it ([`Act::Real`]). The HTTP server records every request with the
//! `Authorization` header it carried, so a test can show a token never reached a port.
//!
//! [`run_measured`] runs the real binary and samples its memory (`VmHWM`, `VmRSS` in
//! `/proc/PID/status`) until it exits, killing it past a ceiling so that a regression cannot
//! take the machine down with it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::git_command;

/// The tip every made-up advertisement offers (no such commit exists anywhere).
pub const TIP: &str = "1111111111111111111111111111111111111111";

/// What a hostile server does with a fetch.
#[derive(Debug, Clone)]
pub enum Act {
    /// A ref advertisement that never ends (a new branch per line).
    EndlessAdvertisement,
    /// An `ERR` pkt-line with this text instead of an advertisement.
    Err(Vec<u8>),
    /// An advertisement of `main` at [`TIP`]; to the request, `NAK` and a pack in side-band
    /// channel 1 whose header declares `declared` objects, followed by that many distinct blobs
    /// (`None`: without end).
    Pack { declared: u32, objects: Option<u64> },
    /// An advertisement of `main` at [`TIP`]; to the request, `NAK` and this message on
    /// side-band channel 3.
    Band3(Vec<u8>),
    /// The repository at `repo`, served by `git upload-pack`; with `symref`, the first
    /// advertised line's `symref=HEAD:…` capability says that instead.
    Real {
        repo: PathBuf,
        symref: Option<Vec<u8>>,
    },
    /// HTTP only: `302 Found` to this `Location`.
    Redirect(String),
}

/// Appends `data` as one pkt-line.
pub fn pkt(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.extend_from_slice(data);
}

/// The first line of a made-up advertisement (the capabilities hookmirror's negotiation needs,
/// no `multi_ack`).
fn first_line() -> Vec<u8> {
    let mut out = Vec::new();
    pkt(
        &mut out,
        format!("{TIP} HEAD\0side-band-64k ofs-delta no-progress symref=HEAD:refs/heads/main agent=hostile\n")
            .as_bytes(),
    );
    out
}

/// A whole made-up advertisement: HEAD and `main` at [`TIP`].
fn advertisement() -> Vec<u8> {
    let mut out = first_line();
    pkt(&mut out, format!("{TIP} refs/heads/main\n").as_bytes());
    out.extend_from_slice(b"0000");
    out
}

/// Writes ref lines until the reader goes away or `stop` is set.
fn endless_advertisement(w: &mut impl Write, stop: &AtomicBool) -> io::Result<()> {
    w.write_all(&first_line())?;
    let mut batch = Vec::with_capacity(64 * 1024);
    for i in 0u64.. {
        pkt(
            &mut batch,
            format!("{TIP} refs/heads/branch-{i:012}\n").as_bytes(),
        );
        if batch.len() > 60 * 1024 {
            w.write_all(&batch)?;
            batch.clear();
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    Ok(())
}

/// One pack object: a blob holding `content`, zlib-compressed as one stored block (no
/// compression library needed; libgit2 inflates it like any other).
fn blob_object(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let size = content.len();
    let mut byte = (3u8 << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    while rest > 0 {
        out.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    out.push(byte);
    // zlib: header, one final stored block, Adler-32.
    out.extend_from_slice(&[0x78, 0x01, 0x01]);
    let len = content.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(content);
    let (mut a, mut b) = (1u32, 0u32);
    for &c in content {
        a = (a + c as u32) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// `NAK`, then a pack on side-band channel 1: the header declaring `declared` objects, then
/// `objects` distinct blobs (`None`: until the reader goes away or `stop` is set).
fn pack_answer(
    w: &mut impl Write,
    declared: u32,
    objects: Option<u64>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut out = Vec::new();
    pkt(&mut out, b"NAK\n");
    let mut header = b"\x01PACK\0\0\0\x02".to_vec();
    header.extend_from_slice(&declared.to_be_bytes());
    pkt(&mut out, &header);
    w.write_all(&out)?;
    let mut data = vec![1u8];
    let mut i = 0u64;
    while objects.is_none_or(|n| i < n) {
        data.extend_from_slice(&blob_object(format!("hostile object {i}\n").as_bytes()));
        i += 1;
        if data.len() > 60 * 1024 {
            let mut line = Vec::with_capacity(data.len() + 4);
            pkt(&mut line, &data);
            w.write_all(&line)?;
            data.truncate(1);
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    }
    let mut line = Vec::new();
    if data.len() > 1 {
        pkt(&mut line, &data);
    }
    line.extend_from_slice(b"0000");
    w.write_all(&line)
}

/// `NAK`, then `message` on side-band channel 3.
fn band3_answer(w: &mut impl Write, message: &[u8]) -> io::Result<()> {
    let mut out = Vec::new();
    pkt(&mut out, b"NAK\n");
    let mut line = vec![3u8];
    line.extend_from_slice(message);
    pkt(&mut out, &line);
    w.write_all(&out)
}

/// Reads pkt-lines until `done` (the end of a fetch request).
fn read_request(r: &mut impl Read) -> io::Result<()> {
    loop {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let n = usize::from_str_radix(std::str::from_utf8(&len).unwrap_or("x"), 16)
            .map_err(|_| io::Error::other("bad pkt-line"))?;
        if n <= 4 {
            continue;
        }
        let mut line = vec![0u8; n - 4];
        r.read_exact(&mut line)?;
        if line.starts_with(b"done") {
            return Ok(());
        }
    }
}

/// Reads `git upload-pack`'s advertisement up to its flush, with the first line's
/// `symref=HEAD:…` replaced by `symref` when given.
fn rewritten_advertisement(r: &mut impl Read, symref: Option<&[u8]>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let n = usize::from_str_radix(std::str::from_utf8(&len).unwrap_or("x"), 16)
            .map_err(|_| io::Error::other("bad pkt-line"))?;
        if n == 0 {
            out.extend_from_slice(b"0000");
            return Ok(out);
        }
        let mut line = vec![0u8; n - 4];
        r.read_exact(&mut line)?;
        if first && let Some(target) = symref {
            let text = String::from_utf8_lossy(&line).into_owned();
            let (refpart, caps) = text.split_once('\0').unwrap_or((&text, ""));
            let mut kept: Vec<u8> = format!("{refpart}\0").into_bytes();
            for cap in caps.trim_end().split(' ') {
                if !cap.starts_with("symref=") && !cap.is_empty() {
                    kept.extend_from_slice(cap.as_bytes());
                    kept.push(b' ');
                }
            }
            kept.extend_from_slice(b"symref=HEAD:");
            kept.extend_from_slice(target);
            kept.push(b'\n');
            line = kept;
        }
        first = false;
        pkt(&mut out, &line);
    }
}

/// Relays a `git://` fetch to `git upload-pack <repo>`, with its advertisement rewritten.
fn relay_upload_pack(client: &mut TcpStream, repo: &Path, symref: Option<&[u8]>) -> io::Result<()> {
    let mut child = git_command(repo)
        .args(["upload-pack", "--strict", "."])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("stdout"))?;
    let mut input = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("stdin"))?;
    client.write_all(&rewritten_advertisement(&mut out, symref)?)?;
    let mut from_client = client.try_clone()?;
    let upstream = std::thread::spawn(move || pass(&mut from_client, &mut input));
    let _ = pass(&mut out, client);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = upstream.join();
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// Copies `r` to `w` as bytes arrive. (`io::copy` between a socket and a pipe may splice, and
/// then hold what arrived until more comes.)
fn pass(r: &mut impl Read, w: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n])?;
        w.flush()?;
    }
}

/// An accept loop on 127.0.0.1 serving each connection on a thread of its own.
struct Listener {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(serve: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let serve = Arc::new(serve);
        let (stop2, connections2) = (stop.clone(), connections.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        connections2.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
                        let (serve, stop) = (serve.clone(), stop2.clone());
                        std::thread::spawn(move || serve(stream, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Listener {
            port,
            stop,
            connections,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `git://` server that does `act` with every fetch.
pub struct HostileGit {
    listener: Listener,
}

impl HostileGit {
    pub fn start(act: Act) -> HostileGit {
        let listener = Listener::start(move |mut s, stop| {
            // The request line: `git-upload-pack /path\0host=…\0`.
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let n =
                usize::from_str_radix(std::str::from_utf8(&len).unwrap_or("0"), 16).unwrap_or(0);
            let mut request = vec![0u8; n.saturating_sub(4)];
            if s.read_exact(&mut request).is_err() {
                return;
            }
            let _ = serve_git(&mut s, &act, stop);
        });
        HostileGit { listener }
    }

    /// `git://127.0.0.1:PORT/r.git`.
    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/r.git", self.listener.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.listener.connections.load(Ordering::SeqCst)
    }
}

fn serve_git(s: &mut TcpStream, act: &Act, stop: &AtomicBool) -> io::Result<()> {
    match act {
        Act::EndlessAdvertisement => endless_advertisement(s, stop),
        Act::Err(text) => {
            let mut out = Vec::new();
            let mut line = b"ERR ".to_vec();
            line.extend_from_slice(text);
            pkt(&mut out, &line);
            s.write_all(&out)
        }
        Act::Pack { declared, objects } => {
            s.write_all(&advertisement())?;
            read_request(s)?;
            pack_answer(s, *declared, *objects, stop)
        }
        Act::Band3(message) => {
            s.write_all(&advertisement())?;
            read_request(s)?;
            band3_answer(s, message)
        }
        Act::Real { repo, symref } => relay_upload_pack(s, repo, symref.as_deref()),
        Act::Redirect(_) => Ok(()),
    }
}

/// One HTTP request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub authorization: Option<String>,
}

/// A smart-HTTP server on plain TCP whose every request is answered by what `route` returns
/// for it; every request is recorded.
pub struct HostileHttp {
    listener: Listener,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl HostileHttp {
    pub fn start(route: impl Fn(&Request) -> Act + Send + Sync + 'static) -> HostileHttp {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let listener = Listener::start(move |s, stop| {
            let mut reader = match s.try_clone() {
                Ok(r) => BufReader::new(r),
                Err(_) => return,
            };
            let mut s = s;
            // Keep-alive: one request after another on the connection.
            while let Ok(Some((request, body))) = read_http(&mut reader) {
                seen.lock().unwrap().push(request.clone());
                let act = route(&request);
                match serve_http(&mut s, &request, &body, &act, stop) {
                    Ok(true) => {}
                    _ => return,
                }
            }
        });
        HostileHttp { listener, requests }
    }

    pub fn port(&self) -> u16 {
        self.listener.port
    }

    /// `http://127.0.0.1:PORT/q/r.git`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/q/r.git", self.listener.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests that carried an `Authorization` header.
    pub fn authorized(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.authorization.is_some())
            .collect()
    }
}

/// Reads one request (head and `Content-Length` body); `None` at the end of the connection.
fn read_http(r: &mut BufReader<TcpStream>) -> io::Result<Option<(Request, Vec<u8>)>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (mut authorization, mut length) = (None, 0usize);
    loop {
        let mut header = String::new();
        if r.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_string()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    Ok(Some((
        Request {
            method,
            target,
            authorization,
        },
        body,
    )))
}

/// A chunked body, for answers that may never end.
struct Chunked<'a>(&'a mut TcpStream);

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut out = format!("{:x}\r\n", buf.len()).into_bytes();
        out.extend_from_slice(buf);
        out.extend_from_slice(b"\r\n");
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Answers one request; whether the connection may serve another.
fn serve_http(
    s: &mut TcpStream,
    request: &Request,
    body: &[u8],
    act: &Act,
    stop: &AtomicBool,
) -> io::Result<bool> {
    let advertising = request.target.contains("/info/refs");
    let content_type = if advertising {
        "application/x-git-upload-pack-advertisement"
    } else {
        "application/x-git-upload-pack-result"
    };
    if let Act::Redirect(location) = act {
        write!(
            s,
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        )?;
        return Ok(true);
    }
    if let Act::Real { repo, symref } = act {
        let answer = real_http(repo, symref.as_deref(), advertising, body)?;
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        )?;
        s.write_all(&answer)?;
        return Ok(true);
    }
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    let mut preamble = Vec::new();
    if advertising {
        pkt(&mut preamble, b"# service=git-upload-pack\n");
        preamble.extend_from_slice(b"0000");
    }
    let mut w = Chunked(s);
    w.write_all(&preamble)?;
    let result = match (act, advertising) {
        (Act::EndlessAdvertisement, true) => endless_advertisement(&mut w, stop),
        (Act::Err(text), true) => {
            let mut line = b"ERR ".to_vec();
            line.extend_from_slice(text);
            let mut out = Vec::new();
            pkt(&mut out, &line);
            w.write_all(&out)
        }
        (_, true) => w.write_all(&advertisement()),
        (Act::Pack { declared, objects }, false) => pack_answer(&mut w, *declared, *objects, stop),
        (Act::Band3(message), false) => band3_answer(&mut w, message),
        (_, false) => Ok(()),
    };
    let _ = result.and_then(|()| s.write_all(b"0\r\n\r\n"));
    Ok(false)
}

/// `git upload-pack --stateless-rpc` for one smart-HTTP request.
fn real_http(
    repo: &Path,
    symref: Option<&[u8]>,
    advertising: bool,
    body: &[u8],
) -> io::Result<Vec<u8>> {
    let mut cmd = git_command(repo);
    cmd.args(["upload-pack", "--stateless-rpc", "--strict"]);
    if advertising {
        cmd.arg("--advertise-refs");
    }
    let mut child = cmd
        .arg(".")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut input = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("stdin"))?;
    let body = body.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&body));
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("stdout"))?;
    let mut answer = Vec::new();
    if advertising {
        pkt(&mut answer, b"# service=git-upload-pack\n");
        answer.extend_from_slice(b"0000");
        answer.extend(rewritten_advertisement(&mut out, symref)?);
    }
    out.read_to_end(&mut answer)?;
    let _ = writer.join();
    child.wait()?;
    Ok(answer)
}

/// A TCP listener that accepts every connection and never sends a byte (an SSH server that
/// shows no banner, a TLS server that never answers the hello).
pub struct Silent {
    listener: Listener,
}

impl Silent {
    pub fn start() -> Silent {
        Silent {
            listener: Listener::start(|mut s, stop| {
                // Hold the connection (reading what comes) until the client or the test goes.
                let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
            }),
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.port
    }

    pub fn connections(&self) -> usize {
        self.listener.connections.load(Ordering::SeqCst)
    }
}

/// What [`run_measured`] saw.
#[derive(Debug)]
pub struct Measured {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The highest resident set seen (`VmHWM`, else the largest `VmRSS` sample), in KiB.
    pub peak_kib: u64,
    pub elapsed: Duration,
    /// Killed for passing `kill_above_kib` or `limit`.
    pub killed: Option<String>,
}

impl Measured {
    pub fn show(&self) -> String {
        format!(
            "exit {:?} after {:?}, peak RSS {} MiB{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code,
            self.elapsed,
            self.peak_kib / 1024,
            self.killed
                .as_deref()
                .map(|k| format!(", KILLED: {k}"))
                .unwrap_or_default(),
            self.stdout,
            self.stderr
        )
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `cmd` to its end, sampling its memory every 10 ms; kills it when its resident set
/// passes `kill_above_kib` or it runs longer than `limit`.
pub fn run_measured(mut cmd: Command, kill_above_kib: u64, limit: Duration) -> Measured {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (mut peak, mut killed) = (0u64, None);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
        let rss = status_kib(pid, "VmRSS:").unwrap_or(0);
        peak = peak.max(hwm).max(rss);
        if killed.is_none() && rss > kill_above_kib {
            killed = Some(format!("RSS {} MiB", rss / 1024));
            let _ = child.kill();
        }
        if killed.is_none() && start.elapsed() > limit {
            killed = Some(format!("still running after {limit:?}"));
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Measured {
        code: status.code(),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        peak_kib: peak,
        elapsed: start.elapsed(),
        killed,
    }
}
