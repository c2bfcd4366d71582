//! hookmirror's smart-HTTP(S) transport for libgit2, on ureq: connections kept alive in a pool
//! per host across syncs.
//!
//! Why: libgit2's own HTTP client opens a new TCP connection and TLS handshake for every fetch,
//! and writes each POST's headers and body in two writes on a socket without `TCP_NODELAY`, so
//! the body waits for the server's delayed ACK (~40 ms, twice per fetch). Here a fetch takes a
//! warm connection from the [`Agent`]'s pool (keep-alive: no handshake after the first sync of a
//! host), `TCP_NODELAY` is set, and responses are streamed to libgit2 as they arrive (a pack is
//! never held in memory).
//!
//! Smart HTTP is stateless (`rpc: true`): the ref advertisement is a `GET
//! …/info/refs?service=git-upload-pack`, each negotiation round a `POST …/git-upload-pack` whose
//! body libgit2 writes before it reads the answer. What the repository configures comes from the
//! fetch context ([`transport::current`]): the login (`auth.token`/`auth.username`, or the URL's
//! own `user:password`) sent with every request to the configured origin and nowhere else,
//! `auth.proxy` (else the environment, see [`proxy`]), `auth.ca_file` (trusted besides the
//! system's CAs), and the limits (connecting within `stall_timeout`; the sync's deadline; a
//! stall when less than [`transport::LOW_SPEED_BYTES`] arrive within `stall_timeout`; what the
//! remote may send, counted by a [`Meter`]). A redirect is followed for the advertisement only,
//! as the git CLI's `http.followRedirects=initial` does, and only when [`crate::origin::follow`]
//! allows it: the same scheme, host and port (the URL parsed, not read as text), no userinfo in
//! the `Location`. Fetch only.

use std::io::{self, Read, Write};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use git2::{Error, ErrorClass, ErrorCode, Remote};
use ureq::Agent;
use ureq::http::{Response, StatusCode};

use super::budget::Meter;
use super::credentials::token_login;
use super::git_proto::net_error;
use super::http_agent;
use super::http_error::{as_failure, http_error, request_error, timed_out};
use super::transport::{self, Limits, Watch};
use crate::config::Repo;
use crate::url::{Scheme, redact};

/// The private URL schemes libgit2 hands to this transport (see `sync::fetch_url`).
pub const SCHEMES: [&str; 2] = ["hm-https", "hm-http"];

/// Redirects followed for the ref advertisement (the git CLI follows up to 20; a forge needs one
/// or two, e.g. `http` → `https` is refused anyway since the scheme must stay).
const MAX_REDIRECTS: usize = 5;

/// The transport factory to register for [`SCHEMES`].
pub fn factory(remote: &Remote<'_>) -> Result<Transport, Error> {
    Transport::smart(remote, true, SmartHttp::default())
}

/// One remote's transport: where a redirected advertisement moved the repository, so the
/// POSTs that follow go there too.
#[derive(Default)]
pub(super) struct SmartHttp {
    moved_to: Mutex<Option<String>>,
}

impl SmartSubtransport for SmartHttp {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, Error> {
        let endpoint = Endpoint::of(url)?;
        let ctx = transport::current();
        let repo = ctx.as_ref().map(|c| &c.repo);
        let limits = Limits::current_or_default();
        let base = self
            .moved_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| endpoint.base.clone());
        let client = Client {
            agent: http_agent::agent_for(endpoint.scheme, &endpoint.host, repo)?,
            authorization: authorization(&endpoint, repo),
            origin: endpoint.base.clone(),
            limits,
        };
        match action {
            Service::UploadPackLs => {
                let (response, moved) = client.advertisement(&base)?;
                if let Some(moved) = moved {
                    *self.moved_to.lock().unwrap_or_else(PoisonError::into_inner) = Some(moved);
                }
                Ok(Box::new(HttpStream::reading(response, limits)))
            }
            Service::UploadPack => Ok(Box::new(HttpStream {
                client: Some(client),
                url: format!("{base}/git-upload-pack"),
                body: Vec::new(),
                reader: None,
                watch: Watch::new(limits),
                meter: Meter::answer(limits.sizes),
            })),
            Service::ReceivePackLs | Service::ReceivePack => {
                Err(net_error("http(s): hookmirror only fetches"))
            }
        }
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// A repository's HTTP address: the real URL without credentials, and the credentials.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    scheme: Scheme,
    host: String,
    /// `https://host[:port]/path` without a trailing `/`.
    base: String,
    /// `user:password` from the URL.
    userinfo: Option<(String, String)>,
    /// A user name alone in the URL (`https://TOKEN@github.com/…`: forges take a token there).
    user_only: Option<String>,
}

