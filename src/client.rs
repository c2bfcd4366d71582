//! `hookmirror status`: asks the running daemon (at the config's `listen`, with its API token)
//! for `GET /api/repos` and prints a table. The table is made from the JSON alone (pure).

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::Config;

/// How long `status` waits for the daemon.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The URL of `path` on the daemon `config` describes: a wildcard `listen` is asked on loopback.
pub fn daemon_url(config: &Config, path: &str) -> String {
    let host = match config.listen.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    format!("http://{host}:{}{path}", config.listen.port)
}

/// The config holds only tokens' digests; a token kept in a `token_file` that may read can be
/// used as it is.
fn token_from_file(config: &Config) -> Option<String> {
    config
        .api
        .tokens
        .iter()
        .filter(|t| t.scopes.read || t.scopes.admin)
        .find_map(|t| std::fs::read_to_string(t.file.as_ref()?).ok())
}

/// Prints the table; 0 when every repository's last sync succeeded, 1 when one failed or the
/// daemon could not be asked.
pub fn status(
    config: &Config,
    token: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let url = daemon_url(config, "/api/repos");
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .proxy(None)
            .build(),
    );
    let mut req = agent.get(&url);
    if let Some(t) = token
        .map(str::to_string)
        .or_else(|| token_from_file(config))
    {
        req = req.header("Authorization", format!("Bearer {}", t.trim()));
    }
    let answer = req.call().map_err(|e| e.to_string()).and_then(|mut r| {
        let status = r.status();
        let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{url} answered {status}: {}", text.trim()));
        }
        serde_json::from_str::<Value>(&text).map_err(|e| format!("{url}: not JSON: {e}"))
    });
    match answer {
        Ok(v) => {
            let _ = out.write_all(table(&v, Utc::now()).as_bytes());
            let failing = v["repos"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| !r["last_error"].is_null()));
            i32::from(failing)
        }
        Err(e) => {
            let _ = writeln!(err, "hookmirror status: cannot ask the daemon: {e}");
            1
        }
    }
}

/// One line per repository, columns aligned: name, state, commit, last success, failures in a
/// row, last error.
pub fn table(v: &Value, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "COMMIT",
            "LAST SUCCESS",
            "FAILING",
            "LAST ERROR",
        ]
        .map(String::from),
    ];
    for r in v["repos"].as_array().into_iter().flatten() {
        let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let mut state = text("state");
        if r["pending"] == true {
            state.push_str(" +1");
        }
        let commit: String = r["commit"]
            .as_str()
            .unwrap_or("-")
            .chars()
            .take(12)
            .collect();
        let success = r["last_success"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| ago(now, t.with_timezone(&Utc)))
            .unwrap_or_else(|| "never".into());
        let error = match &r["last_error"] {
            Value::Null => "-".to_string(),
            e => format!(
                "{}: {}",
                e["kind"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            ),
        };
        let failing = r["consecutive_failures"].as_u64().unwrap_or(0).to_string();
        rows.push([text("name"), state, commit, success, failing, error]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (c, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", row[c]));
        }
        out.push_str(&row[5]);
        out.push('\n');
    }
    out
}

fn ago(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let s = (now - at).num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let v = serde_json::json!({"repos": [
            {"name": "site", "state": "idle", "pending": false, "commit": "0123456789abcdef0123",
             "last_success": "2026-01-01T00:07:00Z", "consecutive_failures": 0, "last_error": null},
            {"name": "documentation", "state": "syncing", "pending": true, "commit": null,
             "last_success": null, "consecutive_failures": 4,
             "last_error": {"kind": "auth", "message": "denied"}}
        ]});
        assert_eq!(
            table(&v, now),
            "NAME           STATE       COMMIT        LAST SUCCESS  FAILING  LAST ERROR\n\
             site           idle        0123456789ab  3m ago        0        -\n\
             documentation  syncing +1  -             never         4        auth: denied\n"
        );
    }

    #[test]
    fn a_wildcard_listen_is_asked_on_loopback() {
        let mut c = crate::config::tests_support::config("listen: 0.0.0.0:9000\n");
        assert_eq!(daemon_url(&c, "/x"), "http://127.0.0.1:9000/x");
        c.listen.host = "::".into();
        assert_eq!(daemon_url(&c, "/x"), "http://[::1]:9000/x");
        c.listen.host = "::1".into();
        assert_eq!(daemon_url(&c, "/x"), "http://[::1]:9000/x");
    }
}
