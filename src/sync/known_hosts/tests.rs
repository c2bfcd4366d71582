//! Unit tests of the known_hosts check, including hashed entries made by `ssh-keygen -H`.

use super::*;

// Real keys made on this machine with `ssh-keygen -t ed25519|ecdsa -N '' -C ''`.
const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPEcfLDR9acnpM+FbR1MP/StFWuy/6tabFd7rIwZYbnE";
const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIDICEWVacCY8PSSk15PcWqU0KMkxFSeGgOhibSmYX8qw";
const ECDSA_C: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGtqhV7wyfVW0sr+DsY15SUNclqortEIYxNAX04zZgfYsDMER2I1moTWs+Jxa1GmuRLox44UqBt5aDaVhnOIxQ4=";
/// `ssh-keygen -lf` of ED_A.
const ED_A_FINGERPRINT: &str = "SHA256:vPguQUWNkCMSMAH00kZqkbeeqEtNkOH5BS2Y1WNEgAE";

/// Produced by `ssh-keygen -H` from the line
/// `[git.Example.org]:2222 ssh-ed25519 <ED_A>` (ssh-keygen hashes the lower-cased name).
const HASHED_GIT_EXAMPLE_2222: &str = "|1|uHAfU7f9zDCoAMCcMkQvrMhehl0=|gN8wG6WuohuGcPWfV9ddhWbu9dU= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPEcfLDR9acnpM+FbR1MP/StFWuy/6tabFd7rIwZYbnE";
/// Same run, from `github.com ssh-ed25519 <ED_B>`.
const HASHED_GITHUB: &str = "|1|2UJ6k60oj3kmxc4mWXH/kJrv25I=|+UsA0B4yvRhhfU8JfXU1Kl7oh40= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDICEWVacCY8PSSk15PcWqU0KMkxFSeGgOhibSmYX8qw";

const ED: &str = "ssh-ed25519";
const ECDSA: &str = "ecdsa-sha2-nistp256";

fn blob(b64: &str) -> Vec<u8> {
    STANDARD.decode(b64).expect("test key is base64")
}

fn mismatch(types: &[&str]) -> Verdict {
    Verdict::Mismatch {
        expected_types: types.iter().map(|t| t.to_string()).collect(),
    }
}

