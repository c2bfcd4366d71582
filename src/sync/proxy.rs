//! Which proxy an HTTP(S) fetch goes through: the repository's `auth.proxy`, else the
//! environment as curl (and so the git CLI) reads it. Pure: the environment is passed in.
//!
//! curl's rules: `https_proxy`/`HTTPS_PROXY` for https URLs, `http_proxy` for http ones
//! (upper-case `HTTP_PROXY` is ignored by curl on purpose — a CGI program gets it from a
//! request header — but git users set it, so it is read after the lower-case one), `all_proxy`
//! last; `no_proxy`/`NO_PROXY` lists hosts that go direct: `*` for all, a name matching itself
//! and its subdomains (a leading `.` is ignored), an IP address exactly. `NO_PROXY` applies to
//! `auth.proxy` too, so one setting can exempt internal forges from both.

use crate::url::Scheme;

/// The proxy URL to use for `host` over `scheme`, or `None` to connect directly.
pub fn choose(
    scheme: Scheme,
    host: &str,
    configured: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let var = |names: &[&str]| {
        names
            .iter()
            .filter_map(|n| env(n))
            .find(|v| !v.trim().is_empty())
    };
    let no_proxy = var(&["no_proxy", "NO_PROXY"]).unwrap_or_default();
    if bypassed(host, &no_proxy) {
        return None;
    }
    if let Some(p) = configured {
        return Some(p.to_string());
    }
    let found = match scheme {
        Scheme::Https => var(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
        Scheme::Http => var(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
        _ => None,
    }?;
    let found = found.trim();
    // curl takes `host:port` without a scheme as an http proxy.
    Some(if found.contains("://") {
        found.to_string()
    } else {
        format!("http://{found}")
    })
}

/// Whether `no_proxy` (comma or space separated) exempts `host`.
fn bypassed(host: &str, no_proxy: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            // An entry may carry a port (`host:8080`); curl matches the host part.
            let entry = match entry.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
                _ => entry,
            };
            let entry = entry.trim_start_matches('.').to_ascii_lowercase();
            host == entry
                || host
                    .strip_suffix(entry.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_scheme_picks_the_variable() {
        let e = env(&[
            ("https_proxy", "http://s:1"),
            ("http_proxy", "h:2"),
            ("ALL_PROXY", "http://a:3"),
        ]);
        assert_eq!(
            choose(Scheme::Https, "x.org", None, &e).as_deref(),
            Some("http://s:1")
        );
        assert_eq!(
            choose(Scheme::Http, "x.org", None, &e).as_deref(),
            Some("http://h:2")
        );
        let only_all = env(&[("ALL_PROXY", "http://a:3")]);
        assert_eq!(
            choose(Scheme::Https, "x", None, &only_all).as_deref(),
            Some("http://a:3")
        );
        assert_eq!(choose(Scheme::Https, "x", None, env(&[])), None);
    }

    #[test]
    fn the_configured_proxy_wins_over_the_environment() {
        let e = env(&[("HTTPS_PROXY", "http://env:1")]);
        assert_eq!(
            choose(Scheme::Https, "x", Some("http://cfg:2"), &e).as_deref(),
            Some("http://cfg:2")
        );
    }

    #[test]
    fn no_proxy_exempts_hosts_domains_and_everything() {
        let e = env(&[
            ("HTTPS_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "internal.example, .corp.test,10.0.0.1,git.local:8443",
            ),
        ]);
        for direct in [
            "internal.example",
            "a.internal.example",
            "corp.test",
            "x.corp.test",
            "10.0.0.1",
            "git.local",
        ] {
            assert_eq!(choose(Scheme::Https, direct, None, &e), None, "{direct}");
            assert_eq!(
                choose(Scheme::Https, direct, Some("http://c:1"), &e),
                None,
                "{direct}"
            );
        }
        for proxied in ["example", "notinternal.example", "10.0.0.10", "github.com"] {
            assert!(
                choose(Scheme::Https, proxied, None, &e).is_some(),
                "{proxied}"
            );
        }
        let all = env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(choose(Scheme::Https, "github.com", None, &all), None);
    }

    #[test]
    fn other_schemes_never_use_a_proxy_from_the_environment() {
        let e = env(&[("ALL_PROXY", "http://a:3")]);
        assert_eq!(choose(Scheme::Ssh, "h", None, &e), None);
    }
}
