//! Whether a webhook delivery is authentic, and what it says: verification over the raw bytes
//! with the secrets its route names, then the parse into an [`Event`]. Pure and synchronous, so
//! the extractor (`delivery.rs`) runs it inline or, for a large body, on a blocking thread.
//!
//! What an unauthenticated request may cost is bounded here (ARCHITECTURE.md, Invariants): a
//! repository's path and `/hooks` with `hooks.secret` verify before parsing; `/hooks` without it
//! reads the payload once to learn whose secrets to try, tries each distinct one once, and
//! answers every refusal alike.

use axum::http::HeaderMap;

use crate::config::{Config, Hooks, Repo};
use crate::secret::Secret;
use crate::url::match_key;
use crate::webhook::{self, Event, Provider, VerifyOptions};

/// Where a delivery came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A repository's own path: index into `config.repos`.
    Repo(usize),
    /// The shared `/hooks` endpoint.
    Shared,
}

impl Route {
    /// The route of a request path: `/hooks` (with or without the slash), or a repository's
    /// own path (one lookup whatever the number of repositories); `None`: no webhook here.
    pub fn of(config: &Config, path: &str) -> Option<Route> {
        if path == "/hooks" || path == "/hooks/" {
            return Some(Route::Shared);
        }
        config.repo_at_path(path).map(Route::Repo)
    }
}

/// An authentic delivery, parsed: the repositories it reached (indices into `config.repos`).
#[derive(Debug)]
pub struct Authentic {
    pub repos: Vec<usize>,
    pub provider: Provider,
    pub event: Event,
}

/// Why a delivery is not authentic, or not understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No secret verified it (or it carries no forge signature headers); answered without detail.
    Unauthorized,
    /// Authentic, but not understood.
    Malformed(webhook::ParseError),
    /// No secret to check and no forge header to tell the format.
    UnknownForge,
    /// The repository of the path left the config meanwhile.
    NotFound,
}

