//! Git reference-name rules (`git check-ref-format`), used for configured branches and tags and
//! for refs that arrive in webhook payloads. Pure: no git2, so payload checks cost nothing.

/// True when `name` (a full ref such as `refs/heads/main`, or a short branch/tag name) obeys
/// git's rules for reference names. Names that begin with `-` are refused too: such a name could
/// be read as an option by a tool further down the line.
pub fn is_valid(name: &str) -> bool {
    if name.is_empty() || name == "@" || name.starts_with('-') || name.starts_with('/') {
        return false;
    }
    if name.ends_with('/') || name.ends_with('.') || name.contains("..") || name.contains("@{") {
        return false;
    }
    if name.contains("//") {
        return false;
    }
    for c in name.chars() {
        if (c as u32) < 0x20 || c == '\u{7f}' {
            return false;
        }
        if matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\') {
            return false;
        }
    }
    name.split('/')
        .all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "main",
            "refs/heads/main",
            "release/1.2",
            "v1.0.0",
            "feature-x",
            "a@b",
            "日本",
        ] {
            assert!(is_valid(n), "{n} should be valid");
        }
    }

    #[test]
    fn refuses_what_git_refuses() {
        for n in [
            "",
            "@",
            "--upload-pack=x",
            "-x",
            "refs/heads/../x",
            "a..b",
            "a\0b",
            "a\nb",
            "x.lock",
            "refs/heads/x.lock/y",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a/",
            "/a",
            "a//b",
            "a.",
            ".a",
            "refs/.hidden",
            "a@{1}",
        ] {
            assert!(!is_valid(n), "{n:?} should be invalid");
        }
    }
}
