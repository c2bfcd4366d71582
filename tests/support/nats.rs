//! Real `nats-server -js` processes on 127.0.0.1 for the fleet tests: one server, or a cluster
//! of three (routes between them, a `server_name` each, one cluster name). A server can be
//! killed (SIGKILL, no goodbye) and started again on the same ports with the same store, as a
//! crashed and restarted host would be. Everything lives in a temp dir; drop kills them.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{GroupChild, free_port, read_file_lossy, wait_until};

const NATS_SERVER: &str = "nats-server";

/// What nats-server logs once it listens on every port it was given.
const READY: &str = "Server is ready";

/// How long a server (or a cluster's JetStream) may take to come up on a loaded machine.
const NATS_START: Duration = Duration::from_secs(60);

/// One `nats-server` with JetStream.
pub struct NatsServer {
    pub name: String,
    pub port: u16,
    /// Its monitoring port (`/healthz` answers 200 once JetStream is ready).
    pub monitor: u16,
    /// Its cluster port, in a cluster.
    pub cluster: Option<u16>,
    routes: Vec<u16>,
    /// Clients must present this token (`--auth`).
    token: Option<String>,
    /// Clients must speak TLS: the server's certificate and key (`--tls`).
    tls: Option<(PathBuf, PathBuf)>,
    store: PathBuf,
    log: PathBuf,
    child: Option<GroupChild>,
}

impl NatsServer {
    fn new(dir: &std::path::Path, name: &str, cluster: Option<u16>) -> NatsServer {
        let store = dir.join(name);
        std::fs::create_dir_all(&store).unwrap();
        NatsServer {
            name: name.into(),
            port: free_port(),
            monitor: free_port(),
            cluster,
            routes: Vec::new(),
            token: None,
            tls: None,
            log: dir.join(format!("{name}.log")),
            store,
            child: None,
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again) on its ports with its store; returns once it accepts
    /// clients (JetStream readiness is [`NatsServer::wait_ready`]).
    #[track_caller]
    pub fn start(&mut self) {
        assert!(
            self.try_start(),
            "{} did not start; log:\n{}",
            self.name,
            self.log()
        );
    }

    /// [`NatsServer::start`]; false when it did not come up (a port taken meanwhile).
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let mut cmd = Command::new(NATS_SERVER);
        cmd.arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .args(["-sd", &self.store.display().to_string()])
            .args(["-n", &self.name]);
        if let Some(t) = &self.token {
            cmd.args(["--auth", t]);
        }
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--tls")
                .arg("--tlscert")
                .arg(cert)
                .arg("--tlskey")
                .arg(key);
        }
        if let Some(c) = self.cluster {
            let routes: Vec<String> = self
                .routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            cmd.args(["--cluster_name", "hookmirror-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{c}")])
                .args(["--routes", &routes.join(",")]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        // The log is appended to across restarts: this start's word is one more "ready".
        let readies = |log: &str| log.matches(READY).count();
        let before = readies(&self.log());
        let mut child = GroupChild::spawn(&mut cmd).expect("cannot start nats-server");
        // Its own word that it listens, not a connection (which could reach another test's
        // server holding the port).
        let up = wait_until(NATS_START, || {
            child.exited().is_some() || readies(&self.log()) > before
        });
        let port = self.port;
        let ok = up && child.exited().is_none() && TcpStream::connect(("127.0.0.1", port)).is_ok();
        if ok {
            self.child = Some(child);
        }
        ok
    }

