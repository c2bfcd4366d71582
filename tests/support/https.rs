//! Real HTTPS remotes and what sits between: nginx + fcgiwrap + `git http-backend` over TLS
//! with certificates from a test CA ([`TestCa`], [`NginxGit`]), tinyproxy ([`Tinyproxy`]), and
//! a TCP proxy that delays every byte ([`DelayProxy`]) for benchmarks of round-trip-bound work,
//! and an origin served that way with a login ([`HttpsOrigin`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{GroupChild, Origin, START_TIMEOUT, free_port, read_file_lossy, run, wait_until};

/// The token [`HttpsOrigin`]'s nginx accepts (user `bot`).
pub const HTTPS_TOKEN: &str = "glpat-SECRET-4711";

/// An origin served by nginx over TLS (a certificate from its own test CA) with basic auth
/// (`bot` / [`HTTPS_TOKEN`]) and a gzipped advertisement, and the `auth:` keys that reach it.
pub struct HttpsOrigin {
    pub origin: Origin,
    pub ca: TestCa,
    pub nginx: NginxGit,
}

impl HttpsOrigin {
    pub fn start(origin: Origin) -> HttpsOrigin {
        let ca = TestCa::new();
        let cert = ca.issue("server", "IP:127.0.0.1", 2);
        let nginx = NginxGit::start(
            origin.root.path(),
            &cert,
            &NginxOptions {
                login: Some(("bot".into(), HTTPS_TOKEN.into())),
                gzip: true,
            },
        );
        HttpsOrigin { origin, ca, nginx }
    }

    /// A repo's `auth:` block (YAML, indented for a repo entry) with `token` and the test CA.
    pub fn auth(&self, token: &str) -> String {
        format!(
            "    auth:\n      username: bot\n      token: {token}\n      ca_file: '{}'\n",
            self.ca.cert.display()
        )
    }
}

/// A test certificate authority in a temp dir, and server certificates it signs.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA's certificate (PEM): what `auth.ca_file` / `GIT_SSL_CAINFO` trust.
    pub cert: PathBuf,
    key: PathBuf,
}

/// A server certificate and its key.
#[derive(Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-ca-")
            .tempdir()
            .unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=hookmirror test CA",
                "-addext",
                "basicConstraints=critical,CA:true",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        TestCa { dir, cert, key }
    }

    /// A certificate for `san` (e.g. `IP:127.0.0.1`) valid for `days` (a negative number makes
    /// one that has expired already).
    pub fn issue(&self, name: &str, san: &str, days: i32) -> ServerCert {
        let d = self.dir.path();
        let (key, csr, cert, ext) = (
            d.join(format!("{name}.key")),
            d.join(format!("{name}.csr")),
            d.join(format!("{name}.pem")),
            d.join(format!("{name}.ext")),
        );
        std::fs::write(&ext, format!("subjectAltName={san}\n")).unwrap();
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=hookmirror test server",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
            ],
        );
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                self.cert.to_str().unwrap(),
                "-CAkey",
                self.key.to_str().unwrap(),
                "-CAcreateserial",
                "-days",
                &days.to_string(),
                "-extfile",
                ext.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        ServerCert { cert, key }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`NginxGit`] serves and how.
#[derive(Clone, Default)]
pub struct NginxOptions {
    /// Basic auth: every request must carry this `user:password`.
    pub login: Option<(String, String)>,
    /// Gzip the ref advertisement (as forges do).
    pub gzip: bool,
}

/// nginx + fcgiwrap + `git http-backend` over TLS on 127.0.0.1, serving the repositories under a
/// folder. `/moved/<path>` answers a redirect to `/<path>` (same origin), `/offsite/<path>` a
/// redirect to the same path on `127.0.0.2`. The access log records per request the
/// connection's serial number, so tests count connections at the server.
pub struct NginxGit {
    pub port: u16,
    pub dir: tempfile::TempDir,
    nginx: GroupChild,
    _fcgi: GroupChild,
}

