//! Where a key stands in the config text, for problems' line numbers: best effort, by reading
//! lines (YAML items under a list's heading, TOML `[[list]]` tables); JSON gets none. Pure.

use super::format::Format;

/// Best-effort line of `key`: the first line that defines it, after the start of repo number
/// `repo_index` when one is given (YAML list items under `repos:`, TOML `[[repos]]`).
pub(crate) fn find_key_line(
    text: &str,
    format: Format,
    key: &str,
    repo_index: Option<usize>,
) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = match repo_index {
        Some(i) => item_lines(&lines, format, "repos", i).map_or(0, |(start, _)| start),
        None => 0,
    };
    key_line_in(&lines, key, start, lines.len())
}

/// Best-effort line of `key` in item `index` of the nested list `list` (`api.tokens`: YAML
/// items under `tokens:`, TOML `[[api.tokens]]`), or of the item itself when it lacks the key.
pub(crate) fn find_item_key_line(
    text: &str,
    format: Format,
    list: &str,
    index: usize,
    key: &str,
) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    match item_lines(&lines, format, list, index) {
        Some((start, end)) => key_line_in(&lines, key, start, end).or(Some(start + 1)),
        None => key_line_in(&lines, key, 0, lines.len()),
    }
}

/// The first line in `lines[start..end]` that defines `key` (1-based).
fn key_line_in(lines: &[&str], key: &str, start: usize, end: usize) -> Option<usize> {
    let defines = |l: &str| {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        let t = t.trim_start_matches(['"', '\'']);
        t.strip_prefix(key).is_some_and(|rest| {
            let rest = rest.trim_start_matches(['"', '\'']).trim_start();
            rest.starts_with(':') || rest.starts_with('=')
        })
    };
    lines
        .iter()
        .enumerate()
        .take(end)
        .skip(start)
        .find(|(_, l)| defines(l))
        .map(|(n, _)| n + 1)
}

/// Where item `index` of `list` starts and where the next item (or the list) begins (0-based,
/// end exclusive). YAML: `- ` items under the list's heading; TOML: `[[list]]` tables.
fn item_lines(lines: &[&str], format: Format, list: &str, index: usize) -> Option<(usize, usize)> {
    match format {
        Format::Toml => {
            let start = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim() == format!("[[{list}]]"))
                .nth(index)
                .map(|(n, _)| n)?;
            let end = (start + 1..lines.len())
                .find(|&n| lines[n].trim_start().starts_with('['))
                .unwrap_or(lines.len());
            Some((start, end))
        }
        Format::Yaml => {
            // A top-level list's heading is not indented; a nested one's is (`  tokens:`).
            let last = list.rsplit('.').next().unwrap_or(list);
            let heading = format!("{last}:");
            let nested = list.contains('.');
            let start = lines
                .iter()
                .position(|l| l.trim_end() == heading || (nested && l.trim() == heading))?;
            let indent_of = |l: &str| l.len() - l.trim_start().len();
            let outer = indent_of(lines[start]);
            // The block ends at the next key as far out as the heading.
            let ends = |l: &&str| {
                let t = l.trim_start();
                !t.is_empty()
                    && !t.starts_with('#')
                    && (indent_of(l) < outer || (indent_of(l) == outer && !t.starts_with("- ")))
            };
            let block_end = (start + 1..lines.len())
                .find(|&n| ends(&lines[n]))
                .unwrap_or(lines.len());
            let items: Vec<(usize, usize)> = (start + 1..block_end)
                .filter(|&n| lines[n].trim_start().starts_with("- "))
                .map(|n| (n, indent_of(lines[n])))
                .collect();
            let indent = items.iter().map(|(_, i)| *i).min()?;
            let mut at_indent = items.iter().filter(|(_, i)| *i == indent).skip(index);
            let (first, _) = at_indent.next()?;
            let end = at_indent.next().map_or(block_end, |(n, _)| *n);
            Some((*first, end))
        }
        Format::Json => None,
    }
}