impl Endpoint {
    /// Parses the private-scheme URL libgit2 passes (`hm-https://…`).
    fn of(url: &str) -> Result<Endpoint, Error> {
        let real = url.strip_prefix("hm-").unwrap_or(url);
        let parsed = crate::url::parse(real)
            .filter(|p| matches!(p.scheme, Scheme::Https | Scheme::Http))
            .ok_or_else(|| net_error("http(s): malformed URL"))?;
        let (scheme_text, rest) = real.split_once("://").unwrap_or(("https", real));
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let user_only = userinfo
            .filter(|u| !u.contains(':') && !u.is_empty())
            .map(percent_decode);
        let userinfo = userinfo
            .and_then(|u| u.split_once(':'))
            .map(|(u, p)| (percent_decode(u), percent_decode(p)));
        Ok(Endpoint {
            scheme: parsed.scheme,
            host: parsed.host,
            base: format!(
                "{}://{hostport}{}",
                scheme_text.to_ascii_lowercase(),
                path.trim_end_matches('/')
            ),
            userinfo,
            user_only,
        })
    }
}

/// `%XX` escapes in a URL's user or password (a token with `@` or `:` must be written escaped).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Authorization` header: the URL's `user:password`, else the repository's token, else a
/// user name alone in the URL with an empty password (as libgit2 and curl send it).
fn authorization(endpoint: &Endpoint, repo: Option<&Repo>) -> Option<String> {
    use base64::Engine as _;
    let (user, password) = endpoint
        .userinfo
        .clone()
        .or_else(|| {
            let auth = &repo?.auth;
            auth.token.as_ref().map(|t| token_login(auth, t))
        })
        .or_else(|| endpoint.user_only.clone().map(|u| (u, String::new())))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Some(format!("Basic {encoded}"))
}

/// What one stream needs to make its request.
struct Client {
    agent: Agent,
    authorization: Option<String>,
    /// The configured repository's URL: `authorization` goes to its origin only.
    origin: String,
    limits: Limits,
}

type Answer = Response<ureq::Body>;

impl Client {
    /// `GET …/info/refs?service=git-upload-pack`, following same-origin redirects. Returns the
    /// answer and, when redirected, the repository's new base URL.
    fn advertisement(&self, base: &str) -> Result<(Answer, Option<String>), Error> {
        const SUFFIX: &str = "/info/refs?service=git-upload-pack";
        let mut url = format!("{base}{SUFFIX}");
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send(&url, None)?;
            let status = response.status();
            if !status.is_redirection() {
                self.check(
                    &url,
                    &response,
                    "application/x-git-upload-pack-advertisement",
                )?;
                let moved = (url != format!("{base}{SUFFIX}"))
                    .then(|| url.trim_end_matches(SUFFIX).to_string());
                return Ok((response, moved));
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| http_error(&url, status, "a redirect without a Location"))?;
            url = redirect(&url, location).map_err(|why| {
                let shown = crate::printable::escape(&redact(location)).into_owned();
                http_error(
                    &url,
                    status,
                    &format!("a redirect to {shown}, not followed: {why}"),
                )
            })?;
        }
        Err(net_error(&format!(
            "http(s): more than {MAX_REDIRECTS} redirects from {}",
            redact(base)
        )))
    }

    /// One request (a POST when there is a body), retried once on a fresh connection when a
    /// pooled one turns out dead before any answer arrived.
    fn send(&self, url: &str, body: Option<&[u8]>) -> Result<Answer, Error> {
        let attempt = || {
            self.limits
                .remaining()
                .map_err(|_| ureq::Error::Timeout(ureq::Timeout::Global))?;
            match body {
                None => self
                    .configure(url, self.agent.get(url).header("Accept", "*/*"))
                    .call(),
                Some(body) => self
                    .configure(
                        url,
                        self.agent
                            .post(url)
                            .header("Content-Type", "application/x-git-upload-pack-request")
                            .header("Accept", "application/x-git-upload-pack-result"),
                    )
                    .send(body),
            }
        };
        match attempt() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionAborted
                ) =>
            {
                attempt().map_err(|e| request_error(url, e))
            }
            Err(e) => Err(request_error(url, e)),
        }
    }

    /// The request's login and limits. The login goes only to the configured origin: a URL
    /// elsewhere (which no redirect should lead to) gets none.
    fn configure<B>(
        &self,
        url: &str,
        mut request: ureq::RequestBuilder<B>,
    ) -> ureq::RequestBuilder<B> {
        if let Some(a) = &self.authorization
            && crate::origin::same_origin(&self.origin, url)
        {
            request = request.header("Authorization", a);
        }
        let left = self.limits.remaining().unwrap_or(Duration::from_millis(1));
        let connect = self
            .limits
            .connect_timeout()
            .unwrap_or(Duration::from_millis(1));
        request
            .config()
            .timeout_global(Some(left))
            .timeout_connect(Some(connect))
            .timeout_per_read(Some(self.limits.stall))
            .timeout_per_write(Some(self.limits.stall))
            .build()
    }

    /// Refuses an answer that is not the git service's: a login refused, no repository there,
    /// another status, or a server that does not speak smart HTTP.
    fn check(&self, url: &str, response: &Answer, content_type: &str) -> Result<(), Error> {
        let status = response.status();
        let shown = redact(url.split('?').next().unwrap_or(url));
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let why = if self.authorization.is_some() {
                "the credentials were refused (auth.token / auth.username)"
            } else {
                "it wants credentials and none are configured (auth.token)"
            };
            return Err(Error::new(
                ErrorCode::Auth,
                ErrorClass::Http,
                format!("authentication failed: {shown} answered {status}: {why}"),
            ));
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Error::new(
                ErrorCode::NotFound,
                ErrorClass::Http,
                format!("repository not found: {shown} answered 404"),
            ));
        }
        if status != StatusCode::OK {
            return Err(http_error(url, status, "an unexpected status"));
        }
        let got = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !got.starts_with(content_type) {
            return Err(net_error(&format!(
                "http(s): {shown} is not a smart-HTTP git server (content type `{got}`, wanted `{content_type}`)"
            )));
        }
        Ok(())
    }
}

