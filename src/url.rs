//! Remote URLs: the forms operators write (scp-like `git@host:ns/r.git`, `ssh://`, `https://`,
//! `http://`, `git://`, `file://`, a local path), their credential-free display form, and the
//! normalised key used to match a payload's repository URL against a configured one; and
//! [`RemoteUrl`], a configured URL with all of these worked out once. Pure.

use std::fmt;
use std::ops::Deref;

/// The transport a remote URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ssh,
    Https,
    Http,
    Git,
    File,
}

/// A remote URL split into the parts hookmirror cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub scheme: Scheme,
    /// User name from the URL (`git` in `git@host:…`), if any.
    pub user: Option<String>,
    /// True when the URL carries a password or token (`user:token@`).
    pub has_password: bool,
    /// Host, lower-cased; empty for local paths.
    pub host: String,
    pub port: Option<u16>,
    /// The path on the host, as written (for local paths, the path itself).
    pub path: String,
}

/// Splits `url` into its parts. `None` when it is none of the supported forms (for example
/// `ext::` transports, which run arbitrary commands and are never accepted).
pub fn parse(url: &str) -> Option<Parsed> {
    let url = url.trim();
    if url.is_empty() || url.contains(char::is_control) {
        return None;
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            "git" => Scheme::Git,
            "file" => Scheme::File,
            _ => return None,
        };
        if scheme == Scheme::File {
            return Some(Parsed {
                scheme,
                user: None,
                has_password: false,
                host: String::new(),
                port: None,
                path: rest.to_string(),
            });
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, has_password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, _)) => (Some(name.to_string()), true),
                None => (Some(u.to_string()), false),
            },
            None => (None, false),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return None;
        }
        return Some(Parsed {
            scheme,
            user,
            has_password,
            host,
            port,
            path: path.to_string(),
        });
    }
    if url.contains("::") {
        // `ext::cmd`, `fd::` and other remote helpers: refused.
        return None;
    }
    // scp-like: [user@]host:path, where the part before ':' has no '/'.
    if let Some((before, path)) = url.split_once(':')
        && !before.contains('/')
        && !before.is_empty()
        && !path.is_empty()
    {
        let (user, host) = match before.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, before),
        };
        if host.is_empty() {
            return None;
        }
        return Some(Parsed {
            scheme: Scheme::Ssh,
            user,
            has_password: false,
            host: host.to_ascii_lowercase(),
            port: None,
            path: path.to_string(),
        });
    }
    Some(Parsed {
        scheme: Scheme::File,
        user: None,
        has_password: false,
        host: String::new(),
        port: None,
        path: url.to_string(),
    })
}

