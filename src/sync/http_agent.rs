//! The ureq agents behind the HTTP(S) transport ([`super::http`]): one per proxy and CA-file
//! setting, each holding its pool of keep-alive connections per host across syncs.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use git2::{Error, ErrorClass, ErrorCode};
use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use super::{CONNECT_TIMEOUT_MS, proxy};
use crate::config::Repo;
use crate::url::{Scheme, redact};

/// Idle connections kept per host: one per concurrent sync of that host, up to a worker pool's
/// usual size, so a burst of syncs of repos on one forge reuses them all.
const IDLE_PER_HOST: usize = 16;

/// Idle connections kept in all, per agent (per proxy and CA setting).
const IDLE_TOTAL: usize = 64;

/// How long an idle connection is kept. Forges close idle keep-alive connections after a minute
/// or two (nginx: 75 s); one closed by the server is noticed before reuse and replaced.
const IDLE_AGE: Duration = Duration::from_secs(300);

/// Sent as `User-Agent`. Some servers answer smart HTTP only to agents that start `git/` (as
/// libgit2's own `git/2.0 (libgit2 …)` does); the comment names hookmirror and its version.
const USER_AGENT: &str = concat!("git/2.0 (hookmirror/", env!("CARGO_PKG_VERSION"), ")");

/// What makes two repositories' connections interchangeable: the same proxy and trusted CAs
/// (the pool inside an agent is per host).
#[derive(Clone, PartialEq, Eq, Hash)]
struct AgentKey {
    proxy: Option<String>,
    /// The CA file and a hash of its content (read at every fetch; a few KB): a changed file
    /// makes a new agent, so no connection verified under the old CAs is used after it.
    ca_file: Option<(PathBuf, u64)>,
}

static AGENTS: Mutex<Option<HashMap<AgentKey, Agent>>> = Mutex::new(None);

/// The agent (and so the connection pool) for `host` over `scheme` with `repo`'s proxy and CA settings.
pub(super) fn agent_for(scheme: Scheme, host: &str, repo: Option<&Repo>) -> Result<Agent, Error> {
    let auth = repo.map(|r| &r.auth);
    let proxy = proxy::choose(
        scheme,
        host,
        auth.and_then(|a| a.proxy.as_deref()),
        |name| std::env::var(name).ok(),
    );
    let ca = match auth.and_then(|a| a.ca_file.clone()) {
        None => None,
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| {
                tls_error(format!("cannot read auth.ca_file {}: {e}", path.display()))
            })?;
            let mut h = DefaultHasher::new();
            pem.hash(&mut h);
            Some((path, h.finish(), pem))
        }
    };
    let ca_file = ca.as_ref().map(|(p, h, _)| (p.clone(), *h));
    let key = AgentKey { proxy, ca_file };
    let mut agents = AGENTS.lock().unwrap_or_else(PoisonError::into_inner);
    let agents = agents.get_or_insert_with(HashMap::new);
    if let Some(agent) = agents.get(&key) {
        return Ok(agent.clone());
    }
    let agent = build_agent(
        &key,
        ca.as_ref().map(|(p, _, pem)| (p.as_path(), pem.as_slice())),
    )?;
    // A changed CA file or proxy leaves its old agent unused: drop agents no longer keyed by a
    // current setting of the same proxy (its idle connections close with it).
    agents.retain(|k, _| {
        k.proxy != key.proxy
            || k.ca_file.as_ref().map(|c| &c.0) != key.ca_file.as_ref().map(|c| &c.0)
    });
    agents.insert(key, agent.clone());
    Ok(agent)
}

fn build_agent(key: &AgentKey, ca: Option<(&Path, &[u8])>) -> Result<Agent, Error> {
    let roots = match ca {
        None => RootCerts::PlatformVerifier,
        Some((path, pem)) => RootCerts::Specific(Arc::new(roots_with(path, pem)?)),
    };
    let proxy = match &key.proxy {
        None => None,
        Some(p) => Some(ureq::Proxy::new(p).map_err(|e| {
            Error::new(
                ErrorCode::GenericError,
                ErrorClass::Net,
                format!("http(s): unusable proxy {}: {e}", redact(p)),
            )
        })?),
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::NativeTls)
        .root_certs(roots)
        .build();
    Ok(Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(USER_AGENT)
        .no_delay(true)
        .proxy(proxy)
        .tls_config(tls)
        .max_idle_connections(IDLE_TOTAL)
        .max_idle_connections_per_host(IDLE_PER_HOST)
        .max_idle_age(IDLE_AGE)
        .timeout_connect(Some(Duration::from_millis(CONNECT_TIMEOUT_MS as u64)))
        .build()
        .new_agent())
}

/// The system's CA certificates (OpenSSL's bundle, where `openssl-probe` finds it) and those of
/// the CA file at `path` (its content `pem`).
fn roots_with(path: &Path, pem: &[u8]) -> Result<Vec<Certificate<'static>>, Error> {
    let mut certs = pem_certificates(pem);
    if certs.is_empty() {
        return Err(tls_error(format!(
            "auth.ca_file {} holds no PEM certificate",
            path.display()
        )));
    }
    let probed = openssl_probe::probe();
    if let Some(bundle) = probed.cert_file.and_then(|f| std::fs::read(f).ok()) {
        certs.extend(pem_certificates(&bundle));
    }
    Ok(certs)
}

/// A CA problem, classified as `tls`.
fn tls_error(message: String) -> Error {
    Error::new(ErrorCode::Certificate, ErrorClass::Ssl, message)
}

fn pem_certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}
