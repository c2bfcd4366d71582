//! The config file as written: serde structs that mirror the file (hookmirror's keys and gwg's),
//! and `parse_str`, which turns text into them while collecting every unknown key. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Problem;
pub use super::format::Format;
use super::lines::find_key_line;

/// A duration as written: whole seconds (`30`, gwg's style) or a human string (`"1m 30s"`, `"500ms"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(u64),
    Text(String),
}

/// A byte size as written: a number of bytes or a string such as `"25MB"`, `"512 KiB"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// The top level of a config file. Fields after the blank line are gwg's names.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub workers: Option<i64>,
    pub initialise: Option<bool>,
    pub log: Option<RawLog>,
    pub api: Option<RawApi>,
    pub hooks: Option<RawHooks>,
    pub limits: Option<RawLimits>,
    pub health: Option<RawHealth>,
    pub notify: Option<Vec<RawNotify>>,
    pub fleet: Option<RawFleet>,
    pub defaults: Option<RawRepo>,
    pub repos: Option<Vec<RawRepo>>,
    pub ssh: Option<RawSsh>,

    pub port: Option<u16>,
    pub threads: Option<i64>,
    pub retry_count: Option<u32>,
    pub retry_delay: Option<RawDuration>,
    pub logging: Option<RawLog>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub output: Option<String>,
    pub timestamp: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawApi {
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub tokens: Option<Vec<RawApiToken>>,
    pub protect_reads: Option<bool>,
}

/// One entry of `api.tokens`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawApiToken {
    pub name: Option<String>,
    pub sha256: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub repos: Option<Vec<String>>,
    pub expires: Option<RawDate>,
}

/// A date or a moment as written: text (`2027-06-30`, `2027-06-30T12:00:00Z`), or TOML's own
/// date type, which TOML writes without quotes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawDate {
    Text(String),
    Toml(toml::value::Datetime),
}

/// Settings of hookmirror's SSH transport, for every repository.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawSsh {
    pub idle_timeout: Option<RawDuration>,
}

/// The shared `/hooks` endpoint's own secret (organisation, group and system hooks).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawHooks {
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secrets: Option<Vec<String>>,
    pub provider: Option<String>,
    pub allow_sha1: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawLimits {
    pub max_body: Option<RawSize>,
    pub header_timeout: Option<RawDuration>,
    pub body_timeout: Option<RawDuration>,
    pub max_connections: Option<i64>,
    pub max_connections_per_ip: Option<i64>,
    /// Bytes per second, as a size (`1KiB`).
    pub min_body_rate: Option<RawSize>,
    /// What a fetch may receive, for every repository that does not set its own.
    pub max_advertisement: Option<RawSize>,
    pub max_refs: Option<i64>,
    pub max_pack: Option<RawSize>,
    pub max_objects: Option<i64>,
}

/// A repository's `limits` (or `defaults.limits`): what one fetch of it may receive; each key
/// unset here comes from the top-level `limits`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawFetchLimits {
    pub max_advertisement: Option<RawSize>,
    pub max_refs: Option<i64>,
    pub max_pack: Option<RawSize>,
    pub max_objects: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawHealth {
    pub max_consecutive_failures: Option<i64>,
}

/// One outbound notification target (`notify:` at the top level, in `defaults` or in a repo).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawNotify {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub events: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// The `fleet` block: the NATS servers several hookmirror nodes share.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawFleet {
    pub nats: Option<RawUrls>,
    pub node: Option<String>,
    pub credentials_file: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub stream: Option<String>,
    pub replicas: Option<i64>,
    pub outbox: Option<String>,
}

/// One URL or a list of them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawUrls {
    One(String),
    Many(Vec<String>),
}