    /// Waits until the server says JetStream is ready (`/healthz`: in a cluster, once a meta
    /// leader is elected).
    pub fn wait_ready(&self) {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor);
        let ok = wait_until(NATS_START, || {
            client
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(
            ok,
            "{}: JetStream not ready; log:\n{}",
            self.name,
            self.log()
        );
    }

    /// GET `path` on the monitoring port, as JSON.
    fn monitor(&self, path: &str) -> serde_json::Value {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        client
            .get(format!("http://127.0.0.1:{}{path}", self.monitor))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default()
    }

    /// Client connections open now (`/connz`).
    pub fn connections(&self) -> u64 {
        self.monitor("/connz")["num_connections"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The server that leads `stream` as this server sees it (`/jsz`), once one is elected.
    pub fn stream_leader(&self, stream: &str) -> Option<String> {
        let jsz = self.monitor("/jsz?accounts=true&streams=true");
        let accounts = jsz["account_details"].as_array()?;
        accounts
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)
            .and_then(|s| s["cluster"]["leader"].as_str().map(str::to_string))
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.take() {
            c.signal_group(nix::sys::signal::Signal::SIGKILL);
            drop(c);
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log(&self) -> String {
        read_file_lossy(&self.log)
    }
}

/// One server, or a cluster of three.
pub struct Nats {
    pub servers: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// One server with JetStream, ready.
    pub fn single() -> Nats {
        Nats::one(|_, _| {})
    }

    /// One server with JetStream that admits only clients presenting `token`.
    pub fn single_with_token(token: &str) -> Nats {
        Nats::one(|s, _| s.token = Some(token.into()))
    }

    /// One server with JetStream that speaks only TLS, with a certificate for 127.0.0.1 from a
    /// CA made for the test; also the CA's certificate (PEM), for the clients to trust.
    pub fn single_with_tls() -> (Nats, PathBuf) {
        let mut ca = PathBuf::new();
        let nats = Nats::one(|s, dir| {
            let (c, cert, key) = test_ca(dir);
            ca = c;
            s.tls = Some((cert, key));
        });
        (nats, ca)
    }

    /// One server, set up by `setup`, started on fresh ports (again on others when one was
    /// taken meanwhile), ready.
    fn one(mut setup: impl FnMut(&mut NatsServer, &std::path::Path)) -> Nats {
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-nats-")
            .tempdir()
            .unwrap();
        for attempt in 0..5 {
            let mut s = NatsServer::new(dir.path(), &format!("n1-{attempt}"), None);
            s.name = "n1".into();
            setup(&mut s, dir.path());
            if s.try_start() {
                s.wait_ready();
                return Nats {
                    servers: vec![s],
                    _dir: dir,
                };
            }
        }
        panic!("nats-server did not start in 5 attempts");
    }

    /// Three servers in one cluster, each routed to the other two, JetStream ready on all
    /// (on other ports again when one was taken meanwhile).
    pub fn cluster() -> Nats {
        (0..3)
            .find_map(|_| Nats::try_cluster())
            .expect("a nats-server cluster did not start in 3 attempts")
    }

    fn try_cluster() -> Option<Nats> {
        let dir = tempfile::Builder::new()
            .prefix("hookmirror-nats-")
            .tempdir()
            .unwrap();
        let mut servers: Vec<NatsServer> = (1..=3)
            .map(|i| NatsServer::new(dir.path(), &format!("n{i}"), Some(free_port())))
            .collect();
        let cluster_ports: Vec<u16> = servers.iter().filter_map(|s| s.cluster).collect();
        for s in &mut servers {
            s.routes = cluster_ports
                .iter()
                .copied()
                .filter(|p| Some(*p) != s.cluster)
                .collect();
            if !s.try_start() {
                return None;
            }
        }
        for s in &servers {
            s.wait_ready();
        }
        Some(Nats { servers, _dir: dir })
    }

    /// Every server's URL, as a YAML flow list.
    pub fn urls_yaml(&self) -> String {
        let urls: Vec<String> = self.servers.iter().map(|s| s.url()).collect();
        format!("[{}]", urls.join(", "))
    }

    /// Every server's log, for a failure message.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("--- {} ---\n{}", s.name, s.log()))
            .collect()
    }
}

/// A CA and a server certificate for IP 127.0.0.1 signed by it (P-256 keys, one day), made
/// with the `openssl` CLI in `dir`: (CA certificate, server certificate, server key).
fn test_ca(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat()
        .iter()
        .copied()
        .chain(["-days", "1", "-subj", "/CN=hookmirror test CA"])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat()
        .iter()
        .copied()
        .chain(["-subj", "/CN=127.0.0.1"])
        .collect::<Vec<_>>(),
    );
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}