/// Where a redirect from `url` (an advertisement's URL) to `location` leads, when it may be
/// followed: the same origin ([`crate::origin::follow`]) and the advertisement of a repository
/// (`…/info/refs?service=git-upload-pack`, no fragment).
fn redirect(url: &str, location: &str) -> Result<String, String> {
    let next = crate::origin::follow(url, location).map_err(|r| r.to_string())?;
    if !next.path().ends_with("/info/refs")
        || next.query() != Some("service=git-upload-pack")
        || next.fragment().is_some()
    {
        return Err("it is not a repository's advertisement".into());
    }
    Ok(next.to_string())
}

/// One request's stream: a POST collects libgit2's writes as its body and is sent at the first
/// read; the answer is then read as it arrives, under the fetch's limits.
struct HttpStream {
    /// Set until the POST is sent.
    client: Option<Client>,
    url: String,
    body: Vec<u8>,
    reader: Option<ureq::BodyReader<'static>>,
    watch: Watch,
    meter: Meter,
}

impl HttpStream {
    /// The advertisement's answer.
    fn reading(response: Answer, limits: Limits) -> HttpStream {
        HttpStream {
            client: None,
            url: String::new(),
            body: Vec::new(),
            reader: Some(response.into_body().into_reader()),
            watch: Watch::new(limits),
            meter: Meter::advertisement(limits.sizes, true),
        }
    }
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.is_none() {
            let client = self.client.take().ok_or_else(|| {
                transport::fail(net_error("http(s): the answer ended in an error already"))
            })?;
            let response = client
                .send(&self.url, Some(&self.body))
                .and_then(|r| {
                    client.check(&self.url, &r, "application/x-git-upload-pack-result")?;
                    Ok(r)
                })
                .map_err(transport::fail)?;
            self.body = Vec::new();
            self.reader = Some(response.into_body().into_reader());
            // The answer's first byte is not the remote being slow: start the window now.
            self.watch = Watch::new(self.watch_limits());
        }
        let result = self
            .watch
            .before_read()
            .and_then(|_| match self.reader.as_mut() {
                Some(r) => r.read(buf).map_err(timed_out),
                None => Ok(0),
            });
        let counted = self.watch.after_read(result).and_then(|n| {
            self.meter
                .count(&buf[..n])
                .map(|()| n)
                .map_err(transport::too_large)
        });
        if counted.is_err() {
            // A failed answer is not drained on drop (that could wait out another stall): its
            // connection closes instead of going back to the pool.
            self.reader = None;
        }
        counted.map_err(as_failure)
    }
}

impl HttpStream {
    fn watch_limits(&self) -> Limits {
        self.watch.limits()
    }
}