/// One repository (also the shape of `defaults`). Fields after the blank line are gwg's names.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawRepo {
    pub name: Option<String>,
    pub url: Option<String>,
    pub directory: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub remote: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secrets: Option<Vec<String>>,
    pub insecure_no_secret: Option<bool>,
    pub path: Option<String>,
    pub provider: Option<String>,
    pub allow_sha1: Option<bool>,
    pub schedule: Option<String>,
    pub interval: Option<RawDuration>,
    pub jitter: Option<RawDuration>,
    pub timezone: Option<String>,
    pub depth: Option<i64>,
    pub submodules: Option<bool>,
    pub clean: Option<bool>,
    pub transport: Option<String>,
    pub auth: Option<RawAuth>,
    pub retry: Option<RawRetry>,
    pub sync_timeout: Option<RawDuration>,
    pub stall_timeout: Option<RawDuration>,
    pub limits: Option<RawFetchLimits>,
    pub on_success: Option<RawOnSuccess>,
    pub notify: Option<Vec<RawNotify>>,
    pub mode: Option<String>,
    pub publish: Option<String>,
    pub keep: Option<i64>,
    pub grace: Option<RawDuration>,
    pub verify: Option<RawVerify>,
    pub pre_publish: Option<RawPrePublish>,

    pub label: Option<String>,
    #[serde(rename = "labelType")]
    pub label_type: Option<String>,
    pub trigger: Option<String>,
    #[serde(rename = "sshPrivKey")]
    pub ssh_priv_key: Option<String>,
    #[serde(rename = "sshPassPhrase")]
    pub ssh_pass_phrase: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawAuth {
    pub ssh_key: Option<String>,
    pub ssh_key_passphrase: Option<String>,
    pub ssh_key_passphrase_file: Option<String>,
    pub known_hosts: Option<String>,
    pub username: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub proxy: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub initial_delay: Option<RawDuration>,
    pub max_delay: Option<RawDuration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawVerify {
    pub mode: Option<String>,
    pub ssh_allowed_signers: Option<String>,
    pub gpg_keys: Option<Vec<String>>,
}
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawPrePublish {
    pub command: Option<Vec<String>>,
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawOnSuccess {
    pub touch: Option<String>,
    pub command: Option<Vec<String>>,
    pub timeout: Option<RawDuration>,
}

macro_rules! fill {
    ($dst:expr, $src:expr, $($f:ident),+ $(,)?) => {
        $( if $dst.$f.is_none() { $dst.$f = $src.$f.clone(); } )+
    };
}

impl RawRepo {
    /// Fills every field this repo leaves unset from `defaults`, nested blocks field by field.
    pub fn inherit(&mut self, defaults: &RawRepo) {
        fill!(
            self,
            defaults,
            branch,
            tag,
            remote,
            secret,
            secret_file,
            secrets,
            insecure_no_secret,
            provider,
            allow_sha1,
            schedule,
            interval,
            jitter,
            timezone,
            depth,
            submodules,
            clean,
            notify,
            transport,
            sync_timeout,
            stall_timeout,
            mode,
            publish,
            keep,
            grace,
            verify,
            pre_publish,
            label,
            label_type,
            trigger,
            ssh_priv_key,
            ssh_pass_phrase
        );
        if let Some(d) = &defaults.auth {
            let a = self.auth.get_or_insert_with(Default::default);
            fill!(
                a,
                d,
                ssh_key,
                ssh_key_passphrase,
                ssh_key_passphrase_file,
                known_hosts,
                username,
                token,
                token_file,
                proxy,
                ca_file
            );
        }
        if let Some(d) = &defaults.limits {
            let l = self.limits.get_or_insert_with(Default::default);
            fill!(l, d, max_advertisement, max_refs, max_pack, max_objects);
        }
        if let Some(d) = &defaults.retry {
            let r = self.retry.get_or_insert_with(Default::default);
            fill!(r, d, attempts, initial_delay, max_delay);
        }
        if let Some(d) = &defaults.on_success {
            let o = self.on_success.get_or_insert_with(Default::default);
            fill!(o, d, touch, command, timeout);
        }
    }
}

/// Parses config text into [`RawConfig`]. Every unknown key is reported (a typo must never pass
/// silently), each with the line it stands on where it can be found; a syntax or type error is
/// reported with the parser's line.
pub fn parse_str(text: &str, format: Format) -> Result<RawConfig, Vec<Problem>> {
    match parse_lenient(text, format)? {
        (raw, unknown) if unknown.is_empty() => Ok(raw),
        (_, unknown) => Err(unknown),
    }
}

/// Like [`parse_str`], but a file whose only fault is unknown keys still yields its
/// [`RawConfig`], with the unknown keys as problems beside it, so that validation can report
/// every other problem too.
pub fn parse_lenient(
    text: &str,
    format: Format,
) -> Result<(RawConfig, Vec<Problem>), Vec<Problem>> {
    let mut unknown: Vec<String> = Vec::new();
    let result = match format {
        Format::Yaml => {
            if text.trim().is_empty() {
                Ok(RawConfig::default())
            } else {
                let de = yaml_serde::Deserializer::from_str(text);
                serde_ignored::deserialize(de, |p| unknown.push(p.to_string())).map_err(|e| {
                    let line = e.location().map(|l| l.line());
                    Problem::at_line(line, strip_location(&e.to_string()))
                })
            }
        }
        Format::Toml => match toml::Deserializer::parse(text) {
            Ok(de) => serde_ignored::deserialize(de, |p| unknown.push(p.to_string()))
                .map_err(|e| toml_problem(text, &e)),
            Err(e) => Err(toml_problem(text, &e)),
        },
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_ignored::deserialize(&mut de, |p| unknown.push(p.to_string()))
                .and_then(|c| de.end().map(|_| c))
                .map_err(|e| Problem::at_line(Some(e.line()), strip_location(&e.to_string())))
        }
    };
    // Keys that start with `//` are comments (JSON has no other kind).
    unknown.retain(|path| !path.rsplit('.').next().unwrap_or(path).starts_with("//"));
    let raw = result.map_err(|p| vec![p])?;
    let unknown = unknown
        .iter()
        .map(|path| unknown_key_problem(text, format, path))
        .collect();
    Ok((raw, unknown))
}

fn toml_problem(text: &str, e: &toml::de::Error) -> Problem {
    let line = e.span().map(|s| line_of_offset(text, s.start));
    Problem::at_line(line, e.message().trim().to_string())
}

/// serde_json and yaml put "at line N column M" into their messages; the line is reported apart.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Turns serde_ignored's path (`repos.1.brnach`, `?.x` for enum-ish) into a problem naming the
/// repo index, the key and the line it was found on.
fn unknown_key_problem(text: &str, format: Format, path: &str) -> Problem {
    // serde_ignored writes `?` for an `Option` layer (`repos.?.1.brnach`); drop those.
    let path = path
        .split('.')
        .filter(|p| *p != "?")
        .collect::<Vec<_>>()
        .join(".");
    let path = path.as_str();
    let parts: Vec<&str> = path.split('.').collect();
    let key = parts.last().copied().unwrap_or(path);
    let repo_index = match parts.as_slice() {
        ["repos", i, ..] => i.parse::<usize>().ok(),
        _ => None,
    };
    let mut p = Problem::at_line(
        find_key_line(text, format, key, repo_index),
        format!("unknown key `{key}` (check its spelling; unknown keys are never ignored)"),
    );
    p.field = Some(path.to_string());
    if let Some(i) = repo_index {
        p.repo = Some(format!("#{}", i + 1));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let text = "listen: 127.0.0.1:1\nworkres: 2\nrepos:\n  - url: /a\n    directory: /b\n    brnach: main\n  - url: /c\n    directory: /d\n    auth:\n      tokne: x\n";
        let problems = parse_str(text, Format::Yaml).unwrap_err();
        let summary: Vec<(Option<usize>, String)> = problems
            .iter()
            .map(|p| (p.line, p.field.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some(2), "workres".to_string()),
                (Some(6), "repos.0.brnach".to_string()),
                (Some(10), "repos.1.auth.tokne".to_string()),
            ]
        );
        assert_eq!(problems[1].repo.as_deref(), Some("#1"));
    }

    #[test]
    fn toml_unknown_keys_and_lines() {
        let text = "listen = \"127.0.0.1:1\"\n[[repos]]\nurl = \"/a\"\n[[repos]]\nurl = \"/c\"\nbrnach = \"x\"\n";
        let problems = parse_str(text, Format::Toml).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(6));
        assert_eq!(problems[0].repo.as_deref(), Some("#2"));
    }

    #[test]
    fn syntax_errors_carry_the_parser_line() {
        let p = parse_str("listen: [\nrepos: x\n", Format::Yaml).unwrap_err();
        assert!(p[0].line.is_some(), "{p:?}");
        let p = parse_str("{\n\"workers\": \"many\"\n}", Format::Json).unwrap_err();
        assert_eq!(p[0].line, Some(2), "{p:?}");
        assert!(p[0].message.contains("invalid type"), "{p:?}");
        let p = parse_str("workers = \n", Format::Toml).unwrap_err();
        assert_eq!(p[0].line, Some(1), "{p:?}");
    }

    #[test]
    fn json_trailing_garbage_is_an_error() {
        assert!(parse_str("{} x", Format::Json).is_err());
    }

    #[test]
    fn inherit_fills_only_unset_fields() {
        let mut repo = RawRepo {
            branch: Some("dev".into()),
            auth: Some(RawAuth {
                username: Some("me".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let defaults = RawRepo {
            branch: Some("main".into()),
            clean: Some(true),
            auth: Some(RawAuth {
                username: Some("them".into()),
                token: Some("t".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        repo.inherit(&defaults);
        assert_eq!(repo.branch.as_deref(), Some("dev"));
        assert_eq!(repo.clean, Some(true));
        let auth = repo.auth.unwrap();
        assert_eq!(auth.username.as_deref(), Some("me"));
        assert_eq!(auth.token.as_deref(), Some("t"));
    }
}
