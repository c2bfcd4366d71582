//! gwg's keys rewritten into hookmirror's, in one pass before validation. Pure.
//!
//! Validation then reads hookmirror's keys only. gwg's are `listen`+`port`, `threads`, `logging`,
//! `retry_count` and `retry_delay` at the top, and `label`/`labelType`, `trigger`, `sshPrivKey`
//! and `sshPassPhrase` in a repo or in `defaults`.

use super::raw::{RawConfig, RawRepo};

/// The config in hookmirror's keys, and what the rewrite noted on the way.
#[derive(Debug)]
pub(super) struct Rewritten {
    /// No gwg key is set. Each repo has `defaults` filled in already (gwg's top-level retry keys
    /// became defaults first), so that a gwg key in `defaults` meets a hookmirror key in a repo
    /// just as the repo's own would; `defaults` itself is left for validation's own checks.
    pub raw: RawConfig,
    pub top: Notes,
    /// One for each repo, in order.
    pub repos: Vec<Notes>,
}

/// What the rewrite noted about the top level or one repo.
#[derive(Debug)]
pub(super) struct Notes {
    top_level: bool,
    /// (hookmirror's key, the gwg key its value was written under), so that a problem in the
    /// value names the key the file has.
    renamed: Vec<(&'static str, &'static str)>,
    /// (field, message): a gwg key set together with hookmirror's, or a gwg value that names
    /// nothing. Validation reports them with the file, the line and the repo's name.
    pub problems: Vec<(&'static str, String)>,
}

impl Notes {
    fn new(top_level: bool) -> Notes {
        Notes {
            top_level,
            renamed: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The key `field`'s value was written under: a gwg key, or `field` itself.
    pub fn written_as(&self, field: &'static str) -> &'static str {
        self.renamed
            .iter()
            .find(|(ours, _)| *ours == field)
            .map_or(field, |(_, gwg)| gwg)
    }

    /// gwg's `gwg` and hookmirror's `ours` (quoted as the message shows it) are both set.
    fn clash(&mut self, gwg: &'static str, ours: &str) {
        let message = if self.top_level {
            format!("`{gwg}` (gwg's name) and {ours} are both set; keep {ours}")
        } else {
            format!("gwg's `{gwg}` and {ours} are both set; keep one")
        };
        self.problems.push((gwg, message));
    }

    /// Puts gwg's `value` into `slot`, hookmirror's key `ours`. When `slot` is set already, that
    /// is a clash: `slot` keeps its value if `keep_ours`, else it is emptied, as if neither key
    /// were set. True on a clash.
    fn adopt<T>(
        &mut self,
        (gwg, ours): (&'static str, &'static str),
        value: Option<T>,
        slot: &mut Option<T>,
        keep_ours: bool,
    ) -> bool {
        let Some(value) = value else { return false };
        if slot.is_some() {
            self.clash(gwg, &format!("`{ours}`"));
            if !keep_ours {
                *slot = None;
            }
            return true;
        }
        *slot = Some(value);
        self.renamed.push((ours, gwg));
        false
    }

    /// [`Notes::adopt`] for a key gwg leaves blank for "none": a blank value is adopted as no
    /// value, yet still clashes with hookmirror's key when that is set.
    fn adopt_unless_blank(
        &mut self,
        pair: (&'static str, &'static str),
        value: Option<String>,
        slot: &mut Option<String>,
    ) {
        let value = value.filter(|v| slot.is_some() || !v.trim().is_empty());
        self.adopt(pair, value, slot, false);
    }
}

/// Rewrites every gwg key of `raw` into hookmirror's (see [`Rewritten`]).
pub(super) fn rewrite(mut raw: RawConfig) -> Rewritten {
    let mut top = Notes::new(true);
    listen(&mut raw, &mut top);
    let threads = raw.threads.take();
    top.adopt(("threads", "workers"), threads, &mut raw.workers, false);
    let logging = raw.logging.take();
    top.adopt(("logging", "log"), logging, &mut raw.log, true);

    let mut defaults = raw.defaults.take().unwrap_or_default();
    let retry_count = raw.retry_count.take();
    let retry_delay = raw.retry_delay.take();
    if retry_count.is_some() || retry_delay.is_some() {
        let r = defaults.retry.get_or_insert_with(Default::default);
        // gwg's retry_count counts attempts in all.
        r.attempts = r.attempts.or(retry_count.map(|n| n.max(1)));
        r.initial_delay = r.initial_delay.take().or(retry_delay);
    }
    let mut repos = raw.repos.take().unwrap_or_default();
    let notes = repos
        .iter_mut()
        .map(|r| {
            r.inherit(&defaults);
            repo(r)
        })
        .collect();
    // Every repo has them now; validation only checks that no per-repo key is a default.
    GwgKeys::take(&mut defaults);
    raw.defaults = Some(defaults);
    raw.repos = Some(repos);
    Rewritten {
        raw,
        top,
        repos: notes,
    }
}

/// gwg: `listen` is a host (blank: all interfaces) and `port` the port.
fn listen(raw: &mut RawConfig, notes: &mut Notes) {
    let Some(port) = raw.port.take() else { return };
    let host = match raw.listen.as_deref().map(str::trim) {
        None | Some("") => "0.0.0.0",
        Some(h) => match colons(h).as_slice() {
            [colon] if !h.starts_with('[') => {
                notes.problems.push((
                    "port",
                    "`listen` already has a port; drop `port` or the port in `listen`".into(),
                ));
                &h[..*colon]
            }
            _ => h.trim_start_matches('[').trim_end_matches(']'),
        },
    };
    // In brackets any host reads back as itself: a name, an IPv6 address, a `${VAR}`.
    raw.listen = Some(format!("[{host}]:{port}"));
}

/// Where the `:`s of `text` are, leaving out those inside a `${…}` (`${HOST:-localhost}`).
fn colons(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].find([':', '$']).map(|c| i + c) {
        let rest = &text[c..];
        i = if rest.starts_with("$${") {
            c + 3
        } else if rest.starts_with("${") {
            rest.find('}').map_or(text.len(), |end| c + end + 1)
        } else {
            if rest.starts_with(':') {
                found.push(c);
            }
            c + 1
        };
    }
    found
}

/// A repo's gwg keys, taken out of it.
struct GwgKeys {
    label: Option<String>,
    label_type: Option<String>,
    trigger: Option<String>,
    ssh_priv_key: Option<String>,
    ssh_pass_phrase: Option<String>,
}

impl GwgKeys {
    fn take(r: &mut RawRepo) -> GwgKeys {
        GwgKeys {
            label: r.label.take(),
            label_type: r.label_type.take(),
            trigger: r.trigger.take(),
            ssh_priv_key: r.ssh_priv_key.take(),
            ssh_pass_phrase: r.ssh_pass_phrase.take(),
        }
    }
}

/// Rewrites one repo's gwg keys into its own.
fn repo(r: &mut RawRepo) -> Notes {
    let mut notes = Notes::new(false);
    let gwg = GwgKeys::take(r);
    label(r, gwg.label, gwg.label_type, &mut notes);
    let auth = r.auth.get_or_insert_with(Default::default);
    let pair = ("sshPrivKey", "auth.ssh_key");
    notes.adopt_unless_blank(pair, gwg.ssh_priv_key, &mut auth.ssh_key);
    let passphrase = gwg.ssh_pass_phrase.filter(|p| !p.is_empty());
    let pair = ("sshPassPhrase", "auth.ssh_key_passphrase");
    if notes.adopt(pair, passphrase, &mut auth.ssh_key_passphrase, false) {
        auth.ssh_key_passphrase_file = None;
    }
    let on_success = r.on_success.get_or_insert_with(Default::default);
    let pair = ("trigger", "on_success.touch");
    notes.adopt_unless_blank(pair, gwg.trigger, &mut on_success.touch);
    notes
}

/// `label` names the branch or tag, `labelType` says which: a branch when blank or unrecognised.
fn label(r: &mut RawRepo, label: Option<String>, label_type: Option<String>, notes: &mut Notes) {
    let label_type = label_type.map(|t| t.to_ascii_lowercase());
    let (label, is_tag) = match (label, label_type.as_deref()) {
        (Some(l), t) => (l, t == Some("tag")),
        // gwg: "defaults to master if labelType is branch".
        (None, Some("branch")) => ("master".to_string(), false),
        (None, Some("tag")) => {
            let message = "is tag but `label` names no tag".to_string();
            notes.problems.push(("labelType", message));
            return;
        }
        (None, _) => return,
    };
    match (&r.branch, &r.tag) {
        // Validation refuses `branch` and `tag` together.
        (Some(_), Some(_)) => {}
        (Some(_), None) | (None, Some(_)) => {
            notes.clash("label", "`branch`/`tag`");
            r.branch = None;
            r.tag = None;
        }
        (None, None) if is_tag => r.tag = Some(label),
        (None, None) => r.branch = Some(label),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, parse_str};
    use super::*;

    #[test]
    fn the_gwg_sample_comes_out_in_hookmirrors_keys() {
        let text = include_str!("../../tests/fixtures/config/gwg-readme-sample.yaml");
        let Rewritten { raw, top, repos } = rewrite(parse_str(text, Format::Yaml).unwrap());
        assert!(top.problems.is_empty() && repos.iter().all(|n| n.problems.is_empty()));
        assert_eq!(raw.listen.as_deref(), Some("[localhost]:5555"));
        assert_eq!((raw.workers, raw.threads), (Some(5), None));
        assert!(raw.log.is_some() && raw.logging.is_none());
        assert_eq!(top.written_as("log"), "logging");
        assert_eq!(top.written_as("listen"), "listen");
        assert_eq!(
            (raw.port, raw.retry_count, raw.retry_delay),
            (None, None, None)
        );
        let r = &raw.repos.as_ref().unwrap()[0];
        assert_eq!(r.branch.as_deref(), Some("master"));
        assert_eq!(r.retry.as_ref().unwrap().attempts, Some(10));
        let auth = r.auth.as_ref().unwrap();
        assert_eq!(auth.ssh_key.as_deref(), Some("/path/to/private/key"));
        assert_eq!(
            auth.ssh_key_passphrase.as_deref(),
            Some("sshPassPhrase-123")
        );
        assert_eq!(repos[0].written_as("auth.ssh_key"), "sshPrivKey");
        assert_eq!(repos[0].written_as("on_success.touch"), "trigger");
        assert!(r.label.is_none() && r.label_type.is_none() && r.trigger.is_none());
        assert!(r.ssh_priv_key.is_none() && r.ssh_pass_phrase.is_none());
    }

    #[test]
    fn colons_inside_variables_do_not_count() {
        assert_eq!(colons("h:1"), vec![1]);
        assert_eq!(colons("${H:-a:b}"), Vec::<usize>::new());
        assert_eq!(colons("${H:-a}:1"), vec![7]);
        assert_eq!(colons("$${H:1"), vec![4]);
        assert_eq!(colons("${H:1"), Vec::<usize>::new());
        assert_eq!(colons("::1"), vec![0, 1]);
    }
}
