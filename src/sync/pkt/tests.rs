//! Unit tests of `pkt`: the parsers on well-formed input, and on anything at all (proptest).

use super::*;

fn oid(n: u8) -> Oid {
    Oid::from_bytes(&[n; 20]).unwrap()
}

fn all() -> FetchLimits {
    FetchLimits::default()
}

fn read_all(bytes: &[u8]) -> io::Result<Result<Advertisement, AdvertError>> {
    Advertisement::read(&mut &bytes[..], &all(), |_| true)
}

fn pkts(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        if l.is_empty() {
            out.extend_from_slice(FLUSH);
        } else {
            encode(l, &mut out);
        }
    }
    out
}

#[test]
fn pkt_lines_round_trip_and_bad_lengths_are_refused() {
    let mut out = Vec::new();
    encode(b"done\n", &mut out);
    assert_eq!(out, b"0009done\n");
    out.extend_from_slice(FLUSH);
    let mut r = out.as_slice();
    let mut buf = Vec::new();
    assert_eq!(read_pkt(&mut r, &mut buf).unwrap(), Pkt::Data(5));
    assert_eq!(buf, b"done\n");
    assert_eq!(read_pkt(&mut r, &mut buf).unwrap(), Pkt::Flush);
    let e = read_pkt(&mut r, &mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    // Not hex, protocol v2's special packets, longer than a pkt-line may be, cut short.
    for bad in [&b"zzzz"[..], b"0001", b"0003", b"fff5", b"ffff", b"0010abc"] {
        assert!(read_pkt(&mut &bad[..], &mut buf).is_err(), "{bad:?}");
    }
}

#[test]
fn advertisements_give_refs_caps_and_the_default_branch() {
    let (a, b, c) = (oid(0xaa), oid(0xbb), oid(0xcc));
    let first = format!(
        "{a} HEAD\0multi_ack thin-pack side-band side-band-64k ofs-delta shallow no-progress symref=HEAD:refs/heads/main agent=git/2.43.0\n"
    );
    let main = format!("{a} refs/heads/main\n");
    let tag = format!("{b} refs/tags/v1\n");
    let peeled = format!("{c} refs/tags/v1^{{}}\n");
    let http = pkts(&[
        b"# service=git-upload-pack\n",
        b"",
        first.as_bytes(),
        main.as_bytes(),
        tag.as_bytes(),
        peeled.as_bytes(),
        b"",
    ]);
    let adv = Advertisement::read(&mut http.as_slice(), &all(), |_| true)
        .unwrap()
        .unwrap();
    assert_eq!(adv.find("HEAD"), Some(a));
    assert_eq!(adv.find("refs/heads/main"), Some(a));
    assert_eq!(
        adv.find("refs/tags/v1"),
        Some(b),
        "the tag object, not the peeled commit"
    );
    assert_eq!(adv.find("refs/tags/v1^{}"), Some(c));
    assert_eq!(adv.find("refs/heads/other"), None);
    assert_eq!(adv.head_symref(), Some("refs/heads/main"));
    assert!(adv.has("agent") && adv.has("side-band-64k") && !adv.has("side"));
    assert_eq!(
        adv.request_caps("hookmirror/1").unwrap(),
        [
            "side-band-64k",
            "ofs-delta",
            "thin-pack",
            "no-progress",
            "agent=hookmirror/1"
        ]
    );
    // The same over a stateful channel (no service line), and a remote without side-band-64k.
    let plain_first = format!("{a} refs/heads/main\0ofs-delta side-band\n");
    let ssh = pkts(&[plain_first.as_bytes(), b""]);
    let adv = Advertisement::read(&mut ssh.as_slice(), &all(), |_| true)
        .unwrap()
        .unwrap();
    assert_eq!((adv.refs.len(), adv.head_symref()), (1, None));
    assert_eq!(adv.request_caps("x"), None);
}

#[test]
fn empty_repositories_v2_and_refusals() {
    let z = Oid::ZERO_SHA1;
    let empty = format!("{z} capabilities^{{}}\0side-band-64k ofs-delta\n");
    let adv = read_all(&pkts(&[empty.as_bytes(), b""])).unwrap().unwrap();
    assert!(adv.refs.is_empty() && adv.has("ofs-delta"));
    let v2 = pkts(&[b"version 2\n", b"agent=git/2\n", b""]);
    assert!(matches!(
        read_all(&v2).unwrap(),
        Err(AdvertError::Unsupported(_))
    ));
    let err = pkts(&[b"ERR access denied or repository not exported: /x\n"]);
    assert_eq!(
        read_all(&err).unwrap(),
        Err(AdvertError::Remote(
            "access denied or repository not exported: /x".into()
        ))
    );
    let cut = pkts(&[format!("{z} refs/heads/main\n").as_bytes()]);
    assert!(read_all(&cut).is_err());
    let junk = pkts(&[b"xyz refs/heads/main\n", b""]);
    assert!(read_all(&junk).is_err());
}

#[test]
fn the_request_is_one_want_the_haves_and_done() {
    let caps = vec!["side-band-64k".to_string(), "ofs-delta".to_string()];
    let req = request(oid(1), &caps, &[oid(2), oid(3)]);
    let text = String::from_utf8(req).unwrap();
    let want = format!("want {} side-band-64k ofs-delta\n", oid(1));
    assert!(
        text.starts_with(&format!("{:04x}{want}0000", want.len() + 4)),
        "{text}"
    );
    assert!(text.contains(&format!("0032have {}\n", oid(2))), "{text}");
    assert!(
        text.ends_with(&format!("have {}\n0009done\n", oid(3))),
        "{text}"
    );
}

#[test]
fn answers_are_acks_naks_and_bands() {
    assert_eq!(
        answer(format!("ACK {}\n", oid(1)).as_bytes()),
        Ok(Answer::Ack)
    );
    assert_eq!(answer(b"NAK\n"), Ok(Answer::Nak));
    assert_eq!(answer(b"\x01PACK.."), Ok(Answer::Pack(b"PACK..")));
    assert_eq!(answer(b"\x02Counting objects"), Ok(Answer::Progress));
    assert_eq!(
        answer(b"\x03upload-pack: not our ref\n"),
        Ok(Answer::Error("upload-pack: not our ref".into()))
    );
    assert_eq!(answer(b"ERR no\n"), Ok(Answer::Error("no".into())));
    assert!(answer(b"\x07?").is_err());
    assert!(answer(b"").is_err());
}

#[test]
fn haves_step_back_exponentially_per_tip() {
    // A linear history 1000 → 999 → … → 0.
    let parent = |c: u32| c.checked_sub(1);
    assert_eq!(
        select_haves(&[1000], parent, 32),
        [1000, 999, 998, 996, 992, 984, 968, 936, 872, 744]
    );
    assert_eq!(
        *select_haves(&[1000], parent, 32).last().unwrap(),
        1000 - MAX_DISTANCE as u32
    );
    // Short histories end at the root; a repeated tip counts once.
    assert_eq!(select_haves(&[5, 5], parent, 32), [5, 4, 3, 1]);
    // Two tips share the budget; commits seen from both are sent once.
    let both = select_haves(&[20, 18], parent, 8);
    assert_eq!(both, [20, 19, 18, 16, 17, 14]);
    assert!(select_haves(&[7], parent, 3).len() == 3);
    let none: [u32; 0] = [];
    assert!(select_haves(&none, parent, 32).is_empty());
}

#[test]
fn only_the_wanted_refs_are_kept_and_the_limits_hold() {
    let lines: Vec<String> = (0..50)
        .map(|i| format!("{} refs/heads/b{i}\n", oid(i as u8 + 1)))
        .collect();
    let mut raw: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    raw.push(b"");
    let text = pkts(&raw);
    let adv = Advertisement::read(&mut text.as_slice(), &all(), |n| n == "refs/heads/b7")
        .unwrap()
        .unwrap();
    assert_eq!(adv.refs, [("refs/heads/b7".to_string(), oid(8))]);
    let few = FetchLimits {
        max_refs: 49,
        ..all()
    };
    match Advertisement::read(&mut text.as_slice(), &few, |_| true).unwrap() {
        Err(AdvertError::TooLarge(e)) => assert!(e.0.contains("limits.max_refs (49)"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    let small = FetchLimits {
        max_advertisement: text.len() as u64 - 1,
        ..all()
    };
    match Advertisement::read(&mut text.as_slice(), &small, |_| true).unwrap() {
        Err(AdvertError::TooLarge(e)) => assert!(e.0.contains("limits.max_advertisement"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    let exact = FetchLimits {
        max_advertisement: text.len() as u64,
        max_refs: 50,
        ..all()
    };
    assert!(
        Advertisement::read(&mut text.as_slice(), &exact, |_| true)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn the_remote_s_words_never_hold_a_line_break_or_a_terminal_code() {
    let err = pkts(&[b"ERR no\nINFO sync result=\"ok\"\r\x1b[2J\n"]);
    assert_eq!(
        read_all(&err).unwrap(),
        Err(AdvertError::Remote(
            "no\\nINFO sync result=\"ok\"\\r\\u{1b}[2J".into()
        ))
    );
    assert_eq!(
        answer(b"\x03fatal: x\n\x1b[31mINFO forged\r\n"),
        Ok(Answer::Error("fatal: x\\n\\u{1b}[31mINFO forged".into()))
    );
    assert_eq!(answer(b"ERR a\rb\n"), Ok(Answer::Error("a\\rb".into())));
}

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that are mostly pkt-lines (with lengths that lie now and then), or anything.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80).prop_map(|d| {
                let mut out = Vec::new();
                encode(&d, &mut out);
                out
            }),
            Just(b"0000".to_vec()),
            Just(b"ffff".to_vec()),
            Just(b"0003".to_vec()),
            Just(b"zzzz".to_vec()),
            "[0-9a-f]{4}".prop_map(|l| l.into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        proptest::collection::vec(line, 0..60).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn read_pkt_never_panics_and_never_holds_more_than_a_pkt_line(bytes in stream()) {
            let mut r = bytes.as_slice();
            let mut buf = Vec::new();
            while let Ok(p) = read_pkt(&mut r, &mut buf) {
                if let Pkt::Data(n) = p {
                    prop_assert!(n == buf.len() && n + 4 <= MAX_PKT);
                }
            }
        }

        #[test]
        fn advertisements_keep_within_their_limits(
            bytes in stream(),
            max_advertisement in 0u64..4000,
            max_refs in 0u64..30,
        ) {
            let limits = FetchLimits { max_advertisement, max_refs, ..FetchLimits::default() };
            if let Ok(Ok(adv)) = Advertisement::read(&mut bytes.as_slice(), &limits, |_| true) {
                let held: usize = adv.refs.iter().map(|(n, _)| n.len() + 20).sum::<usize>()
                    + adv.caps.iter().map(String::len).sum::<usize>();
                prop_assert!(held as u64 <= max_advertisement);
                prop_assert!(adv.refs.len() as u64 <= max_refs);
            }
            // Asked for one name, it keeps at most the lines that carry it.
            if let Ok(Ok(adv)) = Advertisement::read(&mut bytes.as_slice(), &limits, |n| n == "HEAD") {
                prop_assert!(adv.refs.iter().all(|(n, _)| n == "HEAD"));
            }
        }

        #[test]
        fn answers_never_panic_and_errors_stay_on_one_line(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Answer::Error(text)) = answer(&line) {
                let clean = !text.contains(['\n', '\r', '\u{1b}']);
                prop_assert!(clean, "{}", text);
            }
        }

        #[test]
        fn pack_headers_never_panic(header in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = super::super::super::budget::pack_objects(&header);
        }
    }
}
