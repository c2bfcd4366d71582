//! The outbox on disk (`fleet.outbox`): each repository's waiting request in a file of its own
//! (`<repository>.json`, written to a temporary name, synced, renamed), read back when the link
//! starts, removed once JetStream stored it. A node that dies while NATS is away then still
//! hands on, when it is back, what it accepted. Blocking: called on blocking threads.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::message::{self, Message};

/// The outbox folder.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The folder, created when missing (only its owner may read it: the requests name
    /// repositories and commits).
    pub fn open(dir: &Path) -> Result<Spool, String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("fleet.outbox {}: {e}", dir.display()))?;
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, repo: &str) -> PathBuf {
        self.dir.join(format!("{}.json", message::token(repo)))
    }

    /// Every request written before; files that cannot be read are named in the log and left.
    pub fn load(&self) -> Vec<Message> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Message>(&b).map_err(|e| e.to_string()))
            {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "fleet: outbox file unreadable; left as it is")
                }
            }
        }
        out
    }

    /// Writes `m` as its repository's waiting request, durably.
    pub fn save(&self, m: &Message) -> std::io::Result<()> {
        let path = self.file(&m.repo);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&m.encode())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Removes the file of `m`'s repository if it still holds `m` (not a newer request).
    pub fn sent(&self, m: &Message) {
        let path = self.file(&m.repo);
        let holds = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Message>(&b).ok())
            .is_some_and(|on_disk| on_disk.id == m.id);
        if holds && let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %e, "fleet: sent request's outbox file not removed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn msg(repo: &str, id: &str) -> Message {
        message::outboxed(repo, id, false)
    }

    #[test]
    fn requests_survive_in_files_until_sent_and_a_newer_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("outbox")).unwrap();
        spool.save(&msg("site", "1")).unwrap();
        spool.save(&msg("a.b", "2")).unwrap();
        std::fs::write(dir.path().join("outbox/junk.json"), "{").unwrap();
        let mut ids: Vec<String> = Spool::open(&dir.path().join("outbox"))
            .unwrap()
            .load()
            .into_iter()
            .map(|m| m.id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["1", "2"]);
        spool.save(&msg("site", "3")).unwrap();
        spool.sent(&msg("site", "1"));
        spool.sent(&msg("a.b", "2"));
        let left: Vec<String> = spool.load().into_iter().map(|m| m.id).collect();
        assert_eq!(left, ["3"]);
        assert!(!dir.path().join("outbox/a%2Eb.json").exists());
    }
}
