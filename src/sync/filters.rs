//! Whether a first checkout may skip libgit2's content filters: the one part of checking out
//! 20,000 files that costs libgit2 far more than git (attributes looked up and a filter list
//! built for every file; about a third of a large first checkout).
//!
//! Filters change file content only through attributes (`text`, `eol`, `ident`, `filter=`
//! drivers such as Git LFS) or `core.autocrlf`. When no attribute file exists — none in the tree,
//! none in `$GIT_DIR/info/attributes`, `core.attributesFile`, the user's or the system's — and
//! `core.autocrlf` is off, every filter would pass content through unchanged, so skipping them
//! writes the same bytes. Anything unclear (an error reading the tree or config) keeps them.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, TreeWalkMode, TreeWalkResult};

/// True when the checkout of `commit` needs content filters (or it cannot be told).
pub(super) fn needed(git: &Repository, commit: Oid) -> bool {
    let Ok(config) = git.config() else {
        return true;
    };
    let autocrlf = config
        .get_string("core.autocrlf")
        .map(|v| v.trim().to_ascii_lowercase());
    match autocrlf {
        Ok(v) if !matches!(v.as_str(), "false" | "no" | "off" | "0" | "") => return true,
        Ok(_) => {}
        Err(e) if e.code() != git2::ErrorCode::NotFound => return true,
        Err(_) => {}
    }
    let mut outside: Vec<PathBuf> = vec![
        git.path().join("info/attributes"),
        PathBuf::from("/etc/gitattributes"),
    ];
    if let Ok(p) = config.get_path("core.attributesfile") {
        outside.push(p);
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(x) = xdg {
        outside.push(x.join("git/attributes"));
    }
    if outside.iter().any(|p| p.exists()) {
        return true;
    }
    let Ok(tree) = git.find_commit(commit).and_then(|c| c.tree()) else {
        return true;
    };
    let mut found = false;
    let walked = tree.walk(TreeWalkMode::PreOrder, |_, entry| {
        if entry.name_bytes() == b".gitattributes" {
            found = true;
            TreeWalkResult::Abort
        } else {
            TreeWalkResult::Ok
        }
    });
    // An aborted walk reports an error too; one that failed by itself leaves it unclear.
    found || walked.is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_with(git: &Repository, files: &[(&str, &str)]) -> Oid {
        let mut index = git.index().unwrap();
        for (path, content) in files {
            let blob = git.blob(content.as_bytes()).unwrap();
            let entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).unwrap();
        }
        let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@invalid").unwrap();
        git.commit(None, &sig, &sig, "c", &tree, &[]).unwrap()
    }

    #[test]
    fn attributes_anywhere_or_autocrlf_keep_the_filters() {
        let dir = tempfile::tempdir().unwrap();
        let git = Repository::init(dir.path()).unwrap();
        // The test's own environment may have a user or system attributes file.
        let outside_files = needed(&git, commit_with(&git, &[("a.txt", "a\n")]));
        let plain = commit_with(&git, &[("a.txt", "a\n"), ("d/b.txt", "b\n")]);
        assert_eq!(needed(&git, plain), outside_files);
        let deep = commit_with(&git, &[("d/e/.gitattributes", "*.txt text\n")]);
        assert!(needed(&git, deep));
        if !outside_files {
            git.config()
                .unwrap()
                .set_str("core.autocrlf", "input")
                .unwrap();
            assert!(needed(&git, plain));
            git.config()
                .unwrap()
                .set_bool("core.autocrlf", false)
                .unwrap();
            assert!(!needed(&git, plain));
            std::fs::create_dir_all(git.path().join("info")).unwrap();
            std::fs::write(git.path().join("info/attributes"), "* ident\n").unwrap();
            assert!(needed(&git, plain));
        }
    }
}
