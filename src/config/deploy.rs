//! How a repository is published: in place, or through a symlink flipped to a tree per commit.

use std::time::Duration;

/// How a new commit reaches `directory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Publish {
    /// `git reset --hard` in the checkout: a reader may see files of two commits meanwhile.
    #[default]
    InPlace,
    /// A tree per commit beside the directory, which is a symlink flipped with one `rename(2)`.
    Atomic,
}

/// A repository's publishing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub publish: Publish,
    /// `publish: atomic`: earlier trees kept after a flip.
    pub keep: usize,
    /// `publish: atomic`: how long a tree past `keep` stays after it stopped being published, so
    /// a reader in the middle of a request finishes; removed by the first sync after that.
    pub grace: Duration,
}

/// Default [`Deploy::keep`]: one earlier tree to go back to.
pub const DEFAULT_KEEP: usize = 1;
/// Default [`Deploy::grace`]: longer than any web request should take.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            publish: Publish::InPlace,
            keep: DEFAULT_KEEP,
            grace: DEFAULT_GRACE,
        }
    }
}