#[test]
fn plain_host_on_port_22_matches() {
    let kh = format!("github.com {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
}

#[test]
fn bracketed_host_and_port() {
    let kh = format!("[127.0.0.1]:2222 {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "127.0.0.1", 2222, ED, &blob(ED_A)),
        Verdict::Match
    );
    // Another port, or the default port, is another host.
    assert_eq!(
        check(&kh, "127.0.0.1", 2223, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    assert_eq!(
        check(&kh, "127.0.0.1", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    // A plain entry does not cover a non-default port.
    let kh = format!("127.0.0.1 {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "127.0.0.1", 2222, ED, &blob(ED_A)),
        Verdict::Unknown
    );
}

#[test]
fn ipv6_literal_with_or_without_brackets() {
    let kh = format!("[::1]:2222 {ED} {ED_A}\n::1 {ED} {ED_B}\n");
    assert_eq!(check(&kh, "::1", 2222, ED, &blob(ED_A)), Verdict::Match);
    assert_eq!(check(&kh, "[::1]", 2222, ED, &blob(ED_A)), Verdict::Match);
    assert_eq!(check(&kh, "[::1]", 22, ED, &blob(ED_B)), Verdict::Match);
}

#[test]
fn same_type_other_key_is_mismatch() {
    let kh = format!("github.com {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_B)),
        mismatch(&[ED])
    );
}

#[test]
fn only_other_key_types_is_mismatch() {
    let kh = format!("github.com {ED} {ED_A}\ngithub.com {ED} {ED_B}\n");
    // Deduplicated, in file order.
    assert_eq!(
        check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
        mismatch(&[ED])
    );
    let kh = format!("github.com {ECDSA} {ECDSA_C}\ngithub.com {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_B)),
        mismatch(&[ECDSA, ED])
    );
}

#[test]
fn any_matching_line_wins_over_other_keys() {
    let kh =
        format!("github.com {ED} {ED_B}\ngithub.com {ECDSA} {ECDSA_C}\ngithub.com {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
    assert_eq!(
        check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
        Verdict::Match
    );
}

#[test]
fn key_type_must_agree_too() {
    let kh = format!("github.com {ECDSA} {ED_A}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        mismatch(&[ECDSA])
    );
}

#[test]
fn rsa_signature_names_are_ssh_rsa() {
    // Any blob will do for a type-name check.
    let kh = format!("github.com ssh-rsa {ED_A}\n");
    for name in ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"] {
        assert_eq!(
            check(&kh, "github.com", 22, name, &blob(ED_A)),
            Verdict::Match
        );
    }
}

#[test]
fn unknown_host_and_empty_file() {
    let kh = format!("github.com {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "gitlab.com", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    assert_eq!(
        check("", "gitlab.com", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    assert_eq!(
        check("\n\n", "gitlab.com", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
}

#[test]
fn comments_blank_lines_and_trailing_comments() {
    let kh = format!(
        "# a comment github.com {ED} {ED_B}\n\n   \n\t# indented comment\n  github.com\t{ED}   {ED_A} root@somewhere extra words\r\n"
    );
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
    // The commented-out line is not an entry.
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_B)),
        mismatch(&[ED])
    );
}

#[test]
fn comma_separated_host_list() {
    let kh = format!("github.com,140.82.121.4,[ssh.github.com]:443 {ED} {ED_A}\n");
    for (host, port) in [
        ("github.com", 22),
        ("140.82.121.4", 22),
        ("ssh.github.com", 443),
    ] {
        assert_eq!(
            check(&kh, host, port, ED, &blob(ED_A)),
            Verdict::Match,
            "{host}:{port}"
        );
    }
    assert_eq!(
        check(&kh, "ssh.github.com", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
}

#[test]
fn host_names_compare_case_insensitively() {
    let kh = format!("GitHub.COM {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
    assert_eq!(
        check(&kh, "GITHUB.com", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
}

#[test]
fn hashed_entries_from_ssh_keygen() {
    let kh = format!("{HASHED_GIT_EXAMPLE_2222}\n{HASHED_GITHUB}\n");
    let a = blob(ED_A);
    let b = blob(ED_B);
    assert_eq!(check(&kh, "git.example.org", 2222, ED, &a), Verdict::Match);
    assert_eq!(check(&kh, "GIT.Example.ORG", 2222, ED, &a), Verdict::Match);
    assert_eq!(check(&kh, "git.example.org", 2222, ED, &b), mismatch(&[ED]));
    assert_eq!(check(&kh, "git.example.org", 22, ED, &a), Verdict::Unknown);
    assert_eq!(check(&kh, "example.org", 2222, ED, &a), Verdict::Unknown);
    assert_eq!(check(&kh, "github.com", 22, ED, &b), Verdict::Match);
    assert_eq!(
        check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
        mismatch(&[ED])
    );
}

#[test]
fn broken_hashed_entries_do_not_match() {
    for hosts in [
        "|1|",
        "|1|nobase64!|xx",
        "|1|uHAfU7f9zDCoAMCcMkQvrMhehl0=",
        "|2|a|b",
    ] {
        let kh = format!("{hosts} {ED} {ED_A}\n");
        assert_eq!(
            check(&kh, "git.example.org", 2222, ED, &blob(ED_A)),
            Verdict::Unknown
        );
    }
}

#[test]
fn wildcards() {
    let kh = format!("*.example.org,git?.example.net,[*.local]:2222 {ED} {ED_A}\n");
    let a = blob(ED_A);
    assert_eq!(check(&kh, "git.example.org", 22, ED, &a), Verdict::Match);
    assert_eq!(check(&kh, "a.b.example.org", 22, ED, &a), Verdict::Match);
    assert_eq!(check(&kh, "example.org", 22, ED, &a), Verdict::Unknown);
    assert_eq!(check(&kh, "git1.example.net", 22, ED, &a), Verdict::Match);
    assert_eq!(check(&kh, "git.example.net", 22, ED, &a), Verdict::Unknown);
    assert_eq!(
        check(&kh, "git12.example.net", 22, ED, &a),
        Verdict::Unknown
    );
    assert_eq!(check(&kh, "box.local", 2222, ED, &a), Verdict::Match);
    assert_eq!(check(&kh, "box.local", 22, ED, &a), Verdict::Unknown);
    // `*` alone covers every name, also the bracketed form.
    let kh = format!("* {ED} {ED_A}\n");
    assert_eq!(check(&kh, "127.0.0.1", 2222, ED, &a), Verdict::Match);
}

#[test]
fn wildcard_matcher() {
    assert!(wildcard_match("*", ""));
    assert!(wildcard_match("a*b*c", "aXXbYYc"));
    assert!(wildcard_match("a*b*c", "abc"));
    assert!(!wildcard_match("a*b*c", "acb"));
    assert!(wildcard_match("*a", "banana"));
    assert!(!wildcard_match("?", ""));
    assert!(wildcard_match("??", "ab"));
    assert!(!wildcard_match("abc", "abcd"));
    assert!(!wildcard_match("", "a"));
}

#[test]
fn negated_patterns_exclude() {
    let kh = format!("*.example.org,!evil.example.org {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
    assert_eq!(
        check(&kh, "evil.example.org", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    assert_eq!(
        check(&kh, "EVIL.example.org", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    // A negation alone matches nothing.
    let kh = format!("!evil.example.org {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
}

#[test]
fn revoked_key_wins() {
    let kh = format!("github.com {ED} {ED_A}\n@revoked * {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Revoked
    );
    // Revoking another key changes nothing for this one.
    let kh = format!("github.com {ED} {ED_A}\n@revoked github.com {ED} {ED_B}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
    // A revoked line is not a listing: a revoked key of an unknown host is still revoked,
    // another key is still unknown.
    let kh = format!("@revoked github.com {ED} {ED_B}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_B)),
        Verdict::Revoked
    );
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    // Only for hosts the revoked line names.
    assert_eq!(
        check(&kh, "gitlab.com", 22, ED, &blob(ED_B)),
        Verdict::Unknown
    );
}

#[test]
fn cert_authority_lines_are_ignored() {
    let kh = format!("@cert-authority *.example.org {ED} {ED_A}\n");
    assert_eq!(
        check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
        Verdict::Unknown
    );
    assert_eq!(
        check(&kh, "git.example.org", 22, ED, &blob(ED_B)),
        Verdict::Unknown
    );
    let kh = format!("{kh}git.example.org {ED} {ED_B}\n");
    assert_eq!(
        check(&kh, "git.example.org", 22, ED, &blob(ED_B)),
        Verdict::Match
    );
    assert_eq!(
        check(&kh, "git.example.org", 22, ED, &blob(ED_A)),
        mismatch(&[ED])
    );
}

#[test]
fn malformed_lines_are_skipped() {
    let kh = format!(
        "github.com\n\
         github.com {ED}\n\
         github.com {ED} not*base64\n\
         github.com 2048 35 12345678901234567890\n\
         @bogus github.com {ED} {ED_B}\n\
         @revoked\n\
         github.com {ED} {ED_A}\n"
    );
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_A)),
        Verdict::Match
    );
    assert_eq!(
        check(&kh, "github.com", 22, ED, &blob(ED_B)),
        mismatch(&[ED])
    );
}

#[test]
fn unpadded_base64_key_is_accepted() {
    let unpadded = ECDSA_C.trim_end_matches('=');
    let kh = format!("github.com {ECDSA} {unpadded}\n");
    assert_eq!(
        check(&kh, "github.com", 22, ECDSA, &blob(ECDSA_C)),
        Verdict::Match
    );
}

#[test]
fn fingerprint_matches_ssh_keygen() {
    assert_eq!(fingerprint(&blob(ED_A)), ED_A_FINGERPRINT);
}
