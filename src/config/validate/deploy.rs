//! A repo's publishing keys: `mode`, `publish`, `keep`, `grace`, `verify`, `pre_publish`, and
//! which other keys a mirror or an atomic publish cannot honour. Whether a key file exists and
//! parses is `load`'s to check (the only part that reads files).

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{DAY, TIMEOUT, Validator};
use crate::config::Target;
use crate::config::deploy::{
    DEFAULT_GRACE, DEFAULT_KEEP, DEFAULT_PRE_PUBLISH_TIMEOUT, Deploy, PrePublish, Publish,
    RepoMode, Verify, VerifyMode,
};
use crate::config::raw::RawRepo;

/// `keep`: every kept tree is a full copy of the files; past 100 the disk fills for nothing.
const KEEP: RangeInclusive<i64> = 0..=100;

/// `grace`: zero removes a replaced tree at the next sync; past a day no request is still
/// reading it.
const GRACE: RangeInclusive<Duration> = Duration::ZERO..=DAY;

impl Validator<'_, '_> {
    pub(super) fn deploy(&mut self, r: &RawRepo, target: &Target) -> Deploy {
        let mode = match self.opt("mode", &r.mode).as_deref() {
            None | Some("checkout") => RepoMode::Checkout,
            Some("mirror") => RepoMode::Mirror,
            Some(other) => {
                self.problem("mode", format!("`{other}` is not one of checkout, mirror"));
                RepoMode::Checkout
            }
        };
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
        let verify = self.verify(r, target);
        let pre_publish = self.pre_publish(r);
        if mode == RepoMode::Mirror {
            self.mirror_keys(r);
        }
        Deploy {
            mode,
            publish,
            keep,
            grace,
            verify,
            pre_publish,
        }
    }

    /// A mirror holds every ref and no working tree: the keys of a checkout mean nothing there.
    fn mirror_keys(&mut self, r: &RawRepo) {
        let checkout_keys = [
            ("branch", r.branch.is_some()),
            ("tag", r.tag.is_some()),
            ("depth", r.depth.is_some_and(|d| d != 0)),
            ("clean", r.clean == Some(true)),
            ("submodules", r.submodules == Some(true)),
            ("publish", r.publish.is_some()),
            ("keep", r.keep.is_some()),
            ("grace", r.grace.is_some()),
            ("verify", r.verify.is_some()),
            ("pre_publish", r.pre_publish.is_some()),
            (
                "on_success.touch",
                r.on_success.as_ref().is_some_and(|o| o.touch.is_some()),
            ),
        ];
        for (key, set) in checkout_keys {
            if set {
                self.problem(
                    key,
                    "does not apply to `mode: mirror` (a bare repository with every branch and tag, full history, no working tree)",
                );
            }
        }
    }

    fn verify(&mut self, r: &RawRepo, target: &Target) -> Verify {
        let Some(raw) = &r.verify else {
            return Verify::default();
        };
        let mode = match self.opt("verify.mode", &raw.mode).as_deref() {
            None | Some("none") => VerifyMode::None,
            Some("head") => VerifyMode::Head,
            Some("tag") => VerifyMode::Tag,
            Some(other) => {
                self.problem(
                    "verify.mode",
                    format!("`{other}` is not one of none, head, tag"),
                );
                VerifyMode::None
            }
        };
        let ssh_allowed_signers = raw
            .ssh_allowed_signers
            .as_ref()
            .map(|p| self.path("verify.ssh_allowed_signers", p, false));
        let gpg_keys: Vec<_> = raw
            .gpg_keys
            .iter()
            .flatten()
            .map(|p| self.path("verify.gpg_keys", p, false))
            .collect();
        if mode != VerifyMode::None && ssh_allowed_signers.is_none() && gpg_keys.is_empty() {
            self.problem(
                "verify.mode",
                "needs trusted keys: set `ssh_allowed_signers` (git's allowed_signers file) or `gpg_keys` (armored OpenPGP public keys)",
            );
        }
        if mode == VerifyMode::Tag && !matches!(target, Target::Tag(_)) {
            self.problem(
                "verify.mode",
                "`tag` verifies the annotated tag the repo follows: set `tag:` (or use `head`)",
            );
        }
        Verify {
            mode,
            ssh_allowed_signers,
            gpg_keys,
        }
    }

    fn pre_publish(&mut self, r: &RawRepo) -> Option<PrePublish> {
        let raw = r.pre_publish.as_ref()?;
        let command: Vec<String> = raw
            .command
            .iter()
            .flatten()
            .map(|a| self.expand("pre_publish.command", a))
            .collect();
        if command.first().is_none_or(|c| c.trim().is_empty()) {
            self.problem(
                "pre_publish.command",
                "must name a program: an argv list such as [\"make\", \"check\"]",
            );
        }
        let timeout = self.duration_within(
            "pre_publish.timeout",
            &raw.timeout,
            DEFAULT_PRE_PUBLISH_TIMEOUT,
            TIMEOUT,
        );
        Some(PrePublish { command, timeout })
    }
}