impl NginxGit {
    pub fn start(root: &Path, cert: &ServerCert, options: &NginxOptions) -> NginxGit {
        let root = root.canonicalize().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-nginx-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let sock = d.join("fcgi.sock");
        let mut fcgi_cmd = Command::new("/usr/sbin/fcgiwrap");
        fcgi_cmd
            .args(["-c", "4", "-s"])
            .arg(format!("unix:{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("fcgiwrap.log")).unwrap());
        let mut fcgi = GroupChild::spawn(&mut fcgi_cmd).expect("cannot start fcgiwrap");
        assert!(
            wait_until(START_TIMEOUT, || sock.exists() || fcgi.exited().is_some()) && sock.exists(),
            "fcgiwrap did not start: {}",
            read_file_lossy(&d.join("fcgiwrap.log"))
        );
        let auth = match &options.login {
            Some((user, password)) => {
                let hash = run("openssl", &["passwd", "-apr1", password]);
                std::fs::write(d.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth_basic \"git\"; auth_basic_user_file {};",
                    d.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let gzip = if options.gzip {
            "gzip on; gzip_min_length 1; gzip_types application/x-git-upload-pack-advertisement;"
        } else {
            ""
        };
        for _attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                r#"user root;
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  log_format conns '$connection $connection_requests $ssl_session_reused $status $request_method $uri $gzip_ratio "$http_user_agent"';
  access_log {d}/access.log conns;
  keepalive_timeout 120s;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    {gzip}
    location /moved/ {{ rewrite ^/moved/(.*)$ /$1 permanent; }}
    location /offsite/ {{ rewrite ^/offsite/(.*)$ https://127.0.0.2:{port}/$1 permanent; }}
    location / {{
      {auth}
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:{sock};
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
    }}
  }}
}}
"#,
                d = d.display(),
                cert = cert.cert.display(),
                key = cert.key.display(),
                sock = sock.display(),
                root = root.display(),
            );
            std::fs::write(d.join("nginx.conf"), conf).unwrap();
            let mut cmd = Command::new("/usr/sbin/nginx");
            cmd.arg("-c")
                .arg(d.join("nginx.conf"))
                .arg("-p")
                .arg(d)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("stderr.log")).unwrap());
            let mut nginx = GroupChild::spawn(&mut cmd).expect("cannot start nginx");
            let up = wait_until(START_TIMEOUT, || {
                nginx.exited().is_some() || TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && nginx.exited().is_none() {
                return NginxGit {
                    port,
                    dir,
                    nginx,
                    _fcgi: fcgi,
                };
            }
        }
        panic!(
            "nginx did not start:\n{}{}",
            read_file_lossy(&d.join("stderr.log")),
            read_file_lossy(&d.join("error.log"))
        );
    }

    /// `https://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// The access log: one line per request, `connection requests-on-it reused status method uri
    /// gzip-ratio "user-agent"`.
    pub fn access_log(&self) -> String {
        read_file_lossy(&self.dir.path().join("access.log"))
    }

    /// Requests served so far (nginx writes its log line when a request ends).
    pub fn requests(&self) -> usize {
        self.access_log().lines().count()
    }

    /// Distinct connections that carried the requests so far.
    pub fn connections(&self) -> usize {
        let mut ids: Vec<&str> = Vec::new();
        let log = self.access_log();
        for id in log.lines().filter_map(|l| l.split_whitespace().next()) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.len()
    }

    /// nginx's error log (TLS handshake failures are logged at info).
    pub fn error_log(&self) -> String {
        read_file_lossy(&self.dir.path().join("error.log"))
    }

    /// Stops nginx (and so every keep-alive connection); fcgiwrap goes on `Drop`.
    pub fn stop(self) {
        drop(self.nginx);
    }
}

/// tinyproxy on 127.0.0.1 (CONNECT to any port: no `ConnectPort` line, since with one tinyproxy
/// refuses every other port — `ConnectPort 0` included), run in the foreground; its log lists every
/// connection it made.
pub struct Tinyproxy {
    pub port: u16,
    pub dir: tempfile::TempDir,
    _child: GroupChild,
}

impl Tinyproxy {
    pub fn start() -> Tinyproxy {
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-tinyproxy-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for _attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 120\nMaxClients 64\nLogLevel Info\nLogFile \"{}\"\n",
                d.join("tinyproxy.log").display()
            );
            std::fs::write(d.join("tinyproxy.conf"), conf).unwrap();
            let mut cmd = Command::new("tinyproxy");
            cmd.arg("-d")
                .arg("-c")
                .arg(d.join("tinyproxy.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("stderr.log")).unwrap());
            let mut child = GroupChild::spawn(&mut cmd).expect("cannot start tinyproxy");
            let up = wait_until(START_TIMEOUT, || {
                child.exited().is_some() || TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && child.exited().is_none() {
                return Tinyproxy {
                    port,
                    dir,
                    _child: child,
                };
            }
        }
        panic!(
            "tinyproxy did not start: {}{}",
            read_file_lossy(&d.join("stderr.log")),
            read_file_lossy(&d.join("tinyproxy.log"))
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        read_file_lossy(&self.dir.path().join("tinyproxy.log"))
    }

    /// CONNECT requests the proxy served so far.
    pub fn connects(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("CONNECT") && l.contains("Request"))
            .count()
    }
}

/// A TCP proxy on 127.0.0.1 that forwards to `127.0.0.1:target` and holds every chunk for
/// `delay` in each direction (order kept), so a round trip costs `2 × delay` more: a remote
/// "across the country". Connections it accepted are counted. Runs until dropped (the accept
/// loop ends; open connections close when their peers do).
pub struct DelayProxy {
    pub port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DelayProxy {
    pub fn start(target: u16, delay: Duration) -> DelayProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", target)) {
                            let _ = (client.set_nodelay(true), server.set_nodelay(true));
                            pipe(
                                client.try_clone().unwrap(),
                                server.try_clone().unwrap(),
                                delay,
                            );
                            pipe(server, client, delay);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DelayProxy {
            port,
            accepted,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Copies `from` → `to`, each chunk written `delay` after it was read.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
