//! Whether a URL a server pointed to (a redirect's `Location`; later an LFS `href`) belongs to the
//! origin that was configured, so that the repository's credentials may go with a request there.
//! Pure.
//!
//! Both URLs are parsed by one URL parser (the `url` crate, WHATWG rules): reading an authority as
//! text ("before the first `/`, after the last `@`") is what let `http://B?@A/…` and `http://B#@A/…`
//! pass for A, since `?` and `#` end an authority. An origin is the scheme, the host (as the
//! parser normalises it: lower case, IDNA, IPv4 forms) and the port, a scheme's default port
//! written or not. A `Location` that carries userinfo is refused whatever its host: a server has
//! no business choosing the credentials.

use std::fmt;

use ::url::Url;

/// Why a URL may not be followed with the configured origin's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a URL, or a relative one that does not resolve against the base.
    Malformed,
    /// The `Location` names a user or password of its own.
    Userinfo,
    /// Another scheme (`https` → `http` would send the credentials in clear).
    Scheme { from: String, to: String },
    /// Another host or port.
    Origin,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Malformed => f.write_str("not a URL"),
            Refused::Userinfo => f.write_str("it carries a user name or password"),
            Refused::Scheme { from, to } => write!(f, "it changes the scheme from {from} to {to}"),
            Refused::Origin => f.write_str("it is another host or port"),
        }
    }
}

/// `location` (absolute, scheme-relative `//host/…`, host-absolute `/…` or relative) resolved
/// against `base`, when it stays on `base`'s origin and names no credentials of its own.
pub fn follow(base: &str, location: &str) -> Result<Url, Refused> {
    let base = Url::parse(base).map_err(|_| Refused::Malformed)?;
    let next = base.join(location.trim()).map_err(|_| Refused::Malformed)?;
    // A relative reference keeps the base's authority, userinfo included: userinfo that differs
    // from the base's came from the Location.
    if (next.username(), next.password()) != (base.username(), base.password())
        || has_userinfo(location)
    {
        return Err(Refused::Userinfo);
    }
    check(&base, &next)?;
    Ok(next)
}

/// Whether the absolute URLs `a` and `b` share scheme, host and port (default ports normalised).
pub fn same_origin(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => check(&a, &b).is_ok(),
        _ => false,
    }
}

fn check(from: &Url, to: &Url) -> Result<(), Refused> {
    if from.scheme() != to.scheme() {
        return Err(Refused::Scheme {
            from: from.scheme().to_string(),
            to: to.scheme().to_string(),
        });
    }
    let host = |u: &Url| u.host().map(|h| h.to_owned());
    if host(from).is_none()
        || host(from) != host(to)
        || from.port_or_known_default() != to.port_or_known_default()
    {
        return Err(Refused::Origin);
    }
    Ok(())
}

/// Whether a Location's own authority (after `scheme://` or a leading `//`) holds an `@` before
/// the authority ends — as the URL parser reads it, so `http://b?@a/` has none.
fn has_userinfo(location: &str) -> bool {
    let t = location.trim();
    let scheme_only = |s: &str| match s.strip_suffix(':') {
        Some(name) => name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)),
        None => s.is_empty(),
    };
    let after = match t.find("//") {
        Some(i) if scheme_only(&t[..i]) => &t[i + 2..],
        _ => return false,
    };
    let end = after.find(['/', '?', '#', '\\']).unwrap_or(after.len());
    after[..end].contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "http://127.0.0.1:8001/q/r.git/info/refs?service=git-upload-pack";

    #[test]
    fn the_same_origin_is_followed_relative_or_absolute() {
        let ok = |l: &str| follow(FROM, l).map(|u| u.to_string());
        assert_eq!(
            ok("/s/r.git/info/refs?service=git-upload-pack").as_deref(),
            Ok("http://127.0.0.1:8001/s/r.git/info/refs?service=git-upload-pack")
        );
        assert_eq!(
            ok("other").as_deref(),
            Ok("http://127.0.0.1:8001/q/r.git/info/other")
        );
        assert_eq!(
            ok("../../s.git/info/refs").as_deref(),
            Ok("http://127.0.0.1:8001/q/s.git/info/refs")
        );
        assert!(ok("HTTP://127.0.0.1:8001/x").is_ok(), "scheme case");
        assert!(ok("//127.0.0.1:8001/x").is_ok(), "scheme-relative");
        // The default port, written or not, is the same port.
        assert!(follow("https://Git.Example.org/r", "https://git.example.org:443/s").is_ok());
        assert!(follow("http://h/r", "http://h:80/s").is_ok());
        assert!(same_origin("https://h/a", "https://H:443/b?x#y"));
    }

    #[test]
    fn another_port_or_host_is_refused_however_it_is_hidden() {
        for l in [
            "http://127.0.0.1:8002/q/r.git/info/refs?service=git-upload-pack",
            "http://127.0.0.1:8002?@127.0.0.1:8001/q/r.git/info/refs?service=git-upload-pack",
            "http://127.0.0.1:8002#@127.0.0.1:8001/q/r.git/info/refs",
            "http://127.0.0.1:8002\\@127.0.0.1:8001/q/r.git",
            "//127.0.0.1:8002/q/r.git/info/refs",
            "http://evil.example/q/r.git",
            "http://127.0.0.2:8001/q/r.git",
        ] {
            assert_eq!(follow(FROM, l), Err(Refused::Origin), "{l}");
        }
        assert!(!same_origin(
            "http://127.0.0.1:8001/",
            "http://127.0.0.1:8002?@127.0.0.1:8001/"
        ));
    }

    #[test]
    fn userinfo_in_the_location_is_refused_even_on_the_same_host() {
        for l in [
            "http://u:p@127.0.0.1:8001/q/r.git/info/refs",
            "http://u@127.0.0.1:8001/q/r.git/info/refs",
            "http://127.0.0.1:8002@127.0.0.1:8001/q/r.git",
            "//x@127.0.0.1:8001/q",
        ] {
            assert_eq!(follow(FROM, l), Err(Refused::Userinfo), "{l}");
        }
    }

    #[test]
    fn a_scheme_change_is_refused_both_ways() {
        assert_eq!(
            follow("https://h/r.git/info/refs", "http://h/r.git/info/refs"),
            Err(Refused::Scheme {
                from: "https".into(),
                to: "http".into()
            })
        );
        assert!(matches!(
            follow(FROM, "https://127.0.0.1:8001/q/r.git/info/refs"),
            Err(Refused::Scheme { .. })
        ));
        assert!(matches!(
            follow(FROM, "file:///etc/passwd"),
            Err(Refused::Scheme { .. })
        ));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(follow("not a url", "/x"), Err(Refused::Malformed));
        assert_eq!(follow(FROM, "http://[::1"), Err(Refused::Malformed));
        assert!(!same_origin("x", "x"));
    }
}
