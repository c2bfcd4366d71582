//! hookmirror's SSH transport for libgit2: `git-upload-pack` on a channel of a pooled session
//! ([`ssh_pool`]), on the libssh2 that git2 already links (through the `ssh2` crate).
//!
//! Why: libgit2's own SSH transport makes a new connection, key exchange and public-key
//! authentication for every fetch (~100–200 ms against OpenSSH on loopback, more across the
//! world); a daemon that fetches the same hosts all day can keep them. Why `ssh2` and not
//! `russh`: it is the libssh2 libgit2 already uses, so key formats, passphrases and algorithms
//! behave exactly as they did (all the existing SSH tests hold unchanged), and no second crypto
//! stack is built; its blocking API matches libgit2's blocking streams.
//!
//! What it keeps of libgit2's: strict host keys — the key the server shows is checked against
//! `auth.known_hosts` (or `~/.ssh/known_hosts`) before authenticating, unknown, changed and
//! revoked keys refused with their fingerprint (`credentials::verify_host_key`); the host-key
//! algorithms listed for the host in known_hosts are preferred, so a server with several keys
//! shows the one on file. The key is `auth.ssh_key` (or `~/.ssh/id_*`), decrypted with
//! `auth.ssh_key_passphrase`; the login is the URL's user, `auth.username`, or `git`.
//! A pooled session that died while idle is replaced once, transparently.
//!
//! Limits: the TCP connect, the server's banner and key exchange, the login and opening the
//! channel may each take `stall_timeout`, never past the sync's deadline
//! ([`transport::Limits::connect_timeout`]); then each read under the fetch's deadline and stall
//! rule ([`Watch`]) and counted against what the remote may send ([`Meter`]). Fetch only.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use git2::{Error, ErrorClass, ErrorCode, Remote};
use ssh2::{Channel, HostKeyType, MethodType, Session};

use super::budget::Meter;
use super::credentials::{known_hosts_path, ssh_key_path, ssh_user, verify_host_key};
use super::git_proto::{io_error, net_error};
use super::known_hosts::{self, Verdict};
use super::ssh_pool::{self, Conn, Key};
use super::transport::{self, FetchContext, Limits, Watch};

/// The private URL scheme libgit2 hands to this transport (see `transport::fetch_url`).
pub const SCHEME: &str = "hm-ssh";

/// How long closing a channel after a fetch may take before the session is dropped instead of
/// pooled: the server has sent everything by then, so this is only its exit status.
const CLOSE_TIMEOUT_MS: u32 = 2_000;

/// Host-key algorithms libssh2 may negotiate, strongest first; those listed for the host in
/// known_hosts are moved to the front.
const HOST_KEY_METHODS: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// The transport factory to register for [`SCHEME`].
pub fn factory(remote: &Remote<'_>) -> Result<Transport, Error> {
    // `rpc: false`: one channel carries the advertisement, the negotiation and the pack.
    Transport::smart(remote, false, Ssh)
}

pub(super) struct Ssh;

