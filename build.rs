//! Link options for the `hookmirror` binary, for a smaller resident set (README, Performance (e)).
//!
//! - `-z pack-relative-relocs` (DT_RELR): the ~58,000 relative relocations of a PIE binary in a
//!   few kilobytes instead of 1.4 MB that the loader reads at every start. A RELR binary needs
//!   glibc 2.36 or newer where it runs, so it is used only for a build for this machine whose
//!   glibc is that new.
//! - `--symbol-ordering-file=build/hot-symbols.txt`: the functions a daemon runs (start-up,
//!   syncs, webhooks, the API; the list is made by `build/hot-symbols.sh` under callgrind) are
//!   placed together at the start of `.text`, so the pages it touches are not spread over the
//!   whole 13 MB of code. Only with LLVM's lld, which rustc uses to link x86_64 Linux binaries
//!   since 1.90; a symbol missing from the list only means less gain, never a wrong binary.
//!
//! `HOOKMIRROR_PLAIN_LINK=1` turns both off (another linker, a binary for an older system).

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=HOOKMIRROR_PLAIN_LINK");
    if env::var_os("HOOKMIRROR_PLAIN_LINK").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    let native = var("TARGET") == var("HOST");
    if native && host_glibc().is_some_and(|v| v >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let custom_linker = var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        || env::vars().any(|(k, _)| k.starts_with("CARGO_TARGET_") && k.ends_with("_LINKER"));
    if var("TARGET") == "x86_64-unknown-linux-gnu" && rustc_minor() >= 90 && !custom_linker {
        let list = Path::new(&var("CARGO_MANIFEST_DIR")).join("build/hot-symbols.txt");
        if list.is_file() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                list.display()
            );
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
}

/// This machine's glibc version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn host_glibc() -> Option<(u32, u32)> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.split('.').next()?.parse().ok()?))
}

/// The minor version of the compiler building this (`rustc 1.95.0 (...)` → 95), 0 if unknown.
fn rustc_minor() -> u32 {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split('.').nth(1).and_then(|m| m.parse().ok()))
        .unwrap_or(0)
}