/// What is read of an answer libgit2 stopped reading (its last flush packet comes before the end
/// of the body: the chunked encoding's last chunk, gzip's trailer), so the connection goes back
/// to the pool; more than this and the connection is closed instead.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// How long dropping a stream waits for that rest. It is normally on its way with the last
/// packet (microseconds); a server that pauses there gets the rest read on a thread of its own,
/// so the fetch never waits on it (that connection then comes back to the pool late, or not).
const DRAIN_WAIT: Duration = Duration::from_millis(50);

impl Drop for HttpStream {
    fn drop(&mut self) {
        // ureq returns a connection to its pool when its answer has been read to the end.
        if let Some(reader) = self.reader.take() {
            let (done, finished) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("http-drain".into())
                .spawn(move || {
                    let _ = io::copy(&mut reader.take(DRAIN_LIMIT), &mut io::sink());
                    let _ = done.send(());
                });
            if spawned.is_ok() {
                let _ = finished.recv_timeout(DRAIN_WAIT);
            }
        }
    }
}

impl Write for HttpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.client.is_none() {
            return Err(io::Error::other("http(s): the request was sent already"));
        }
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_credentials_out_of_the_url() {
        let e = Endpoint::of("hm-https://u:p%40ss@Git.Example.org:8443/a/r.git/").unwrap();
        assert_eq!(e.base, "https://Git.Example.org:8443/a/r.git");
        assert_eq!(e.host, "git.example.org");
        assert_eq!(e.userinfo, Some(("u".into(), "p@ss".into())));
        let e = Endpoint::of("hm-http://h/r").unwrap();
        assert_eq!(
            (e.scheme, e.base.as_str(), e.userinfo),
            (Scheme::Http, "http://h/r", None)
        );
        assert!(Endpoint::of("hm-ssh://h/r").is_err());
    }

    #[test]
    fn the_token_becomes_a_basic_login() {
        let mut repo = crate::config::tests_support::repo("r", "https://h/r.git");
        repo.auth.token = Some(crate::config::Credential::inline("tok"));
        let e = Endpoint::of("hm-https://h/r.git").unwrap();
        // base64("x-access-token:tok")
        assert_eq!(
            authorization(&e, Some(&repo)).as_deref(),
            Some("Basic eC1hY2Nlc3MtdG9rZW46dG9r")
        );
        let with_url = Endpoint::of("hm-https://a:b@h/r.git").unwrap();
        assert_eq!(
            authorization(&with_url, Some(&repo)).as_deref(),
            Some("Basic YTpi")
        );
        assert_eq!(authorization(&e, None), None);
        let user_only = Endpoint::of("hm-https://ghp_x@h/r.git").unwrap();
        // base64("ghp_x:")
        assert_eq!(
            authorization(&user_only, None).as_deref(),
            Some("Basic Z2hwX3g6")
        );
        assert!(authorization(&user_only, Some(&repo)).is_some_and(|a| a.ends_with("G9r")));
    }

    #[test]
    fn redirects_stay_on_the_same_origin_and_on_an_advertisement() {
        let from = "https://h:1/r.git/info/refs?service=git-upload-pack";
        assert_eq!(
            redirect(from, "/s/r.git/info/refs?service=git-upload-pack").as_deref(),
            Ok("https://h:1/s/r.git/info/refs?service=git-upload-pack")
        );
        assert_eq!(
            redirect(from, "../../s.git/info/refs?service=git-upload-pack").as_deref(),
            Ok("https://h:1/s.git/info/refs?service=git-upload-pack")
        );
        for (location, why) in [
            (
                "https://h:2/r.git/info/refs?service=git-upload-pack",
                "another host",
            ),
            (
                "https://x?@h:1/r.git/info/refs?service=git-upload-pack",
                "another host",
            ),
            (
                "https://x#@h:1/r.git/info/refs?service=git-upload-pack",
                "another host",
            ),
            (
                "https://u:p@h:1/r.git/info/refs?service=git-upload-pack",
                "user name",
            ),
            (
                "http://h:1/r.git/info/refs?service=git-upload-pack",
                "scheme",
            ),
            ("https://h:1/elsewhere", "advertisement"),
            (
                "https://h:1/r.git/info/refs?service=git-receive-pack",
                "advertisement",
            ),
            (
                "https://h:1/r.git/info/refs?service=git-upload-pack#x",
                "advertisement",
            ),
        ] {
            let e = redirect(from, location).unwrap_err();
            assert!(e.contains(why), "{location}: {e}");
        }
    }
}
