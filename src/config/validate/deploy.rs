//! A repo's publishing keys: `publish`, `keep`, `grace`, and which other keys an atomic publish
//! cannot honour.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{DAY, Validator};
use crate::config::deploy::{DEFAULT_GRACE, DEFAULT_KEEP, Deploy, Publish};
use crate::config::raw::RawRepo;

/// `keep`: every kept tree is a full copy of the files; past 100 the disk fills for nothing.
const KEEP: RangeInclusive<i64> = 0..=100;

/// `grace`: zero removes a replaced tree at the next sync; past a day no request is still
/// reading it.
const GRACE: RangeInclusive<Duration> = Duration::ZERO..=DAY;

impl Validator<'_, '_> {
    pub(super) fn deploy(&mut self, r: &RawRepo) -> Deploy {
        let publish = match self.opt("publish", &r.publish).as_deref() {
            None | Some("in_place") => Publish::InPlace,
            Some("atomic") => Publish::Atomic,
            Some(other) => {
                self.problem(
                    "publish",
                    format!("`{other}` is not one of in_place, atomic"),
                );
                Publish::InPlace
            }
        };
        let keep = match r.keep {
            None => DEFAULT_KEEP,
            Some(k) if KEEP.contains(&k) => k as usize,
            Some(k) => {
                self.within("keep", k, KEEP);
                DEFAULT_KEEP
            }
        };
        let grace = self.duration_within("grace", &r.grace, DEFAULT_GRACE, GRACE);
        if publish != Publish::Atomic {
            for (key, set) in [("keep", r.keep.is_some()), ("grace", r.grace.is_some())] {
                if set {
                    self.problem(key, "applies to `publish: atomic` only");
                }
            }
        }
        if publish == Publish::Atomic && r.submodules == Some(true) {
            self.problem(
                "submodules",
                "is not supported with `publish: atomic` (each tree is a plain checkout)",
            );
        }
        Deploy {
            publish,
            keep,
            grace,
        }
    }
}
