//! `notify:` (top level, `defaults` and per repo) and `health:`: outbound notification targets
//! and when `/readyz` turns red.

use std::ops::RangeInclusive;

use super::Validator;
use crate::config::raw::{RawConfig, RawNotify};
use crate::config::{Health, NotifyEvent, NotifyTarget, notify_secret_problem};
use crate::secret::Secret;

/// Failures in a row before a repository makes the daemon not ready: 1 turns red on the first
/// failure; past 1000 the check would never fire in practice.
const MAX_CONSECUTIVE_FAILURES: RangeInclusive<i64> = 1..=1000;

/// Headers hookmirror sets itself: extra headers may not replace the signature or the body type.
const RESERVED_HEADERS: [&str; 5] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
];

impl Validator<'_, '_> {
    pub(super) fn health(&mut self, raw: &RawConfig) -> Health {
        let d = Health::default();
        let Some(n) = raw.health.as_ref().and_then(|h| h.max_consecutive_failures) else {
            return d;
        };
        if self.within(
            "health.max_consecutive_failures",
            n,
            MAX_CONSECUTIVE_FAILURES,
        ) {
            Health {
                max_consecutive_failures: n as u64,
            }
        } else {
            d
        }
    }

    /// The targets of one `notify:` list; `prefix` is where it stands (`notify`).
    pub(super) fn notify_targets(&mut self, raw: &Option<Vec<RawNotify>>) -> Vec<NotifyTarget> {
        raw.iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, t)| self.notify_target(i, t))
            .collect()
    }

    fn notify_target(&mut self, i: usize, t: &RawNotify) -> Option<NotifyTarget> {
        let at = |key: &str| format!("notify.{i}.{key}");
        let url = match self.opt(&at("url"), &t.url) {
            Some(u) => {
                if let Err(why) = check_url(&u) {
                    self.problem(
                        &at("url"),
                        format!("`{}` {why}", crate::url::redact_endpoint(&u)),
                    );
                }
                u
            }
            None => {
                self.problem(&at("url"), "is required");
                String::new()
            }
        };
        let secret = self.credential(&at("secret"), &t.secret, &at("secret_file"), &t.secret_file);
        let secret = match secret {
            Some(s) => {
                if s.file.is_none()
                    && let Some(why) = notify_secret_problem(s.value.expose())
                {
                    self.problem(&at("secret"), why);
                }
                s
            }
            None => {
                self.problem(
                    &at("secret"),
                    "is required: notifications are signed (set `secret` or `secret_file`)",
                );
                return None;
            }
        };
        let events = match &t.events {
            None => NotifyEvent::ALL.to_vec(),
            Some(names) if names.is_empty() => {
                self.problem(&at("events"), "lists no event (leave it out for all of them)");
                Vec::new()
            }
            Some(names) => names
                .iter()
                .filter_map(|n| {
                    let e = NotifyEvent::ALL.into_iter().find(|e| e.as_str() == n.trim());
                    if e.is_none() {
                        self.problem(
                            &at("events"),
                            format!(
                                "`{n}` is not an event (sync.succeeded, sync.failed, sync.recovered)"
                            ),
                        );
                    }
                    e
                })
                .collect(),
        };
        let mut headers = Vec::new();
        for (name, value) in t.headers.iter().flatten() {
            let field = at(&format!("headers.{name}"));
            let value = self.expand(&field, value);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.problem(&field, format!("`{name}` is not a valid header name"));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.problem(&field, format!("`{name}` is set by hookmirror itself"));
            } else if http::HeaderValue::from_str(&value).is_err() {
                // The value is not shown: it may be a credential.
                self.problem(&field, "the value is not a valid header value");
            }
            headers.push((name.clone(), Secret::new(value)));
        }
        Some(NotifyTarget {
            url,
            secret,
            events,
            headers,
        })
    }
}

