//! The `fleet` block: NATS server URLs (`nats://` or `tls://`), the node's name, one way to
//! authenticate (a `.creds` file, a token or a token file), the stream's name, its replicas and
//! the outbox folder.

use std::ops::RangeInclusive;

use super::Validator;
use crate::config::raw::{Format, RawFleet, RawUrls};
use crate::config::{Credential, Fleet, Problem};

/// The stream's name when the config names none.
pub const DEFAULT_STREAM: &str = "HOOKMIRROR";

/// Copies of the stream: JetStream allows 1 to 5.
const REPLICAS: RangeInclusive<i64> = 1..=5;

/// The longest node or stream name: both become parts of NATS names and subjects.
const MAX_NAME: usize = 64;

/// Whether `name` may name a node or a stream: it becomes a consumer name, a status key and a
/// bucket name, where NATS allows letters, digits, `-` and `_`.
pub fn valid_fleet_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Why `url` cannot name a NATS server, if it cannot: a `nats://` or `tls://` scheme, a host,
/// a port if one is written, nothing after it.
fn bad_url(url: &str) -> Option<String> {
    let Some(rest) = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
    else {
        return Some(format!(
            "`{url}` is not a nats:// or tls:// URL (e.g. nats://10.0.0.5:4222)"
        ));
    };
    // Credentials belong in credentials_file or token, where they are not logged with the URL.
    if rest.contains('@') {
        return Some(
            "put credentials in `credentials_file`, `token` or `token_file`, not in the URL".into(),
        );
    }
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (hostport, None),
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    if host.is_empty() || hostport.contains('/') || hostport.contains(char::is_whitespace) {
        return Some(format!(
            "`{url}` is not a server address (e.g. nats://10.0.0.5:4222)"
        ));
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Some(format!("`{url}`: the port is not a number from 1 to 65535"));
    }
    None
}

impl Validator<'_, '_> {
    /// The `fleet` block, when there is one.
    pub(super) fn fleet(&mut self, raw: Option<&RawFleet>) -> Option<Fleet> {
        let raw = raw?;
        let urls = match &raw.nats {
            None => Vec::new(),
            Some(RawUrls::One(u)) => vec![u.clone()],
            Some(RawUrls::Many(us)) => us.clone(),
        };
        if urls.is_empty() {
            self.fleet_problem(
                "nats",
                None,
                "name at least one NATS server (e.g. nats: nats://10.0.0.5:4222)",
            );
        }
        let mut servers = Vec::new();
        for u in urls {
            let url = self.expand("fleet.nats", &u).trim().to_string();
            if let Some(why) = bad_url(&url) {
                self.fleet_problem("nats", Some(&u), why);
            }
            servers.push(url);
        }
        let node = raw.node.as_ref().map(|n| self.expand("fleet.node", n));
        if let Some(n) = &node
            && !valid_fleet_name(n)
        {
            self.fleet_problem(
                "node",
                None,
                format!("`{n}` is not a node name: 1 to {MAX_NAME} letters, digits, `-` or `_`"),
            );
        }
        let stream = raw.stream.as_ref().map_or(DEFAULT_STREAM.to_string(), |s| {
            self.expand("fleet.stream", s)
        });
        if !valid_fleet_name(&stream) {
            self.fleet_problem(
                "stream",
                None,
                format!(
                    "`{stream}` is not a stream name: 1 to {MAX_NAME} letters, digits, `-` or `_`"
                ),
            );
        }
        let replicas = raw.replicas.unwrap_or(1);
        if !REPLICAS.contains(&replicas) {
            let (min, max) = (REPLICAS.start(), REPLICAS.end());
            self.fleet_problem(
                "replicas",
                None,
                format!("must be between {min} and {max}, not {replicas}"),
            );
        }
        let ways = [
            raw.credentials_file.is_some(),
            raw.token.is_some(),
            raw.token_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            let field = if raw.token_file.is_some() {
                "token_file"
            } else {
                "token"
            };
            self.fleet_problem(
                field,
                None,
                "set one of `credentials_file`, `token` and `token_file`, not several",
            );
        }
        let credentials = raw.credentials_file.as_ref().map(|f| Credential {
            value: Default::default(),
            file: Some(self.path("fleet.credentials_file", f, true)),
        });
        let token = match (&raw.token, &raw.token_file) {
            (Some(t), _) => {
                let t = self.expand("fleet.token", t);
                if t.is_empty() {
                    self.fleet_problem("token", None, "is empty");
                }
                Some(Credential::inline(t))
            }
            (None, Some(f)) => Some(Credential {
                value: Default::default(),
                file: Some(self.path("fleet.token_file", f, true)),
            }),
            (None, None) => None,
        };
        let outbox = raw
            .outbox
            .as_ref()
            .map(|o| self.path("fleet.outbox", o, false));
        Some(Fleet {
            servers,
            node,
            credentials,
            token,
            stream,
            replicas: replicas.clamp(*REPLICAS.start(), *REPLICAS.end()) as usize,
            outbox,
        })
    }

