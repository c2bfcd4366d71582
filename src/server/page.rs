//! The status page at `GET /`, rendered from data (pure, no IO): one row per repository with an
//! inline SVG chart of its last syncs, and the recent webhook deliveries. Server-rendered HTML
//! with inline CSS, no scripts and no external assets; it refreshes itself (meta refresh).
//! Everything printed that comes from the config, a request or git is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::daemon::{DeliveryRecord, RepoView, SyncRecord, Unready};
use crate::queue::State;

/// Seconds between the page's own reloads.
pub const REFRESH_SECS: u32 = 10;
/// The chart's geometry: one bar per sync, [`crate::daemon::HISTORY`] at most.
const BAR_WIDTH: u32 = 6;
const BAR_GAP: u32 = 1;
const CHART_HEIGHT: u32 = 36;
/// A bar is never shorter than this, so a 1 ms sync is still seen (and hoverable).
const MIN_BAR: u32 = 3;
/// Characters of an error shown in the table (the whole text is in its tooltip).
const ERROR_SHOWN: usize = 160;

/// What the page shows.
pub struct Page<'a> {
    pub now: DateTime<Utc>,
    pub version: &'a str,
    pub repos: &'a [RepoView],
    /// Each repository's syncs, oldest first, in the order of `repos`.
    pub histories: &'a [Vec<SyncRecord>],
    /// Newest first.
    pub deliveries: &'a [DeliveryRecord],
    pub unready: &'a [Unready],
    /// The fleet as `GET /api/fleet` shows it (filtered to what the reader may see), when this
    /// node belongs to one.
    pub fleet: Option<&'a serde_json::Value>,
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `just now`, `42 s ago`, `3 min ago`, `5 h ago`, `2 d ago`; `in 4 min` for the future.
pub fn relative(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let amount = match n {
        0..=4 => return "just now".into(),
        5..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f23;background:#fff}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.5em 0 .5em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e1e4e8;vertical-align:middle}\
th{background:#f6f8fa;font-weight:600}code{font:12px ui-monospace,monospace}\
.badge{display:inline-block;padding:.1em .5em;border-radius:1em;font-size:12px;background:#e1e4e8}\
.ready{background:#d4edda;color:#155724}.unready{background:#f8d7da;color:#721c24}\
.idle{background:#e1e4e8}.queued{background:#fff3cd;color:#856404}.syncing{background:#cce5ff;color:#004085}\
tr.failing td:first-child{border-left:4px solid #c62828}.error{color:#c62828;max-width:28em;overflow-wrap:anywhere}\
.muted{color:#6a737d}.r-updated{fill:#2e7d32}.r-unchanged{fill:#90a4ae}.r-failed{fill:#c62828}\
footer{margin-top:2em;color:#6a737d;font-size:12px}a{color:#0366d6}";

/// The page's `Content-Security-Policy`: nothing may load or run but its one inline style
/// sheet (allowed by its hash); no scripts, no frames around it, no forms, no base URL. The
/// page needs no more (inline SVG and the meta refresh are not fetches), so anything injected
/// despite the escaping stays inert.
pub fn content_security_policy() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The whole page.
pub fn render(p: &Page<'_>) -> String {
    let mut h = String::with_capacity(16 * 1024 + p.repos.len() * 4096);
    let ready = p.unready.is_empty();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>hookmirror{}</title><style>{STYLE}</style></head><body>\n",
        if ready { "" } else { " (not ready)" }
    );
    let _ = writeln!(
        h,
        "<header><h1>hookmirror</h1><p id=\"summary\"><span class=\"badge {}\">{}</span> \
         {} repositor{} &middot; version {} &middot; as of <time datetime=\"{}\">{} UTC</time></p></header>",
        if ready { "ready" } else { "unready" },
        if ready { "ready" } else { "not ready" },
        p.repos.len(),
        if p.repos.len() == 1 { "y" } else { "ies" },
        escape(p.version),
        p.now.to_rfc3339(),
        p.now.format("%Y-%m-%d %H:%M:%S"),
    );
    h.push_str(
        "<section><h2>Repositories</h2><table id=\"repos\"><thead><tr><th>Repository</th>\
         <th>State</th><th>Ref</th><th>Commit</th><th>Last success</th><th>Next run</th>\
         <th>Last syncs</th><th>Last error</th></tr></thead><tbody>\n",
    );
    for (i, r) in p.repos.iter().enumerate() {
        let history = p.histories.get(i).map(Vec::as_slice).unwrap_or(&[]);
        repo_row(&mut h, p, r, history);
    }
    if p.repos.is_empty() {
        h.push_str("<tr><td colspan=\"8\" class=\"muted\">no repositories configured</td></tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
    if let Some(f) = p.fleet {
        fleet(&mut h, p.now, f);
    }
    deliveries(&mut h, p);
    h.push_str(
        "<footer>Refreshes every 10 s. Machine-readable: <a href=\"/api/repos\">/api/repos</a>, \
         <a href=\"/metrics\">/metrics</a>, <a href=\"/readyz\">/readyz</a>.</footer>\n</body></html>\n",
    );
    h
}

fn repo_row(h: &mut String, p: &Page<'_>, r: &RepoView, history: &[SyncRecord]) {
    let s = &r.status;
    let failing = p
        .unready
        .iter()
        .any(|u| u.name == r.name && u.reason == "failing");
    let name = escape(&r.name);
    let state = match r.state {
        State::Idle => "idle",
        State::Queued => "queued",
        State::Syncing => "syncing",
        State::Backoff => "backoff",
    };
    let _ = write!(
        h,
        "<tr data-repo=\"{name}\" class=\"{}\"><td><strong>{name}</strong><br><span class=\"muted\">{}</span></td>\
         <td><span class=\"badge {state}\">{state}{}</span></td>",
        if failing { "failing" } else { "ok" },
        escape(&r.url),
        if r.pending { " +1" } else { "" },
    );
    let git_ref = s.remote_ref.clone().unwrap_or_else(|| r.target.clone());
    let _ = write!(h, "<td>{}</td>", escape(&git_ref));
    match &s.commit {
        Some(c) => {
            let short: String = c.chars().take(7).collect();
            let _ = write!(
                h,
                "<td><code class=\"commit\" title=\"{}\">{}</code></td>",
                escape(c),
                escape(&short)
            );
        }
        None => h.push_str("<td class=\"muted\">none</td>"),
    }
    match s.last_success {
        Some(t) => {
            let _ = write!(
                h,
                "<td class=\"last-success\"><time datetime=\"{}\" title=\"{}\">{}</time></td>",
                t.to_rfc3339(),
                t.format("%Y-%m-%d %H:%M:%S UTC"),
                relative(p.now, t)
            );
        }
        None => h.push_str("<td class=\"last-success muted\">never</td>"),
    }
    match s.next_run {
        Some(t) => {
            let _ = write!(
                h,
                "<td><time datetime=\"{}\">{}</time></td>",
                t.to_rfc3339(),
                relative(p.now, t)
            );
        }
        None => h.push_str("<td class=\"muted\">no schedule</td>"),
    }
    h.push_str("<td>");
    chart(h, &r.name, history);
    h.push_str("</td>");
    match &s.last_error {
        Some(e) => {
            let full = format!("{}: {}", e.kind, e.message);
            let shown: String = full.chars().take(ERROR_SHOWN).collect();
            let _ = write!(
                h,
                "<td class=\"error\" title=\"{}\">{}{}</td>",
                escape(&full),
                escape(&shown),
                if shown.len() < full.len() { "…" } else { "" }
            );
        }
        None => h.push_str("<td class=\"muted\">none</td>"),
    }
    h.push_str("</tr>\n");
}

/// An inline SVG bar chart: one bar per sync, oldest left, height by duration (scaled to the
/// longest shown), colour by result; each bar's tooltip tells when, how and how long.
fn chart(h: &mut String, name: &str, history: &[SyncRecord]) {
    if history.is_empty() {
        h.push_str("<span class=\"muted\">no syncs yet</span>");
        return;
    }
    let width = history.len() as u32 * (BAR_WIDTH + BAR_GAP);
    let longest = history
        .iter()
        .map(|s| s.duration_ms)
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = write!(
        h,
        "<svg class=\"chart\" width=\"{width}\" height=\"{CHART_HEIGHT}\" viewBox=\"0 0 {width} {CHART_HEIGHT}\" \
         role=\"img\" aria-label=\"last {} syncs of {}\">",
        history.len(),
        escape(name)
    );
    for (i, s) in history.iter().enumerate() {
        let bar =
            ((s.duration_ms as f64 / longest as f64) * f64::from(CHART_HEIGHT)).round() as u32;
        let bar = bar.clamp(MIN_BAR, CHART_HEIGHT);
        let _ = write!(
            h,
            "<rect class=\"r-{}\" x=\"{}\" y=\"{}\" width=\"{BAR_WIDTH}\" height=\"{bar}\"><title>{}: {} in {} ms ({})</title></rect>",
            s.result,
            i as u32 * (BAR_WIDTH + BAR_GAP),
            CHART_HEIGHT - bar,
            s.at.format("%Y-%m-%d %H:%M:%S UTC"),
            s.result,
            s.duration_ms,
            s.trigger,
        );
    }
    h.push_str("</svg>");
}

/// The fleet: this node's link (connected, or degraded and why, with what waits in the outbox),
/// then one row per node and repository.
fn fleet(h: &mut String, now: DateTime<Utc>, f: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().map(escape).unwrap_or_default();
    let connected = f["state"] == "connected";
    let _ = write!(
        h,
        "<section><h2>Fleet</h2><p id=\"fleet-state\"><span class=\"badge {}\">{}</span> \
         node <code>{}</code> &middot; stream <code>{}</code>",
        if connected { "ready" } else { "unready" },
        if connected { "connected" } else { "degraded" },
        text(&f["node"]),
        text(&f["stream"]),
    );
    if let Some(e) = f["error"].as_str() {
        let _ = write!(h, " &middot; <span class=\"error\">{}</span>", escape(e));
    }
    if let Some(n) = f["outbox"].as_u64().filter(|&n| n > 0) {
        let _ = write!(h, " &middot; {n} request(s) waiting to reach the fleet");
    }
    h.push_str(
        "</p><table id=\"fleet\"><thead><tr><th>Node</th><th>Repository</th><th>State</th>\
         <th>Commit</th><th>Last success</th><th>Last error</th></tr></thead><tbody>\n",
    );
    let nodes = f["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut rows = 0;
    for n in nodes {
        let node = if n["live"] == true {
            text(&n["node"])
        } else {
            format!(
                "{} <span class=\"muted\">(not live)</span>",
                text(&n["node"])
            )
        };
        for r in n["repos"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            rows += 1;
            let commit: String = text(&r["commit"]).chars().take(12).collect();
            let success = r["last_success"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| relative(now, t.with_timezone(&Utc)))
                .unwrap_or_else(|| "never".into());
            let state = text(&r["state"]);
            let _ = writeln!(
                h,
                "<tr><td>{node}</td><td>{}</td><td><span class=\"badge {state}\">{state}</span></td>\
                 <td><code>{commit}</code></td><td>{success}</td><td class=\"error\">{}</td></tr>",
                text(&r["name"]),
                text(&r["error"]["message"]),
            );
        }
    }
    if rows == 0 {
        h.push_str("<tr><td colspan=\"6\" class=\"muted\">no node has reported yet</td></tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn deliveries(h: &mut String, p: &Page<'_>) {
    h.push_str(
        "<section><h2>Recent deliveries</h2><table id=\"deliveries\"><thead><tr><th>Time</th>\
         <th>Forge</th><th>Delivery</th><th>Result</th></tr></thead><tbody>\n",
    );
    for d in p.deliveries {
        let _ = writeln!(
            h,
            "<tr><td><time datetime=\"{}\" title=\"{}\">{}</time></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            d.at.to_rfc3339(),
            d.at.format("%Y-%m-%d %H:%M:%S UTC"),
            relative(p.now, d.at),
            escape(d.forge),
            escape(d.delivery.as_deref().unwrap_or("-")),
            escape(d.result),
        );
    }
    if p.deliveries.is_empty() {
        h.push_str("<tr><td colspan=\"4\" class=\"muted\">no deliveries yet</td></tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests;
