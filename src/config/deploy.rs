//! How a repository is published: in place or through a symlink flip, which signatures a commit
//! needs, the check it must pass first, or a bare mirror of every ref instead of a checkout.

use std::path::PathBuf;
use std::time::Duration;

/// What `directory` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepoMode {
    /// A checkout of one branch or tag.
    #[default]
    Checkout,
    /// A bare repository with every branch and tag of the remote; deleted refs are pruned.
    Mirror,
}

/// How a new commit reaches `directory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Publish {
    /// `git reset --hard` in the checkout: a reader may see files of two commits meanwhile.
    #[default]
    InPlace,
    /// A tree per commit beside the directory, which is a symlink flipped with one `rename(2)`.
    Atomic,
}

/// What must be signed before a commit is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyMode {
    #[default]
    None,
    /// The tip commit's own signature.
    Head,
    /// The signature of the annotated tag `tag:` follows.
    Tag,
}

/// Signature checking (`verify:`). The key files are read at every sync, so a changed file is
/// in force for the next one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verify {
    pub mode: VerifyMode,
    /// git's `gpg.ssh.allowedSignersFile` format: principals, options, a public key.
    pub ssh_allowed_signers: Option<PathBuf>,
    /// Armored OpenPGP public keys.
    pub gpg_keys: Vec<PathBuf>,
}

/// A command that must succeed in the new tree before it is published (`pre_publish:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrePublish {
    /// argv; run without a shell.
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// A repository's publishing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub mode: RepoMode,
    pub publish: Publish,
    /// `publish: atomic`: earlier trees kept after a flip.
    pub keep: usize,
    /// `publish: atomic`: how long a tree past `keep` stays after it stopped being published, so
    /// a reader in the middle of a request finishes; removed by the first sync after that.
    pub grace: Duration,
    pub verify: Verify,
    pub pre_publish: Option<PrePublish>,
}

/// Default [`Deploy::keep`]: one earlier tree to go back to.
pub const DEFAULT_KEEP: usize = 1;
/// Default [`Deploy::grace`]: longer than any web request should take.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// Default [`PrePublish::timeout`]: a test suite or a site build, not a hang.
pub const DEFAULT_PRE_PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            mode: RepoMode::Checkout,
            publish: Publish::InPlace,
            keep: DEFAULT_KEEP,
            grace: DEFAULT_GRACE,
            verify: Verify::default(),
            pre_publish: None,
        }
    }
}