    /// A problem with `fleet.<key>`, on the line of the key inside the `fleet` block (or of
    /// `value`, an item of a list written one per line).
    fn fleet_problem(&mut self, key: &str, value: Option<&str>, message: impl Into<String>) {
        let line = self
            .ctx
            .text
            .and_then(|t| block_line(t, self.ctx.format, "fleet", key, value));
        self.problems.push(Problem {
            file: self.ctx.file.clone(),
            line,
            repo: None,
            field: Some(format!("fleet.{key}")),
            message: message.into(),
        });
    }
}

/// The line (1-based) of `key` inside the top-level block `block` (YAML `fleet:`, TOML
/// `[fleet]`, JSON `"fleet": {`), or of the first line there that holds `value`.
pub(crate) fn block_line(
    text: &str,
    format: Format,
    block: &str,
    key: &str,
    value: Option<&str>,
) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let starts = |l: &str| match format {
        Format::Yaml => l.trim_end().starts_with(&format!("{block}:")),
        Format::Toml => l.trim() == format!("[{block}]"),
        Format::Json => l.trim_start().starts_with(&format!("\"{block}\"")),
    };
    let start = lines.iter().position(|l| starts(l))?;
    let ends = |l: &str| match format {
        Format::Yaml => {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && l.len() == t.len()
        }
        Format::Toml => l.trim_start().starts_with('['),
        Format::Json => l.trim_start().starts_with('}') && l.len() - l.trim_start().len() <= 2,
    };
    let end = (start + 1..lines.len())
        .find(|&n| ends(lines[n]))
        .unwrap_or(lines.len());
    let body = start..end.max(start + 1);
    let holds_value = |l: &str| value.is_some_and(|v| !v.is_empty() && l.contains(v));
    let defines_key = |l: &str| {
        let t = l.trim_start().trim_start_matches(['"', '\'']);
        // The block's own line may hold it too: `fleet: {nats: x}`.
        let t = t
            .strip_prefix(&format!("{block}:"))
            .map_or(t, str::trim_start);
        let t = t.trim_start_matches('{').trim_start();
        t.strip_prefix(key).is_some_and(|r| {
            let r = r.trim_start_matches(['"', '\'']).trim_start();
            r.starts_with(':') || r.starts_with('=')
        })
    };
    body.clone()
        .find(|&n| holds_value(lines[n]))
        .or_else(|| body.clone().find(|&n| defines_key(lines[n])))
        .or(Some(start))
        .map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::super::{Context, check, validate};
    use super::*;

    /// The config with this `fleet` block, validated with its text (so problems have lines).
    fn fleet(block: &str) -> Result<crate::config::Config, Vec<Problem>> {
        let text = format!(
            "api:\n  token: x\nfleet:\n{block}repos:\n  - url: /o.git\n    directory: /d\n    secret: s\n"
        );
        let raw = crate::config::parse_str(&text, Format::Yaml).expect("parses");
        let ctx = Context {
            text: Some(&text),
            ..Context::bare(Format::Yaml, "/etc/hookmirror")
        };
        validate(raw, &ctx)
    }

    /// The one problem `block` has: (line, field, message).
    fn problem(block: &str) -> (Option<usize>, String, String) {
        let p = fleet(block).expect_err("a problem");
        assert_eq!(p.len(), 1, "{p:?}");
        (
            p[0].line,
            p[0].field.clone().unwrap_or_default(),
            p[0].message.clone(),
        )
    }

    #[test]
    fn one_url_or_a_list_and_the_defaults() {
        let c = fleet("  nats: nats://10.0.0.5:4222\n").unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.servers, vec!["nats://10.0.0.5:4222"]);
        assert_eq!(f.stream, DEFAULT_STREAM);
        assert_eq!((f.replicas, f.node, f.token), (1, None, None));
        let c = fleet(
            "  nats:\n    - nats://a:4222\n    - tls://b\n  node: web-1\n  stream: S_2\n  replicas: 3\n  token: t\n",
        )
        .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.servers, vec!["nats://a:4222", "tls://b"]);
        assert_eq!(f.node.as_deref(), Some("web-1"));
        assert_eq!((f.stream.as_str(), f.replicas), ("S_2", 3));
        assert_eq!(f.token.unwrap().value.expose(), "t");
        assert!(check("repos: []\n").unwrap().fleet.is_none());
    }

    #[test]
    fn a_url_that_is_not_nats_or_tls_is_named_on_its_own_line() {
        let (line, field, msg) = problem("  nats:\n    - nats://a:4222\n    - http://b:4222\n");
        assert_eq!((line, field.as_str()), (Some(6), "fleet.nats"));
        assert!(
            msg.contains("`http://b:4222` is not a nats:// or tls:// URL"),
            "{msg}"
        );
        for bad in [
            "nats://",
            "nats://a:0",
            "nats://a:99999",
            "nats://a/b",
            "b:4222",
        ] {
            let (line, _, _) = problem(&format!("  nats: '{bad}'\n"));
            assert_eq!(line, Some(4), "{bad}");
        }
        let (_, _, msg) = problem("  nats: nats://u:p@a:4222\n");
        assert!(msg.contains("not in the URL"), "{msg}");
        let (line, _, msg) = problem("  node: web-1\n");
        assert_eq!(line, Some(3), "the block itself when `nats` is missing");
        assert!(msg.contains("at least one NATS server"), "{msg}");
    }

    #[test]
    fn both_token_and_token_file_are_refused_on_the_fleet_line_not_the_api_one() {
        let (line, field, msg) = problem("  nats: nats://a\n  token: t\n  token_file: /t\n");
        assert_eq!((line, field.as_str()), (Some(6), "fleet.token_file"));
        assert!(msg.contains("not several"), "{msg}");
        let (line, field, _) = problem("  nats: nats://a\n  credentials_file: /c\n  token: t\n");
        assert_eq!((line, field.as_str()), (Some(6), "fleet.token"));
    }

    #[test]
    fn names_and_replicas_are_bounded() {
        let (line, field, msg) = problem("  nats: nats://a\n  node: web.1\n");
        assert_eq!((line, field.as_str()), (Some(5), "fleet.node"));
        assert!(msg.contains("not a node name"), "{msg}");
        let (_, field, _) = problem("  nats: nats://a\n  stream: 'a b'\n");
        assert_eq!(field, "fleet.stream");
        for (n, ok) in [(0, false), (1, true), (5, true), (6, false)] {
            let r = fleet(&format!("  nats: nats://a\n  replicas: {n}\n"));
            assert_eq!(r.is_ok(), ok, "replicas {n}: {r:?}");
        }
        let (_, _, msg) = problem("  nats: nats://a\n  replicas: 9\n");
        assert!(msg.contains("between 1 and 5, not 9"), "{msg}");
    }

    #[test]
    fn credentials_files_and_the_outbox_are_made_absolute() {
        let c = fleet("  nats: nats://a\n  credentials_file: nats.creds\n  outbox: ../out\n")
            .unwrap()
            .fleet
            .unwrap();
        assert_eq!(
            c.credentials.unwrap().file.unwrap(),
            std::path::Path::new("/etc/hookmirror/nats.creds")
        );
        assert_eq!(c.outbox.unwrap(), std::path::Path::new("/etc/out"));
        let (_, field, _) = problem("  nats: nats://a\n  outbox: ''\n");
        assert_eq!(field, "fleet.outbox");
    }

    #[test]
    fn toml_blocks_find_their_lines_too() {
        let text = "[api]\ntoken = \"x\"\n[fleet]\nnats = \"nats://a\"\ntoken = \"t\"\ntoken_file = \"/t\"\n";
        assert_eq!(
            block_line(text, Format::Toml, "fleet", "token_file", None),
            Some(6)
        );
        assert_eq!(
            block_line(text, Format::Toml, "fleet", "token", None),
            Some(5)
        );
    }
}
