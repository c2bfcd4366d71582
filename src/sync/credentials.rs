//! libgit2's callbacks for a fetch: credentials offered once each, strict SSH host-key checks.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use git2::{
    CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks,
    cert::Cert,
};

use super::known_hosts::{self, Verdict};
use crate::config::{Auth, Credential, Repo};

/// What the credential and certificate callbacks learned, to explain a failure: libgit2 passes
/// on only that a callback refused, not why.
#[derive(Default)]
pub(super) struct AuthState {
    tried: Vec<CredentialType>,
    pub(super) auth_failed: Option<String>,
    pub(super) host_key: Option<String>,
}

/// SSH private keys tried, in order, when the config names none (as ssh itself would).
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// Callbacks that answer for `repo` and record in `state` why they refused.
pub(super) fn callbacks<'a>(repo: &'a Repo, state: &'a RefCell<AuthState>) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let home2 = home.clone();
    cb.credentials(move |_url, user_from_url, allowed| {
        credential(
            repo,
            home.as_deref(),
            &mut state.borrow_mut(),
            user_from_url,
            allowed,
        )
    });
    cb.certificate_check(move |cert, host| {
        check_host_key(repo, home2.as_deref(), cert, host).map_err(|msg| {
            state.borrow_mut().host_key = Some(msg);
            // The code lets the failure classify as a host-key one even without the record.
            git2::Error::new(
                ErrorCode::Certificate,
                ErrorClass::Callback,
                "host key verification failed",
            )
        })
    });
    cb
}

/// Records why a credential was refused. The code lets the failure classify as auth even without
/// the record.
fn refuse(st: &mut AuthState, why: impl Into<String>) -> git2::Error {
    st.auth_failed = Some(why.into());
    git2::Error::new(
        ErrorCode::Auth,
        ErrorClass::Callback,
        "authentication refused",
    )
}

/// Offers each kind of credential once: libgit2 asks again after a refusal, and a second offer of
/// the same key or token would only be refused again.
fn credential(
    repo: &Repo,
    home: Option<&Path>,
    st: &mut AuthState,
    user_from_url: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    let auth = &repo.auth;
    let user = ssh_user(repo, user_from_url);
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(&user);
    }
    if allowed.contains(CredentialType::SSH_KEY) {
        if st.tried.contains(&CredentialType::SSH_KEY) {
            return Err(refuse(
                st,
                format!("the SSH key was refused for user `{user}`"),
            ));
        }
        st.tried.push(CredentialType::SSH_KEY);
        let key = ssh_key_path(auth, home);
        let Some(key) = key else {
            return Err(refuse(
                st,
                "the remote wants an SSH key and none is configured (auth.ssh_key)",
            ));
        };
        let pass = auth
            .ssh_key_passphrase
            .as_ref()
            .map(|c| c.value.expose().to_string());
        return Cred::ssh_key(&user, None, &key, pass.as_deref());
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        if st.tried.contains(&CredentialType::USER_PASS_PLAINTEXT) {
            return Err(refuse(st, "the username and token were refused"));
        }
        st.tried.push(CredentialType::USER_PASS_PLAINTEXT);
        let Some(token) = &auth.token else {
            // libgit2 offers the URL's own user:password first and asks only once it is refused.
            if repo.url.parsed().has_password {
                return Err(refuse(st, "the credentials in the URL were refused"));
            }
            return Err(refuse(
                st,
                "the remote wants a username and token and none is configured (auth.token)",
            ));
        };
        let (user, token) = token_login(auth, token);
        return Cred::userpass_plaintext(&user, &token);
    }
    Err(refuse(
        st,
        "the remote asks for a kind of credential hookmirror does not have",
    ))
}

/// The HTTP login for `auth.token`: with `auth.username` as the user; without one, a token
/// written `user:token` is split (Direktiv style), and a bare token goes as `x-access-token`
/// (GitHub's name for it; other forges ignore the user for tokens).
pub(super) fn token_login(auth: &Auth, token: &Credential) -> (String, String) {
    let token = token.value.expose();
    match (&auth.username, token.split_once(':')) {
        (None, Some((u, t))) => (u.to_string(), t.to_string()),
        (Some(u), _) => (u.clone(), token.to_string()),
        (None, None) => ("x-access-token".to_string(), token.to_string()),
    }
}

/// The private key to offer: `auth.ssh_key`, else the first of [`DEFAULT_KEYS`] in `~/.ssh`.
pub(super) fn ssh_key_path(auth: &Auth, home: Option<&Path>) -> Option<PathBuf> {
    auth.ssh_key.clone().or_else(|| {
        let ssh = home?.join(".ssh");
        DEFAULT_KEYS
            .iter()
            .map(|k| ssh.join(k))
            .find(|p| p.is_file())
    })
}

/// The SSH login: the URL's user, else `auth.username`, else `git`.
pub(super) fn ssh_user(repo: &Repo, user_from_url: Option<&str>) -> String {
    user_from_url
        .map(str::to_string)
        .or_else(|| repo.auth.username.clone())
        .unwrap_or_else(|| "git".into())
}

/// The known_hosts file checked for `repo`: `auth.known_hosts`, else `~/.ssh/known_hosts`.
pub(super) fn known_hosts_path(repo: &Repo, home: Option<&Path>) -> PathBuf {
    repo.auth
        .known_hosts
        .clone()
        .or_else(|| home.map(|h| h.join(".ssh/known_hosts")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent/known_hosts"))
}

/// Checks an SSH server's host key against `auth.known_hosts` (default `~/.ssh/known_hosts`);
/// `Err` says why it is refused. Unknown hosts are refused: no trust on first use.
fn check_host_key(
    repo: &Repo,
    home: Option<&Path>,
    cert: &Cert<'_>,
    host: &str,
) -> Result<CertificateCheckStatus, String> {
    let Some(hk) = cert.as_hostkey() else {
        // TLS: libgit2 has verified the chain against the system's CAs already.
        return Ok(CertificateCheckStatus::CertificatePassthrough);
    };
    let port = repo.url.parsed().port.unwrap_or(22);
    let (Some(key), Some(kind)) = (hk.hostkey(), hk.hostkey_type()) else {
        return Err(format!("the SSH server {host} sent no usable host key"));
    };
    verify_host_key(&known_hosts_path(repo, home), host, port, kind.name(), key)
        .map(|()| CertificateCheckStatus::CertificateOk)
}

/// Checks `key` (of type `kind`, e.g. `ssh-ed25519`) offered by `host:port` against the
/// known_hosts file at `path`; `Err` says why it is refused, with the key's fingerprint.
pub(super) fn verify_host_key(
    path: &Path,
    host: &str,
    port: u16,
    kind: &str,
    key: &[u8],
) -> Result<(), String> {
    // A missing or unreadable file knows no hosts, so the key is refused as unknown.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let fp = known_hosts::fingerprint(key);
    let shown = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    Err(match known_hosts::check(&text, host, port, kind, key) {
        Verdict::Match => return Ok(()),
        Verdict::Unknown => format!(
            "host key for {shown} ({} {fp}) is not in {}; strict host-key checking refuses unknown hosts: verify the fingerprint and add it (ssh-keyscan -p {port} {host})",
            kind,
            path.display()
        ),
        Verdict::Mismatch { .. } => format!(
            "HOST KEY CHANGED for {shown}: it offered {} {fp}, which does not match {}; this may be an attack — refusing to connect",
            kind,
            path.display()
        ),
        Verdict::Revoked => format!(
            "host key {fp} of {shown} is marked @revoked in {}",
            path.display()
        ),
    })
}
