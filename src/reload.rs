//! What triggers a config reload: a file watcher on the config file's parent directory (editors
//! and `git pull` replace files by rename, which a watch on the file itself would miss) and on the
//! folders of the secret files it names, and SIGHUP. Both only send a cause on a channel; the
//! daemon debounces, validates and applies (see `run::run_on`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::config::Config;

/// The files whose change means a reload: the config and every file it reads.
pub fn watched_files(config: &Config) -> HashSet<PathBuf> {
    let mut files = HashSet::new();
    files.extend(config.source.clone());
    files.extend(config.api.tokens.iter().filter_map(|t| t.file.clone()));
    let hooks = config.hooks.iter().flat_map(|h| &h.secrets);
    files.extend(hooks.filter_map(|c| c.file.clone()));
    for r in &config.repos {
        files.extend(r.secrets.iter().filter_map(|c| c.file.clone()));
        files.extend(r.auth.token.as_ref().and_then(|c| c.file.clone()));
        files.extend(
            r.auth
                .ssh_key_passphrase
                .as_ref()
                .and_then(|c| c.file.clone()),
        );
        // Key files are read at every sync; watching them makes a reload report a broken one.
        let verify = &r.deploy.verify;
        files.extend(verify.ssh_allowed_signers.clone());
        files.extend(verify.gpg_keys.iter().cloned());
    }
    if let Some(f) = &config.fleet {
        // A rotated credentials or token file reconnects the fleet with it.
        for c in [&f.credentials, &f.token].into_iter().flatten() {
            files.extend(c.file.clone());
        }
    }
    files
}

/// Watches the folders of [`watched_files`].
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    files: Arc<Mutex<Watched>>,
}

#[derive(Default)]
struct Watched {
    files: HashSet<PathBuf>,
    fingerprint: Vec<Option<(PathBuf, std::time::SystemTime, u64)>>,
}

/// What each file resolves to (through symlinks), its modification time and size.
fn fingerprint(files: &HashSet<PathBuf>) -> Vec<Option<(PathBuf, std::time::SystemTime, u64)>> {
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    sorted
        .into_iter()
        .map(|f| {
            let real = std::fs::canonicalize(f).ok()?;
            let meta = std::fs::metadata(&real).ok()?;
            Some((real, meta.modified().ok()?, meta.len()))
        })
        .collect()
}

impl Watcher {
    /// `None` when the config has no file, or the platform's watcher cannot start (SIGHUP still
    /// works; the reason is logged).
    pub fn start(config: &Config, tx: mpsc::Sender<&'static str>) -> Option<Watcher> {
        config.source.as_ref()?;
        let files: Arc<Mutex<Watched>> = Arc::default();
        let seen = files.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let mut w = seen.lock().unwrap_or_else(|p| p.into_inner());
            let named = event.paths.iter().any(|p| w.files.contains(p));
            // A file can change without an event naming it: a symlink whose target folder was
            // swapped (Kubernetes ConfigMaps, release directories). Compare what the files are.
            let now = fingerprint(&w.files);
            if named || now != w.fingerprint {
                w.fingerprint = now;
                let _ = tx.try_send("file changed");
            }
        };
        let inner = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config for changes; reload with SIGHUP");
                return None;
            }
        };
        let mut w = Watcher {
            inner,
            dirs: HashSet::new(),
            files,
        };
        w.rewatch(config);
        Some(w)
    }

    /// Follows the files a (re)loaded config names.
    pub fn rewatch(&mut self, config: &Config) {
        let files = watched_files(config);
        let dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for d in dirs.difference(&self.dirs.clone()) {
            match self.inner.watch(d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(d.clone());
                }
                Err(e) => tracing::warn!(dir = %d.display(), error = %e, "cannot watch folder"),
            }
        }
        let mut w = self.files.lock().unwrap_or_else(|p| p.into_inner());
        w.fingerprint = fingerprint(&files);
        w.files = files;
    }
}

/// Sends a reload cause on every SIGHUP (`systemctl reload`).
pub fn on_sighup(tx: mpsc::Sender<&'static str>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send("SIGHUP").await.is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
    }
}
