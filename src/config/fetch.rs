//! What one fetch may cost: time ([`Timeouts`]: `sync_timeout`, `stall_timeout`) and what the
//! remote may send ([`FetchLimits`]: `limits.max_advertisement`, `max_refs`, `max_pack`,
//! `max_objects`). A remote chooses every byte it sends; these keep a hostile or broken one from
//! holding a worker, filling the disk or the daemon's memory.

use std::time::Duration;

/// How long a sync may take: `sync_timeout` and `stall_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One attempt's deadline, from its start to the end of its last network read.
    pub sync: Duration,
    /// A transfer that receives less than 1 KiB within this is stalled (a silent or trickling
    /// remote); also how long connecting and an SSH key exchange may take.
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            // A clone of a large repository over a slow link takes minutes; past ten something is
            // wrong, and the worker is needed elsewhere.
            sync: Duration::from_secs(600),
            // git's own `http.lowSpeedTime` idea; a forge under load may think for tens of
            // seconds before it sends a pack, a remote silent for a minute is gone.
            stall: Duration::from_secs(60),
        }
    }
}

/// What one fetch may receive from the remote. Past one of them the sync fails with kind
/// `too_large`, naming the key to raise; nothing is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Bytes of the ref advertisement (the list of refs the remote sends first).
    pub max_advertisement: u64,
    /// Refs in the advertisement.
    pub max_refs: u64,
    /// Bytes received after the advertisement (the pack, with its framing).
    pub max_pack: u64,
    /// Objects a pack may declare in its header.
    pub max_objects: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            // The largest forges' busiest repositories advertise a few hundred thousand refs
            // (pull-request refs included), ~60 bytes each: tens of MB.
            max_advertisement: 64 << 20,
            max_refs: 1_000_000,
            // Forges advise keeping a repository under a few GB; a deploy mirror is rarely a
            // tenth of that (a whole-history clone of the Linux kernel, ~5 GB, needs more).
            max_pack: 4 << 30,
            // libgit2 keeps ~125 bytes per object while it indexes a pack (measured: README,
            // "Limits"), so this also bounds a fetch's memory: ~600 MB at most. Most
            // repositories have far fewer; the Linux kernel has ~11 million.
            max_objects: 5_000_000,
        }
    }
}

/// A size as a config writes it: `1KiB`, `64MiB`, `4GiB`, `1TiB`, else bytes.
pub fn size_text(n: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shown_in_the_largest_whole_unit() {
        assert_eq!(size_text(1024), "1KiB");
        assert_eq!(size_text(64 << 20), "64MiB");
        assert_eq!(size_text(8 << 30), "8GiB");
        assert_eq!(size_text(1 << 40), "1TiB");
        assert_eq!(size_text(1000), "1000B");
        assert_eq!(size_text(1536), "1536B");
    }
}