/// A notification URL: `http://` or `https://` with a host.
fn check_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("is not an http:// or https:// URL"),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("has no host"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_bound, check};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn with_notify(target: &str) -> String {
        format!("notify:\n  - {target}\nrepos:\n  - {{url: /o.git, directory: /d, secret: s}}\n")
    }

    #[test]
    fn max_consecutive_failures_is_1_to_1000() {
        let text = |v: &str| format!("health: {{max_consecutive_failures: {v}}}\n");
        let range = "between 1 and 1000";
        assert_bound(
            text,
            "health.max_consecutive_failures",
            range,
            &["1", "1000"],
            &["0", "1001"],
        );
        assert_eq!(check("").unwrap().health.max_consecutive_failures, 3);
    }

    #[test]
    fn a_full_target_is_read() {
        let c = check(&with_notify(&format!(
            "{{url: 'https://deploys.example.com/hooks', secret: {SECRET}, events: [sync.failed], headers: {{Authorization: 'Bearer x'}}}}"
        )))
        .unwrap();
        let t = &c.notify[0];
        assert_eq!(t.url, "https://deploys.example.com/hooks");
        assert_eq!(t.events, vec![crate::config::NotifyEvent::Failed]);
        assert_eq!(t.headers[0].0, "Authorization");
        assert_eq!(t.headers[0].1.expose(), "Bearer x");
        let all = check(&with_notify(&format!(
            "{{url: 'http://h/x', secret: {SECRET}}}"
        )))
        .unwrap();
        assert_eq!(all.notify[0].events.len(), 3);
    }

    #[test]
    fn a_repo_and_defaults_may_have_targets() {
        let text = format!(
            "defaults:\n  notify:\n    - {{url: 'http://h/d', secret: {SECRET}}}\nrepos:\n  - url: /o.git\n    directory: /d\n    secret: s\n  - url: /p.git\n    directory: /e\n    secret: s\n    notify:\n      - {{url: 'http://h/own', secret: {SECRET}}}\n"
        );
        let c = check(&text).unwrap();
        assert_eq!(c.repos[0].notify[0].url, "http://h/d");
        assert_eq!(c.repos[1].notify[0].url, "http://h/own");
    }

    #[test]
    fn every_wrong_value_is_named() {
        let cases = [
            (
                "{url: 'ftp://h/x', secret: SECRET}",
                "notify.0.url",
                "not an http:// or https://",
            ),
            (
                "{url: 'not a url', secret: SECRET}",
                "notify.0.url",
                "is not a URL",
            ),
            ("{secret: SECRET}", "notify.0.url", "is required"),
            ("{url: 'http://h/x'}", "notify.0.secret", "is required"),
            (
                "{url: 'http://h/x', secret: hunter2}",
                "notify.0.secret",
                "whsec_",
            ),
            (
                "{url: 'http://h/x', secret: 'whsec_%%%'}",
                "notify.0.secret",
                "not base64",
            ),
            (
                "{url: 'http://h/x', secret: SECRET, events: [sync.done]}",
                "notify.0.events",
                "`sync.done` is not an event",
            ),
            (
                "{url: 'http://h/x', secret: SECRET, events: []}",
                "notify.0.events",
                "lists no event",
            ),
            (
                "{url: 'http://h/x', secret: SECRET, headers: {'bad name': x}}",
                "notify.0.headers.bad name",
                "not a valid header name",
            ),
            (
                "{url: 'http://h/x', secret: SECRET, headers: {Webhook-Signature: x}}",
                "notify.0.headers.Webhook-Signature",
                "set by hookmirror",
            ),
            (
                "{url: 'http://h/x', secret: SECRET, headers: {X-Token: '${UNSET_VAR}'}}",
                "notify.0.headers.X-Token",
                "UNSET_VAR",
            ),
        ];
        for (target, field, message) in cases {
            let text = with_notify(&target.replace("SECRET", SECRET));
            let p = check(&text).expect_err(target);
            assert_eq!(p.len(), 1, "{target}: {p:?}");
            assert_eq!(p[0].field.as_deref(), Some(field), "{target}: {p:?}");
            assert!(p[0].message.contains(message), "{target}: {p:?}");
            assert!(!p[0].message.contains("hunter2"), "{p:?}");
        }
    }
}
