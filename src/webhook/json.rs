//! The one-pass payload reader: a delivery's JSON, keeping only the keys and URL fields read.

use serde_json::Value;

use super::{ParseError, read_url_key};

/// What the parsers read of a payload: top-level keys, and inside `repository`/`project` only
/// the URL fields and `links`. Everything else (the `commits` list, sender, pusher, owner, …: most
/// of a push payload) is checked for syntax and skipped without being built, which makes parsing
/// several times cheaper on the intake path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Drop,
    Whole,
    /// An object whose URL fields alone are kept (any other value becomes `null`: see [`UrlsOf`]).
    Urls,
}

fn top_level(key: &str) -> Keep {
    match key {
        "repository" | "project" => Keep::Urls,
        "ref" | "before" | "after" | "deleted" | "object_kind" | "event_name" | "changes"
        | "push" | "type" | "data" => Keep::Whole,
        _ => Keep::Drop,
    }
}

/// Inside `repository`/`project`: the URL fields some parser reads (GitHub's six of the ~45
/// `*_url` keys, GitLab's, Bitbucket's `links`); building the others cost more than all the rest
/// of parsing.
fn url_fields(key: &str) -> Keep {
    if read_url_key(key) {
        Keep::Whole
    } else {
        Keep::Drop
    }
}

/// Deserializes a JSON object keeping only the keys `keep` selects.
struct Filtered(fn(&str) -> Keep);

impl<'de> serde::de::Visitor<'de> for Filtered {
    type Value = serde_json::Map<String, Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = match (self.0)(&key) {
                Keep::Drop => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                Keep::Whole => map.next_value::<Value>()?,
                Keep::Urls => map.next_value_seed(UrlsOf)?,
            };
            out.insert(key.into_owned(), value);
        }
        Ok(out)
    }
}

/// An object key as the payload holds it: borrowed when it has no escapes, so the many keys
/// that are dropped cost no allocation (`Cow<str>` always deserializes owned).
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A `repository`/`project` value in one pass: an object keeps its [`url_fields`]; any other
/// JSON value is checked and becomes `null`, which the parsers refuse as "not an object" just
/// as they refuse the value itself.
struct UrlsOf;

impl<'de> serde::de::DeserializeSeed<'de> for UrlsOf {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UrlsOf {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Filtered(url_fields).visit_map(map).map(Value::Object)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Parses a JSON object, keeping what the parsers read (see [`Keep`]). Values that are built stay
/// under `serde_json`'s recursion limit (128) and skipped ones are checked without recursion, so
/// deeply nested input is never a stack overflow.
pub(super) fn parse_object(body: &[u8]) -> Result<Value, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde::Deserializer::deserialize_map(&mut de, Filtered(top_level))
        .and_then(|m| de.end().map(|()| m));
    match parsed {
        Ok(map) => Ok(Value::Object(map)),
        // Valid JSON of another type is "not an object"; anything else is "not JSON".
        Err(_)
            if !body.trim_ascii_start().starts_with(b"{")
                && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() =>
        {
            Err(ParseError::NotObject)
        }
        Err(_) => Err(ParseError::NotJson),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::headers;
    use super::super::{Provider, parse};
    use super::*;

    #[test]
    fn keeps_only_what_the_parsers_read() {
        let body = br#"{"ref": "refs/heads/main", "commits": [{"id": 1}], "sender": {"login": "x"},
            "repository": {"clone_url": "https://h/a.git", "name": "a", "links": {"html": {}},
                           "owner": {"login": "x"}},
            "project": [1, 2], "after": null}"#;
        assert_eq!(
            parse_object(body),
            Ok(json!({
                "ref": "refs/heads/main",
                "repository": {"clone_url": "https://h/a.git", "links": {"html": {}}},
                "project": null,
                "after": null,
            }))
        );
    }

    #[test]
    fn escaped_keys_are_read_like_plain_ones() {
        let body = br#"{"r\u0065f": "refs/heads/main", "repository": {"clone\u005furl": "https://h/a.git"},
            "s\u0065nder": {"login": "x"}}"#;
        assert_eq!(
            parse_object(body),
            Ok(json!({
                "ref": "refs/heads/main",
                "repository": {"clone_url": "https://h/a.git"},
            }))
        );
    }

    #[test]
    fn a_repository_that_is_no_object_reads_as_null() {
        for value in ["\"x\"", "1", "-1", "1.5", "true", "null", "[{\"a\": 1}]"] {
            let body = format!(r#"{{"repository": {value}}}"#);
            assert_eq!(
                parse_object(body.as_bytes()),
                Ok(json!({"repository": null})),
                "{value}"
            );
        }
    }

    #[test]
    fn not_an_object_and_not_json_are_told_apart() {
        for body in ["[1, 2]", " 7", "\"s\"", "null"] {
            assert_eq!(
                parse_object(body.as_bytes()),
                Err(ParseError::NotObject),
                "{body}"
            );
        }
        for body in ["", "{", "{} x", "{\"a\": }", "[1, 2", "{\"commits\": [}"] {
            assert_eq!(
                parse_object(body.as_bytes()),
                Err(ParseError::NotJson),
                "{body}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let objects = "{\"a\":".repeat(100_000);
        let cases = [
            (Provider::Github, ("X-GitHub-Event", "push")),
            (Provider::Gitlab, ("X-Gitlab-Event", "Push Hook")),
            (Provider::Gitlab, ("X-Gitlab-Event", "System Hook")),
            (Provider::Gitea, ("X-Gitea-Event", "push")),
            (Provider::Bitbucket, ("X-Event-Key", "repo:push")),
            (Provider::Bitbucket, ("X-Event-Key", "repo:refs_changed")),
            (Provider::Standard, ("webhook-id", "msg_1")),
        ];
        for (provider, event) in cases {
            let map = headers(&[event]);
            for body in [&deep, &objects] {
                assert_eq!(
                    parse(provider, &map, body.as_bytes()),
                    Err(ParseError::NotJson)
                );
            }
        }
    }
}
