//! The layout rules of ARCHITECTURE.md, checked on the source tree: arrows between modules point
//! one way only (no two top-level modules import each other, directly or around a loop, and no
//! two files of one folder do), and no file in `src/` grows past 600 lines unless
//! ARCHITECTURE.md names it with the reason.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const MAX_LINES: usize = 600;

/// Every `.rs` file under `src/` with its module path (`sync::git`, `daemon`, `lib`).
fn modules() -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::from(SRC)];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(SRC).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|l| l == "mod") {
                    parts.pop();
                }
                out.insert(parts.join("::"), p);
            }
        }
    }
    out
}

/// Code without comments and string literals (good enough for `use` and paths).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// The modules `module` refers to: `crate::a::b…` paths (resolved to the longest known module)
/// and `super::x` siblings, expanding `use crate::{a, b::c}` groups one level deep.
fn references(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent: Vec<&str> = {
        let mut p: Vec<&str> = module.split("::").collect();
        p.pop();
        p
    };
    let mut out = BTreeSet::new();
    let mut resolve = |segments: Vec<String>| {
        for n in (1..=segments.len()).rev() {
            let candidate = segments[..n].join("::");
            if known.contains(&candidate) {
                if candidate != module {
                    out.insert(candidate);
                }
                return;
            }
        }
    };
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path_end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{'))
                .unwrap_or(rest.len());
            let head = &rest[..path_end];
            let mut prefixes = vec![base.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
            let path = match head.split_once('{') {
                Some((before_group, _)) => {
                    // `crate::{a, b::c}` or `crate::x::{a, b}`: each member one level deep.
                    let group_end = rest.find('}').unwrap_or(rest.len());
                    let group = &rest[path_end..group_end];
                    let stem = ident(before_group);
                    for member in group.split(',') {
                        let mut segs: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                        segs.extend(stem.iter().cloned());
                        segs.extend(ident(member));
                        resolve(segs);
                    }
                    stem
                }
                None => ident(head),
            };
            let mut segs = prefixes.remove(0);
            segs.extend(path);
            resolve(segs);
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

/// A cycle in `edges`, if any (as the list of nodes around it).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, p)| (m.clone(), references(m, &code_of(p), &known)))
        .collect()
}

#[test]
fn top_level_modules_do_not_import_each_other() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph() {
        for to in tos {
            if top(&from) != top(&to) {
                edges
                    .entry(top(&from).to_string())
                    .or_default()
                    .insert(top(&to).to_string());
            }
        }
    }
    assert!(
        edges.get("daemon").is_some_and(|d| d.contains("sync")),
        "the scan sees `daemon` use `sync`: {edges:?}"
    );
    assert_eq!(
        find_cycle(&edges),
        None,
        "import loop between top-level modules"
    );
}

#[test]
fn files_of_one_folder_do_not_import_each_other() {
    // Siblings only: a folder's mod.rs re-exports its children and they use its shared types,
    // which is how a folder is one module.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph() {
        let parent = from.rsplit_once("::").map(|(p, _)| p.to_string());
        for to in tos {
            let to_parent = to.rsplit_once("::").map(|(p, _)| p.to_string());
            if parent.is_some() && parent == to_parent {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert_eq!(find_cycle(&edges), None, "import loop inside a folder");
}

#[test]
fn no_source_file_is_longer_than_600_lines_unless_explained() {
    let architecture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap();
    let mut long = Vec::new();
    for path in modules().values() {
        let lines = std::fs::read_to_string(path).unwrap().lines().count();
        let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let rel = rel.to_string_lossy().trim_start_matches('/').to_string();
        if lines > MAX_LINES && !architecture.contains(&format!("`{rel}`")) {
            long.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "longer than {MAX_LINES} lines and not explained in ARCHITECTURE.md: {long:?}"
    );
}

#[test]
fn the_reference_scan_finds_groups_and_super_paths() {
    let known: BTreeSet<String> = ["a", "a::x", "a::y", "b", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let code = "use crate::{b, c::Thing};\nuse super::y::Z;\nfn f() { crate::b::g(); }\n";
    let found = references("a::x", code, &known);
    assert_eq!(
        found,
        ["a::y", "b", "c"].iter().map(|s| s.to_string()).collect()
    );
    let mut edges = BTreeMap::new();
    edges.insert("p".to_string(), BTreeSet::from(["q".to_string()]));
    edges.insert("q".to_string(), BTreeSet::from(["p".to_string()]));
    assert!(find_cycle(&edges).is_some());
}