fn split_host_port(hostport: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => Some(p.parse().ok()?),
            _ => None,
        };
        return Some((h.to_ascii_lowercase(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => Some((h.to_ascii_lowercase(), Some(p.parse().ok()?))),
        Some((h, _)) => Some((h.to_ascii_lowercase(), None)),
        None => Some((hostport.to_ascii_lowercase(), None)),
    }
}

/// How userinfo is shown: a password or token becomes `***`. Over http(s) a user name alone is
/// hidden too, since forges take a token there (`https://TOKEN@github.com/…`); over ssh it is
/// the login (`git@`) and stays.
fn shown_userinfo(scheme: &str, userinfo: &str) -> String {
    match userinfo.split_once(':') {
        Some((name, _)) => format!("{name}:***"),
        None if is_http(scheme) => "***".to_string(),
        None => userinfo.to_string(),
    }
}

fn is_http(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// `url` with any password or token removed (`https://user:tok@h/x` → `https://user:***@h/x`,
/// `https://TOKEN@h/x` → `https://***@h/x`). Safe to log and to show in the API.
pub fn redact(url: &str) -> String {
    redact_in_text(url)
}

/// A receiver's URL whose path and query may themselves be the secret (Slack-style
/// `https://hooks.example.com/services/T0/B0/XXXX`, `?token=…`): only scheme, host and port
/// stay, the rest is `/***` (credentials in the userinfo as [`redact`] shows them).
pub fn redact_endpoint(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = redact(&format!("{scheme}://{}", &rest[..end]));
    match &rest[end..] {
        "" | "/" => format!("{origin}{}", &rest[end..]),
        _ => format!("{origin}/***"),
    }
}

/// `url` with no credentials at all, for `.git/config`: http(s) URLs lose their userinfo, other
/// schemes their password.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) if is_http(scheme) => format!("{scheme}://{host}{}", &rest[end..]),
        Some((userinfo, host)) => {
            let name = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{name}@{host}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

/// Redacts credentials (see [`redact`]) in every URL inside `text` (for error messages that
/// quote a URL back, such as libgit2's).
pub fn redact_in_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let scheme = head[..i]
            .rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '+')
            .next()
            .unwrap_or("");
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                out.push_str(&shown_userinfo(scheme, userinfo));
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The key two URLs of the same repository share: host and path, lower-cased (forges treat
/// owner and repository names case-insensitively and send their canonical case), without a
/// leading `/`, a trailing `/` or `.git`. Scheme, user, credentials and port are ignored, so the
/// https, ssh, scp-like and git:// forms a forge sends all map to one key. Local paths keep
/// their case.
pub fn match_key(url: &str) -> Option<String> {
    parse(url).map(|p| key_of(&p))
}

/// [`match_key`] of a parsed URL.
fn key_of(p: &Parsed) -> String {
    let mut path = p.path.as_str();
    if p.scheme != Scheme::File {
        path = path.trim_start_matches('/');
    }
    path = path.trim_end_matches('/');
    path = path.strip_suffix(".git").unwrap_or(path);
    path = path.trim_end_matches('/');
    if p.scheme == Scheme::File {
        return format!("file:{path}");
    }
    format!("{}/{}", p.host, path.to_lowercase())
}

/// A repository's remote URL, checked and split once, when the config is validated: the text
/// as configured (`${VAR}`s expanded, a relative path made absolute), its [`Parsed`] parts, its
/// [`match_key`] and its [`redact`]ed form. It derefs to the text, so it goes wherever a `&str`
/// URL does; `Display` and `Debug` show the redacted form, never a password or token.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    text: String,
    parsed: Parsed,
    match_key: String,
    redacted: String,
}

impl RemoteUrl {
    /// `None` when `text` is none of the forms [`parse`] accepts.
    pub fn parse(text: impl Into<String>) -> Option<RemoteUrl> {
        let text = text.into();
        let parsed = parse(&text)?;
        Some(RemoteUrl {
            match_key: key_of(&parsed),
            redacted: redact(&text),
            parsed,
            text,
        })
    }

    /// Stands in for a missing or refused URL while validation goes on collecting problems. A
    /// config holding one is refused, so no repository ever has it.
    pub(crate) fn missing() -> RemoteUrl {
        let parsed = Parsed {
            scheme: Scheme::File,
            user: None,
            has_password: false,
            host: String::new(),
            port: None,
            path: String::new(),
        };
        RemoteUrl {
            text: String::new(),
            match_key: key_of(&parsed),
            redacted: String::new(),
            parsed,
        }
    }

    /// The URL as configured, credentials and all: for git, never for a log.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn parsed(&self) -> &Parsed {
        &self.parsed
    }

    pub fn scheme(&self) -> Scheme {
        self.parsed.scheme
    }

    /// See [`match_key`].
    pub fn match_key(&self) -> &str {
        &self.match_key
    }

    /// See [`redact`]: safe to log and to show in the API.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl Deref for RemoteUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for RemoteUrl {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// The redacted form.
impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// The redacted form, quoted: `RemoteUrl("https://***@h/x.git")`.
impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RemoteUrl").field(&self.redacted).finish()
    }
}

