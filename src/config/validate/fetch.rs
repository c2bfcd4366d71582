//! What one fetch may receive: the top-level `limits.max_advertisement`, `max_refs`, `max_pack`
//! and `max_objects` (every repository's default) and a repository's own `limits` block (also in
//! `defaults`), whose keys override them one by one.

use std::ops::RangeInclusive;

use super::Validator;
use crate::config::raw::{RawConfig, RawRepo, RawSize};
use crate::config::{FetchLimits, size_text};

/// An advertisement under 1KiB holds a handful of refs; past 4GiB it is no repository's.
const MAX_ADVERTISEMENT: RangeInclusive<u64> = 1024..=4 << 30;

/// At least one ref; a hundred million is far past any forge's largest repository.
const MAX_REFS: RangeInclusive<i64> = 1..=100_000_000;

/// From 1KiB (an empty pack is 32 bytes) to 1TiB.
const MAX_PACK: RangeInclusive<u64> = 1024..=1 << 40;

/// A pack's header counts its objects in 32 bits.
const MAX_OBJECTS: RangeInclusive<i64> = 1..=u32::MAX as i64;

/// The four keys as written in one block.
struct Keys<'a> {
    max_advertisement: &'a Option<RawSize>,
    max_refs: &'a Option<i64>,
    max_pack: &'a Option<RawSize>,
    max_objects: &'a Option<i64>,
}

impl Validator<'_, '_> {
    /// The top-level `limits.max_*`: the built-in defaults where unset.
    pub(super) fn fetch_limits(&mut self, raw: &RawConfig) -> FetchLimits {
        let base = FetchLimits::default();
        let Some(l) = &raw.limits else { return base };
        self.fetch_keys(
            base,
            Keys {
                max_advertisement: &l.max_advertisement,
                max_refs: &l.max_refs,
                max_pack: &l.max_pack,
                max_objects: &l.max_objects,
            },
        )
    }

    /// A repository's `limits` (already filled from `defaults.limits`) over the top level's.
    pub(super) fn repo_fetch_limits(&mut self, r: &RawRepo) -> FetchLimits {
        let base = self.fetch_defaults;
        let Some(l) = &r.limits else { return base };
        self.fetch_keys(
            base,
            Keys {
                max_advertisement: &l.max_advertisement,
                max_refs: &l.max_refs,
                max_pack: &l.max_pack,
                max_objects: &l.max_objects,
            },
        )
    }

    fn fetch_keys(&mut self, base: FetchLimits, k: Keys<'_>) -> FetchLimits {
        FetchLimits {
            max_advertisement: self.size_within(
                "limits.max_advertisement",
                k.max_advertisement,
                base.max_advertisement,
                MAX_ADVERTISEMENT,
            ),
            max_refs: k
                .max_refs
                .filter(|&n| self.within("limits.max_refs", n, MAX_REFS))
                .map_or(base.max_refs, |n| n as u64),
            max_pack: self.size_within("limits.max_pack", k.max_pack, base.max_pack, MAX_PACK),
            max_objects: k
                .max_objects
                .filter(|&n| self.within("limits.max_objects", n, MAX_OBJECTS))
                .map_or(base.max_objects, |n| n as u64),
        }
    }

    /// A byte size bounded to `range`; outside, the problem names the range as sizes.
    fn size_within(
        &mut self,
        field: &str,
        raw: &Option<RawSize>,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> u64 {
        let Some(raw) = raw else { return default };
        let Some(n) = self.size(field, raw) else {
            return default;
        };
        let n = n as u64;
        if range.contains(&n) {
            return n;
        }
        let written = match raw {
            RawSize::Text(t) => t.trim().to_string(),
            RawSize::Bytes(b) => b.to_string(),
        };
        self.problem(
            field,
            format!(
                "must be between {} and {}, not {written}",
                size_text(*range.start()),
                size_text(*range.end())
            ),
        );
        default
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_bound, check, repo_with};
    use super::*;

    #[test]
    fn defaults_come_from_the_top_level_and_repos_override_key_by_key() {
        let c = check(&repo_with("")).unwrap();
        assert_eq!(c.repos[0].limits, FetchLimits::default());
        let text = "limits: {max_pack: 1GiB, max_refs: 5000}\n\
                    defaults:\n  limits: {max_objects: 300}\n\
                    repos:\n  - {url: /o.git, directory: /d, secret: s, limits: {max_pack: 2GiB}}\n  \
                    - {url: /o.git, directory: /e, secret: s, limits: {max_objects: 7}}\n  \
                    - {url: /o.git, directory: /f, secret: s}\n";
        let c = check(text).unwrap();
        let l = |i: usize| c.repos[i].limits;
        assert_eq!(
            (l(0).max_pack, l(0).max_refs, l(0).max_objects),
            (2 << 30, 5000, 300)
        );
        assert_eq!((l(1).max_pack, l(1).max_objects), (1 << 30, 7));
        assert_eq!((l(2).max_pack, l(2).max_objects), (1 << 30, 300));
        assert_eq!(
            l(2).max_advertisement,
            FetchLimits::default().max_advertisement
        );
    }

    #[test]
    fn intake_keys_are_not_a_repository_s() {
        let text = repo_with("    limits: {max_body: 1MiB}\n");
        let p = crate::config::parse_str(&text, crate::config::Format::Yaml).unwrap_err();
        assert!(p[0].message.contains("unknown key `max_body`"), "{p:?}");
    }

    #[test]
    fn sizes_and_counts_are_bounded() {
        let top = |key: &'static str| move |v: &str| format!("limits: {{{key}: {v}}}\n");
        let repo =
            |key: &'static str| move |v: &str| repo_with(&format!("    limits: {{{key}: {v}}}\n"));
        for text in [
            &top("max_advertisement") as &dyn Fn(&str) -> String,
            &repo("max_advertisement"),
        ] {
            let range = "between 1KiB and 4GiB";
            let (inside, outside) = (["1KiB", "64MiB", "4GiB"], ["1023", "4097MiB", "0"]);
            assert_bound(text, "limits.max_advertisement", range, &inside, &outside);
        }
        let range = "between 1KiB and 1TiB";
        let (inside, outside) = (["1024", "8GiB", "1TiB"], ["1000", "1025GiB", "2TiB"]);
        assert_bound(top("max_pack"), "limits.max_pack", range, &inside, &outside);
        assert_bound(
            repo("max_pack"),
            "limits.max_pack",
            range,
            &inside,
            &outside,
        );
        let range = "between 1 and 100000000";
        let (inside, outside) = (["1", "100000000"], ["0", "100000001", "-5"]);
        assert_bound(top("max_refs"), "limits.max_refs", range, &inside, &outside);
        let range = "between 1 and 4294967295";
        let (inside, outside) = (["1", "4294967295"], ["0", "4294967296"]);
        assert_bound(
            repo("max_objects"),
            "limits.max_objects",
            range,
            &inside,
            &outside,
        );
        let p = check("limits: {max_pack: lots}\n").unwrap_err();
        assert!(p[0].message.contains("is not a size"), "{p:?}");
    }
}