/// Verifies the delivery (over the raw bytes, before anything else when the route names its
/// secrets) and parses it. `detected`: the forge the headers name. Pure and synchronous: runs
/// inline or on a blocking thread.
pub fn authenticate(
    config: &Config,
    route: Route,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refused> {
    match route {
        Route::Repo(i) => one_repo(config, i, headers, body, now_unix, detected),
        Route::Shared => match &config.hooks {
            Some(hooks) => shared_secret(config, hooks, headers, body, now_unix, detected),
            None => named_repos(config, headers, body, now_unix, detected),
        },
    }
}

/// Parses an authentic delivery: 400 when it cannot be understood.
fn parsed(
    repos: Vec<usize>,
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Authentic, Refused> {
    match webhook::parse(provider, headers, body) {
        Ok(event) => Ok(Authentic {
            repos,
            provider,
            event,
        }),
        Err(e) => Err(Refused::Malformed(e)),
    }
}

/// A repo's own path: verify with its secrets (its pinned provider only, if it pins one).
fn one_repo(
    config: &Config,
    i: usize,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refused> {
    let Some(repo) = config.repos.get(i) else {
        return Err(Refused::NotFound);
    };
    let Some(provider) = repo.provider.or(detected) else {
        return Err(if repo.secrets.is_empty() {
            Refused::UnknownForge
        } else {
            tracing::warn!(repo = %repo.name, "webhook refused: no forge signature headers");
            Refused::Unauthorized
        });
    };
    if !repo.secrets.is_empty() {
        let opts = VerifyOptions {
            allow_sha1: repo.allow_sha1,
            now_unix,
        };
        if let Err(e) = webhook::verify(provider, headers, body, &repo.secrets, &opts) {
            tracing::warn!(repo = %repo.name, provider = provider.as_str(), reason = %e, "webhook refused");
            return Err(Refused::Unauthorized);
        }
    }
    parsed(vec![i], provider, headers, body)
}

/// `/hooks` with `hooks.secret`: one MAC per configured secret, whatever the repo count. The
/// delivery reaches the repositories its payload names (every one when it names none: the ref
/// decides).
fn shared_secret(
    config: &Config,
    hooks: &Hooks,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refused> {
    let provider = hooks.provider.or(detected);
    let Some(provider) = provider.filter(|p| hooks.provider.is_none_or(|h| h == *p)) else {
        tracing::warn!("webhook on /hooks refused: no forge signature headers");
        return Err(Refused::Unauthorized);
    };
    let opts = VerifyOptions {
        allow_sha1: hooks.allow_sha1,
        now_unix,
    };
    if let Err(e) = webhook::verify(provider, headers, body, &hooks.secrets, &opts) {
        tracing::warn!(provider = provider.as_str(), reason = %e, "webhook on /hooks refused");
        return Err(Refused::Unauthorized);
    }
    let mut authentic = parsed(Vec::new(), provider, headers, body)?;
    let accepts = |r: &Repo| r.provider.is_none_or(|p| p == provider);
    authentic.repos = match &authentic.event {
        Event::Push(push) if !push.repo_urls.is_empty() => named(config, &push.repo_urls, accepts),
        _ => (0..config.repos.len())
            .filter(|&i| accepts(&config.repos[i]))
            .collect(),
    };
    Ok(authentic)
}

/// `/hooks` without `hooks.secret`: the delivery must verify with the secret of a repository its
/// payload names. The payload is read first — one bounded pass that keeps only the repository
/// URLs and refs (the same reader the authentic path uses) and starts nothing — to find those
/// repositories by their URL's match key; only their secrets are tried, each distinct one once.
/// So a request costs one read of the body plus a MAC per distinct secret among the repositories
/// sharing the URL it names, never one per configured repository. Unauthenticated, nothing of
/// what was read is answered: every refusal is the same 401.
fn named_repos(
    config: &Config,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    detected: Option<Provider>,
) -> Result<Authentic, Refused> {
    let Some(provider) = detected else {
        tracing::warn!("webhook on /hooks refused: no forge signature headers");
        return Err(Refused::Unauthorized);
    };
    let refused = |why: &str| {
        tracing::warn!(
            provider = provider.as_str(),
            "webhook on /hooks refused: {why}"
        );
        Err(Refused::Unauthorized)
    };
    let event = webhook::parse(provider, headers, body);
    let urls = match &event {
        Ok(Event::Push(push)) => push.repo_urls.as_slice(),
        _ => &[],
    };
    let candidates = named(config, urls, |r: &Repo| {
        !r.secrets.is_empty() && r.provider.is_none_or(|p| p == provider)
    });
    let mut tried: Vec<(Vec<&Secret>, bool, bool)> = Vec::new();
    let mut verified = Vec::new();
    for &i in &candidates {
        let repo = &config.repos[i];
        let keys: Vec<&Secret> = repo.secrets.iter().map(|c| &c.value).collect();
        let known = tried
            .iter()
            .find(|(k, sha1, _)| *k == keys && *sha1 == repo.allow_sha1);
        let ok = match known {
            Some(&(_, _, ok)) => ok,
            None => {
                let opts = VerifyOptions {
                    allow_sha1: repo.allow_sha1,
                    now_unix,
                };
                let ok = webhook::verify(provider, headers, body, &keys, &opts).is_ok();
                tried.push((keys, repo.allow_sha1, ok));
                ok
            }
        };
        if ok {
            verified.push(i);
        }
    }
    if candidates.is_empty() {
        // As much work as for one named repository, so the answer's timing does not tell which
        // repository URLs are configured.
        let opts = VerifyOptions {
            allow_sha1: false,
            now_unix,
        };
        let decoy = [Secret::new(DECOY_KEY)];
        let _ = webhook::verify(provider, headers, body, &decoy, &opts);
        return refused("it names no repository that has a secret (hooks.secret verifies any)");
    }
    if verified.is_empty() {
        return refused("no secret of a repository it names verifies it");
    }
    match event {
        Ok(event) => Ok(Authentic {
            repos: verified,
            provider,
            event,
        }),
        // Only a push that parsed names URLs, so a verified delivery always parsed.
        Err(e) => Err(Refused::Malformed(e)),
    }
}

/// The key of the MAC computed when no repository is named; verifies nothing a forge signs.
const DECOY_KEY: &str = "hookmirror: no repository is named";

/// Indices of the repositories whose URL has the match key of one of `urls` and that `accepts`,
/// each once, in config order.
fn named(config: &Config, urls: &[String], accepts: impl Fn(&Repo) -> bool) -> Vec<usize> {
    let mut found: Vec<usize> = urls
        .iter()
        .filter_map(|u| match_key(u))
        .flat_map(|key| config.by_match_key.get(&key).cloned().unwrap_or_default())
        .filter(|&i| config.repos.get(i).is_some_and(&accepts))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::tests_support::config;
    use crate::webhook::test_support::{headers, hmac_sha256_hex};

    /// `n` repositories `r0`…, each following `https://h/r{i}.git` with secret `s{i}`; `r0` and
    /// `r1` follow the same URL.
    fn many(n: usize, top: &str) -> Config {
        let repos: String = (0..n)
            .map(|i| {
                let url = format!("https://h/r{}.git", i.max(1));
                format!("  - {{name: r{i}, url: '{url}', directory: /srv/r{i}, secret: s{i}}}\n")
            })
            .collect();
        config(&format!("{top}repos:\n{repos}"))
    }

    fn push(url: &str) -> Vec<u8> {
        format!(
            r#"{{"ref":"refs/heads/main","before":"{z}","after":"{a}","repository":{{"clone_url":"{url}"}}}}"#,
            z = "0".repeat(40),
            a = "a".repeat(40)
        )
        .into_bytes()
    }

    fn github(secret: &str, body: &[u8]) -> HeaderMap {
        let sig = format!("sha256={}", hmac_sha256_hex(secret, body));
        headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)])
    }

    #[test]
    fn a_path_routes_to_its_repository_among_many() {
        let c = many(300, "");
        for i in [0, 1, 150, 299] {
            assert_eq!(Route::of(&c, &format!("/hooks/r{i}")), Some(Route::Repo(i)));
        }
        assert_eq!(Route::of(&c, "/hooks/r300"), None);
        assert_eq!(Route::of(&c, "/hooks"), Some(Route::Shared));
        assert_eq!(Route::of(&c, "/hooks/"), Some(Route::Shared));
        assert_eq!(Route::of(&c, "/api/other"), None);
    }

    fn shared(config: &Config, secret: &str, body: &[u8]) -> Result<Vec<usize>, Refused> {
        let headers = github(secret, body);
        let detected = Provider::detect(&headers);
        authenticate(config, Route::Shared, &headers, body, 0, detected).map(|a| a.repos)
    }

    #[test]
    fn shared_endpoint_tries_only_the_repositories_a_payload_names() {
        let c = many(50, "");
        assert_eq!(named(&c, &["https://h/r7".into()], |_| true), [7]);
        assert_eq!(
            named(&c, &["git@h:R1.git".into(), "https://h/r1".into()], |_| {
                true
            }),
            [0, 1],
            "both repositories of the URL, each once"
        );
        let body = push("https://h/r7.git");
        assert_eq!(shared(&c, "s7", &body), Ok(vec![7]));
        // Another repository's secret does not verify for r7, even a configured one.
        assert_eq!(shared(&c, "s8", &body), Err(Refused::Unauthorized));
        // Of two repositories sharing a URL, only the one whose secret verifies.
        assert_eq!(shared(&c, "s1", &push("https://h/r1.git")), Ok(vec![1]));
        // Naming nothing configured, or not a push at all: refused like a bad signature (the
        // sender is not authenticated, so it learns nothing).
        let elsewhere = push("https://h/elsewhere.git");
        assert_eq!(shared(&c, "s7", &elsewhere), Err(Refused::Unauthorized));
        assert_eq!(shared(&c, "s7", b"not json"), Err(Refused::Unauthorized));
        let unsigned = headers(&[("X-GitHub-Event", "push")]);
        let r = authenticate(
            &c,
            Route::Shared,
            &unsigned,
            &body,
            0,
            Provider::detect(&unsigned),
        );
        assert_eq!(r.map(|a| a.repos), Err(Refused::Unauthorized));
    }

    #[test]
    fn with_hooks_secret_only_it_verifies_the_shared_endpoint() {
        let c = many(3, "hooks: {secrets: [old, org]}\n");
        let body = push("https://h/r2.git");
        assert_eq!(shared(&c, "org", &body), Ok(vec![2]));
        assert_eq!(shared(&c, "old", &body), Ok(vec![2]), "rotation");
        assert_eq!(shared(&c, "s2", &body), Err(Refused::Unauthorized));
        // Authentic, but naming none: reaches none (answered "ignored"); malformed: 400.
        assert_eq!(shared(&c, "org", &push("https://h/x.git")), Ok(vec![]));
        assert!(matches!(
            shared(&c, "org", b"[]"),
            Err(Refused::Malformed(_))
        ));
    }
}