impl PartialEq<str> for RemoteUrl {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for RemoteUrl {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl PartialEq<String> for RemoteUrl {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

/// Checks a proxy URL as `auth.proxy` takes it: `http://[user:pass@]host[:port]` (the proxy is
/// spoken to in plain HTTP, `CONNECT` for https remotes). `Err` says what is wrong.
pub fn check_proxy(proxy: &str) -> Result<(), String> {
    let shown = redact(proxy);
    let Some((scheme, rest)) = proxy.split_once("://") else {
        return Err(format!(
            "`{shown}` is not a proxy URL: write http://host:port"
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "`{shown}`: only http:// proxies are supported (https remotes go through them with CONNECT)"
        ));
    }
    let authority = rest.trim_end_matches('/');
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match split_host_port(hostport) {
        Some((host, _)) if !host.is_empty() && !authority.contains('/') => Ok(()),
        _ => Err(format!(
            "`{shown}` is not a proxy URL: write http://host:port"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_shows_only_its_origin() {
        let cases = [
            (
                "https://hooks.example.com/services/T000/B000/XXXXSECRET",
                "https://hooks.example.com/***",
            ),
            (
                "https://h.example:8443/x?token=SECRET",
                "https://h.example:8443/***",
            ),
            ("https://h.example?token=SECRET", "https://h.example/***"),
            ("https://h.example#SECRET", "https://h.example/***"),
            (
                "https://user:SECRET@h.example/p",
                "https://user:***@h.example/***",
            ),
            ("https://h.example/", "https://h.example/"),
            ("https://h.example", "https://h.example"),
            ("not a url SECRET", "***"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_endpoint(url), shown, "{url}");
        }
    }

    #[test]
    fn parses_each_form() {
        let p = parse("git@github.com:ns/repo.git").unwrap();
        assert_eq!(
            (p.scheme, p.host.as_str(), p.path.as_str()),
            (Scheme::Ssh, "github.com", "ns/repo.git")
        );
        assert_eq!(p.user.as_deref(), Some("git"));
        let p = parse("ssh://git@Example.COM:2222/ns/repo.git").unwrap();
        assert_eq!(
            (p.scheme, p.host.as_str(), p.port),
            (Scheme::Ssh, "example.com", Some(2222))
        );
        let p = parse("https://nouser:glpat-x@gitlab.com/g/r.git").unwrap();
        assert!(p.has_password);
        assert_eq!(p.user.as_deref(), Some("nouser"));
        assert_eq!(
            parse("git://127.0.0.1:9418/r.git").unwrap().scheme,
            Scheme::Git
        );
        assert_eq!(parse("file:///srv/r.git").unwrap().path, "/srv/r.git");
        assert_eq!(parse("/srv/r.git").unwrap().scheme, Scheme::File);
        assert_eq!(parse("../r").unwrap().scheme, Scheme::File);
        assert!(parse("ext::sh -c evil").is_none());
        assert!(parse("foo://x/y").is_none());
        assert!(parse("https://[::1]:8443/r.git").unwrap().port == Some(8443));
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("https://nouser:glpat-secret@gitlab.com/g/r.git"),
            "https://nouser:***@gitlab.com/g/r.git"
        );
        assert_eq!(redact("git@github.com:ns/r.git"), "git@github.com:ns/r.git");
        assert_eq!(
            redact("https://gitlab.com/g/r.git"),
            "https://gitlab.com/g/r.git"
        );
        let msg = "failed to fetch 'https://u:tok123@h.example/x.git': 401";
        let red = redact_in_text(msg);
        assert!(!red.contains("tok123"), "{red}");
        assert!(red.contains("https://u:***@h.example/x.git"));
    }

    #[test]
    fn remote_url_keeps_text_parts_key_and_redacted_form() {
        let text = "https://nouser:glpat-secret@GitLab.com/G/r.git";
        let url = RemoteUrl::parse(text).unwrap();
        assert_eq!(url.as_str(), text);
        assert_eq!(&*url, text, "derefs to the text");
        assert_eq!(url, text);
        assert_eq!(url, text.to_string());
        assert_eq!(url.scheme(), Scheme::Https);
        assert_eq!(url.parsed(), &parse(text).unwrap());
        assert_eq!(url.match_key(), match_key(text).unwrap());
        assert_eq!(url.match_key(), "gitlab.com/g/r");
        assert_eq!(url.redacted(), "https://nouser:***@GitLab.com/G/r.git");
        assert_eq!(redact(&url), url.redacted(), "goes where a &str does");
        assert_eq!(url, RemoteUrl::parse(text).unwrap());
        assert_ne!(url, RemoteUrl::parse("https://gitlab.com/G/r.git").unwrap());

        let local = RemoteUrl::parse("/srv/r.git").unwrap();
        assert_eq!(
            (local.scheme(), local.match_key(), local.redacted()),
            (Scheme::File, "file:/srv/r", "/srv/r.git")
        );
        assert_eq!(RemoteUrl::parse("ext::sh -c evil"), None);
        assert_eq!(RemoteUrl::parse(""), None);
    }

    #[test]
    fn remote_url_never_shows_a_secret() {
        for text in [
            "https://nouser:glpat-secret@gitlab.com/g/r.git",
            "https://glpat-secret@gitlab.com/g/r.git",
            "ssh://git:glpat-secret@h.example/r.git",
        ] {
            let url = RemoteUrl::parse(text).unwrap();
            for shown in [
                format!("{url}"),
                format!("{url:?}"),
                format!("{url:#?}"),
                format!("{:?}", Some(&url)),
            ] {
                assert!(!shown.contains("glpat-secret"), "{shown}");
                assert!(shown.contains("***"), "{shown}");
            }
        }
        let url = RemoteUrl::parse("git@github.com:ns/r.git").unwrap();
        assert_eq!(
            format!("{url:?}"),
            r#"RemoteUrl("git@github.com:ns/r.git")"#
        );
        assert_eq!(url.to_string(), "git@github.com:ns/r.git");
    }

    #[test]
    fn match_keys_agree_across_forms() {
        let forms = [
            "https://github.com/Octo/Hello.git",
            "https://GitHub.com/Octo/Hello",
            "git@github.com:Octo/Hello.git",
            "ssh://git@github.com/Octo/Hello.git",
            "ssh://git@github.com:22/Octo/Hello.git",
            "git://github.com/Octo/Hello.git",
            "https://user:token@github.com/Octo/Hello.git/",
        ];
        for f in forms {
            assert_eq!(
                match_key(f).as_deref(),
                Some("github.com/octo/hello"),
                "{f}"
            );
        }
        assert_ne!(
            match_key("https://github.com/octo/other"),
            match_key(forms[0])
        );
        assert_ne!(
            match_key("https://evil.com/Octo/Hello"),
            match_key(forms[0])
        );
    }

    #[test]
    fn proxies_are_plain_http_urls() {
        for ok in [
            "http://127.0.0.1:3128",
            "http://proxy.corp",
            "http://u:p@[::1]:8080/",
        ] {
            assert!(check_proxy(ok).is_ok(), "{ok}");
        }
        for bad in [
            "proxy:3128",
            "socks5://h:1080",
            "https://h:1",
            "http://:1",
            "http://h:x",
            "http://h/p",
        ] {
            assert!(check_proxy(bad).is_err(), "{bad}");
        }
        let e = check_proxy("ftp://u:secret@h").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