impl SmartSubtransport for Ssh {
    fn action(
        &self,
        _url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, Error> {
        match action {
            Service::UploadPackLs => {
                let ctx = transport::current()
                    .ok_or_else(|| net_error("ssh: no fetch context (hookmirror's SSH transport serves the engine's fetches only)"))?;
                Ok(Box::new(open(&ctx)?))
            }
            Service::UploadPack => Err(net_error("ssh: no channel to continue")),
            Service::ReceivePackLs | Service::ReceivePack => {
                Err(net_error("ssh: hookmirror only fetches"))
            }
        }
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// What a fetch of `ctx.repo` connects to and logs in with.
struct Target {
    host: String,
    port: u16,
    user: String,
    key_file: PathBuf,
    passphrase: Option<String>,
    known_hosts: PathBuf,
    command: String,
}

fn target(ctx: &FetchContext) -> Result<Target, Error> {
    let repo = &ctx.repo;
    let parsed = repo.url.parsed();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let user = ssh_user(repo, parsed.user.as_deref());
    let key_file = ssh_key_path(&repo.auth, home.as_deref()).ok_or_else(|| {
        auth_error("the remote wants an SSH key and none is configured (auth.ssh_key)")
    })?;
    Ok(Target {
        host: parsed.host.clone(),
        port: parsed.port.unwrap_or(22),
        user,
        key_file,
        passphrase: repo
            .auth
            .ssh_key_passphrase
            .as_ref()
            .map(|c| c.value.expose().to_string()),
        known_hosts: known_hosts_path(repo, home.as_deref()),
        command: upload_pack_command(&parsed.path),
    })
}

/// `git-upload-pack '<path>'` as git runs it: `/~user/x` becomes `~user/x`, the path single-quoted
/// for the remote shell (`'` and `!` escaped as git's `sq_quote` does).
pub fn upload_pack_command(path: &str) -> String {
    let path = if path.starts_with("/~") {
        &path[1..]
    } else {
        path
    };
    let mut quoted = String::from("'");
    for c in path.chars() {
        match c {
            '\'' => quoted.push_str("'\\''"),
            '!' => quoted.push_str("'\\!'"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    format!("git-upload-pack {quoted}")
}

fn auth_error(why: &str) -> Error {
    Error::new(
        ErrorCode::Auth,
        ErrorClass::Ssh,
        format!("authentication failed: {why}"),
    )
}

/// A channel running upload-pack, on a pooled session when there is one (replaced once when it
/// turns out dead), else on a new session.
fn open(ctx: &FetchContext) -> Result<SshStream, Error> {
    let t = target(ctx)?;
    let limits = ctx.limits;
    let key = Key::new(
        &t.host,
        t.port,
        &t.user,
        &t.key_file,
        t.passphrase.as_deref(),
        &t.known_hosts,
    );
    if let Some(conn) = ssh_pool::take(&key) {
        match start(&conn.session, &t.command, &limits) {
            Ok(channel) => return Ok(SshStream::new(conn, channel, key, ctx)),
            Err((e, _)) => {
                tracing::debug!(host = %t.host, error = %e, "pooled SSH session is dead; reconnecting");
            }
        }
    }
    let conn = connect(&t, &limits)?;
    let channel = start(&conn.session, &t.command, &limits).map_err(|(e, waited)| {
        if e.code() == ssh2::ErrorCode::Session(TIMED_OUT) {
            let e = limits.connect_timed_out("opening the SSH channel", waited);
            return io_error(&e, &format!("ssh: {e}"));
        }
        Error::new(
            ErrorCode::GenericError,
            ErrorClass::Ssh,
            format!("ssh: cannot start git-upload-pack: {e}"),
        )
    })?;
    Ok(SshStream::new(conn, channel, key, ctx))
}

/// libssh2's `LIBSSH2_ERROR_TIMEOUT`.
const TIMED_OUT: i32 = -9;

/// Sets the session's timeout for the next step of connecting: a stall, never past the
/// deadline (an elapsed deadline leaves a millisecond, and the step fails as timed out).
/// Returns it, for [`Limits::connect_timed_out`].
fn step_timeout(session: &Session, limits: &Limits) -> Duration {
    let left = limits.connect_timeout().unwrap_or(Duration::from_millis(1));
    session.set_timeout(left.as_millis().clamp(1, u32::MAX as u128) as u32);
    left
}

/// upload-pack on a new channel; a failure comes with the timeout the step had.
fn start(
    session: &Session,
    command: &str,
    limits: &Limits,
) -> Result<Channel, (ssh2::Error, Duration)> {
    let waited = step_timeout(session, limits);
    let mut channel = session.channel_session().map_err(|e| (e, waited))?;
    channel.exec(command).map_err(|e| (e, waited))?;
    Ok(channel)
}

/// A new session: TCP connect, key exchange, host-key check, public-key login, each within
/// [`step_timeout`].
fn connect(t: &Target, limits: &Limits) -> Result<Conn, Error> {
    let shown = format!("{}:{}", t.host, t.port);
    let addrs = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| net_error(&format!("ssh: cannot resolve {}: {e}", t.host)))?;
    let mut last = None;
    let mut tcp = None;
    let mut waited = Duration::ZERO;
    for addr in addrs {
        let connect_timeout = limits
            .connect_timeout()
            .map_err(|e| io_error(&e, &format!("ssh: {e}")))?;
        waited = connect_timeout;
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = match (tcp, last) {
        (Some(s), _) => s,
        (None, Some(e)) if e.kind() == io::ErrorKind::TimedOut => {
            let e = limits.connect_timed_out(&format!("connecting to {shown}"), waited);
            return Err(io_error(&e, &format!("ssh: {e}")));
        }
        (None, Some(e)) => {
            return Err(io_error(
                &e,
                &format!("ssh: failed to connect to {shown}: {e}"),
            ));
        }
        (None, None) => return Err(net_error(&format!("ssh: {} has no address", t.host))),
    };
    let _ = tcp.set_nodelay(true);
    let socket = tcp
        .try_clone()
        .map_err(|e| io_error(&e, &format!("ssh: {shown}: {e}")))?;
    // A step that timed out is recorded with the limit that ended it (`stall_timeout` or
    // `sync_timeout`), so the sync says which; `step` is the timeout the step had.
    let step = std::cell::Cell::new(Duration::ZERO);
    let ssh_error = |what: &str, e: ssh2::Error| {
        if e.code() == ssh2::ErrorCode::Session(TIMED_OUT) {
            let what = format!("the SSH {what} with {shown}");
            let e = limits.connect_timed_out(&what, step.get());
            return io_error(&e, &format!("ssh: {e}"));
        }
        Error::new(
            ErrorCode::GenericError,
            ErrorClass::Ssh,
            format!("ssh: {what} failed with {shown}: {}", e.message()),
        )
    };
    let mut session = Session::new().map_err(|e| ssh_error("session set-up", e))?;
    session.set_tcp_stream(tcp);
    step.set(step_timeout(&session, limits));
    let known = std::fs::read_to_string(&t.known_hosts).unwrap_or_default();
    let _ = session.method_pref(
        MethodType::HostKey,
        &host_key_preference(&known, &t.host, t.port),
    );
    session
        .handshake()
        .map_err(|e| ssh_error("banner and key exchange", e))?;
    let (key, kind) = session
        .host_key()
        .ok_or_else(|| net_error(&format!("ssh: {shown} sent no host key")))?;
    verify_host_key(&t.known_hosts, &t.host, t.port, key_type_name(kind), key)
        .map_err(|msg| Error::new(ErrorCode::Certificate, ErrorClass::Ssh, msg))?;
    step.set(step_timeout(&session, limits));
    if let Err(e) =
        session.userauth_pubkey_file(&t.user, None, &t.key_file, t.passphrase.as_deref())
    {
        // libssh2 says "Unable to extract public key from private key" (LIBSSH2_ERROR_FILE) when
        // the key does not decrypt or parse.
        let unreadable = e.code() == ssh2::ErrorCode::Session(-16)
            || e.message().contains("Unable to extract public key");
        return Err(if unreadable {
            Error::new(
                ErrorCode::Auth,
                ErrorClass::Ssh,
                "cannot use the SSH key: wrong passphrase, or a key format libssh2 does not read",
            )
        } else if e.code() == ssh2::ErrorCode::Session(TIMED_OUT) {
            ssh_error("login", e)
        } else {
            auth_error(&format!("the SSH key was refused for user `{}`", t.user))
        });
    }
    ssh_pool::opened();
    Ok(Conn { session, socket })
}

/// Puts the socket in quick-ACK mode (Linux clears it by itself, so before every read). sshd
/// leaves Nagle's algorithm on for sessions without a terminal: upload-pack's small answers wait
/// for the ACK of the previous segment, and a client that delays its ACKs (~40 ms) stalls every
/// negotiation round, as over `git daemon` (see `git_proto`). Best effort.
fn quickack(socket: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
}

/// libssh2's key type in OpenSSH's words.
fn key_type_name(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// The host-key algorithms to offer: those known_hosts lists for the host first (so the server
/// shows a key we can check), then the rest.
pub fn host_key_preference(known_hosts_text: &str, host: &str, port: u16) -> String {
    let listed = match known_hosts::check(known_hosts_text, host, port, "none", &[]) {
        Verdict::Mismatch { expected_types } => expected_types,
        _ => Vec::new(),
    };
    let wanted = |m: &str| {
        listed
            .iter()
            .any(|t| t == m || (t == "ssh-rsa" && m.starts_with("rsa-sha2-")))
    };
    let mut order: Vec<&str> = HOST_KEY_METHODS
        .iter()
        .copied()
        .filter(|m| wanted(m))
        .collect();
    order.extend(HOST_KEY_METHODS.iter().copied().filter(|m| !wanted(m)));
    order.join(",")
}

/// upload-pack's channel. Dropped after a clean end (the remote's exit status 0), its session
/// goes back to the pool; otherwise it is closed.
struct SshStream {
    conn: Conn,
    channel: Option<Channel>,
    key: Key,
    watch: Watch,
    meter: Meter,
    /// The remote closed its output.
    eof: bool,
    /// A read failed: the session is not reused.
    failed: bool,
}

impl SshStream {
    fn new(conn: Conn, channel: Channel, key: Key, ctx: &FetchContext) -> SshStream {
        SshStream {
            conn,
            channel: Some(channel),
            key,
            watch: Watch::new(ctx.limits),
            meter: Meter::advertisement(ctx.limits.sizes, false),
            eof: false,
            failed: false,
        }
    }
}

impl Read for SshStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.watch.before_read().map_err(failure)?;
        self.conn
            .session
            .set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        let Some(channel) = self.channel.as_mut() else {
            return Ok(0);
        };
        quickack(&self.conn.socket);
        let read = channel.read(buf);
        quickack(&self.conn.socket);
        let n = match self.watch.after_read(read) {
            Ok(n) => n,
            Err(e) => {
                // No graceful close on drop (it could wait out a stalled server): the session
                // is dropped.
                self.failed = true;
                return Err(failure(e));
            }
        };
        if let Err(e) = self.meter.count(&buf[..n]) {
            // The rest is not read: the session is dropped, not pooled.
            self.failed = true;
            return Err(failure(transport::too_large(e)));
        }
        if n == 0 && !self.eof {
            self.eof = true;
            // upload-pack refusing (no such repository, access denied) writes only to stderr:
            // that text is the error, as in libgit2's own SSH transport.
            let mut text = Vec::new();
            let _ = channel.stderr().take(4096).read_to_end(&mut text);
            // The remote's words: escaped, so they cannot start a line of their own.
            let text = crate::printable::escape_bytes(text.trim_ascii());
            if !text.is_empty() {
                return Err(transport::fail(Error::new(
                    ErrorCode::Eof,
                    ErrorClass::Ssh,
                    text,
                )));
            }
        }
        Ok(n)
    }
}

/// A read error as the engine should classify it: timeouts keep [`ErrorCode::Timeout`].
fn failure(e: io::Error) -> io::Error {
    let message = format!("ssh: {e}");
    transport::fail(io_error(&e, &message))
}

impl Write for SshStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let timeout = self.watch.limits().stall;
        self.conn
            .session
            .set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        match self.channel.as_mut() {
            Some(c) => c.write(buf),
            None => Err(io::Error::other("ssh: the channel is closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.channel.as_mut() {
            Some(c) => c.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for SshStream {
    fn drop(&mut self) {
        let Some(mut channel) = self.channel.take() else {
            return;
        };
        self.conn.session.set_timeout(CLOSE_TIMEOUT_MS);
        quickack(&self.conn.socket);
        // upload-pack has sent its last byte when libgit2 lets go of the stream; what is left is
        // its exit. A session whose channel does not close cleanly is not reused.
        let clean = !self.failed
            && channel.send_eof().is_ok()
            && channel.wait_eof().is_ok()
            && channel.close().is_ok()
            && channel.wait_close().is_ok()
            && channel.exit_status().is_ok_and(|s| s == 0);
        drop(channel);
        let socket = self.conn.socket.try_clone();
        match socket {
            Ok(socket) if clean => ssh_pool::give(
                self.key.clone(),
                Conn {
                    session: self.conn.session.clone(),
                    socket,
                },
            ),
            _ => {
                self.conn.session.set_timeout(1000);
                let _ = self
                    .conn
                    .session
                    .disconnect(None, "hookmirror: fetch ended", None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_pack_commands_match_what_git_runs() {
        assert_eq!(
            upload_pack_command("/srv/r.git"),
            "git-upload-pack '/srv/r.git'"
        );
        assert_eq!(
            upload_pack_command("ns/r.git"),
            "git-upload-pack 'ns/r.git'"
        );
        assert_eq!(
            upload_pack_command("/~alice/r.git"),
            "git-upload-pack '~alice/r.git'"
        );
        assert_eq!(
            upload_pack_command("/a'b!c"),
            "git-upload-pack '/a'\\''b'\\!'c'"
        );
    }

    #[test]
    fn known_host_key_types_go_first() {
        let kh = "[h]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA==\n";
        let order = host_key_preference(kh, "h", 2222);
        assert!(
            order.starts_with("ecdsa-sha2-nistp256,ssh-ed25519"),
            "{order}"
        );
        let rsa = "h ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n";
        assert!(host_key_preference(rsa, "h", 22).starts_with("rsa-sha2-512,rsa-sha2-256,"));
        assert!(host_key_preference("", "h", 22).starts_with("ssh-ed25519,"));
    }
}
