//! What a remote may send in one fetch (`limits.max_advertisement`, `max_refs`, `max_pack`,
//! `max_objects`), counted where the bytes enter: a [`Meter`] per stream of hookmirror's
//! transports, fed every read. Pure.
//!
//! Why at the stream: libgit2 keeps every advertised ref in memory and its pack writer stores
//! whatever arrives, so a remote that never stops (an endless advertisement, a pack that never
//! ends) would otherwise be stopped only by `sync_timeout`, after gigabytes. A [`Meter`] follows
//! the pkt-line framing of the advertisement (up to its closing flush; over smart HTTP after the
//! `# service=` preamble and its flush) to count its bytes and refs, then counts everything
//! after it against `max_pack`, and reads the pack's header as it passes: libgit2's indexer sizes
//! two tables by the object count declared there (12 bytes per object, `git_vector_init` in
//! indexer.c) and keeps an entry per object it indexes (~150 bytes), so a count past
//! `max_objects` is refused before the header reaches it. It reads only the 4-byte lengths (and
//! those 12 bytes), so counting costs nothing beside the copy.

use crate::config::{FetchLimits, size_text};

/// Which limit a remote went past, and the words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded(pub String);

impl Exceeded {
    pub fn advertisement(limit: u64) -> Exceeded {
        Exceeded(format!(
            "the remote's ref advertisement is larger than limits.max_advertisement ({}); raise limits.max_advertisement if the repository really advertises that much",
            size_text(limit)
        ))
    }

    pub fn refs(limit: u64) -> Exceeded {
        Exceeded(format!(
            "the remote advertised more than limits.max_refs ({limit}) refs; raise limits.max_refs if the repository really has that many"
        ))
    }

    pub fn pack(limit: u64) -> Exceeded {
        Exceeded(format!(
            "the remote sent more than limits.max_pack ({}) after its advertisement; raise limits.max_pack if the repository's pack really is that large",
            size_text(limit)
        ))
    }

    pub fn objects(declared: u64, limit: u64) -> Exceeded {
        Exceeded(format!(
            "the remote's pack declares {declared} objects, more than limits.max_objects ({limit}); raise limits.max_objects if the repository really has that many"
        ))
    }
}

/// Where a [`Meter`] is in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Smart HTTP's `# service=…` line, up to its flush: neither a ref nor counted as one.
    Preamble,
    /// The refs, up to the flush that ends them.
    Advertisement,
    /// After it: the negotiation's answers (pkt-lines), until the pack's header has been seen.
    Answer,
    /// The rest: only counted.
    Pack,
}

/// A pack's header: `PACK`, the version, the object count.
const PACK_HEADER: usize = 12;

/// Counts one stream's bytes against a fetch's [`FetchLimits`], and checks the object count the
/// pack's header declares (in side-band channel 1, or raw after the answer's lines when the
/// server speaks no side-band) before the bytes reach whoever reads the stream.
#[derive(Debug, Clone)]
pub struct Meter {
    limits: FetchLimits,
    phase: Phase,
    /// Bytes of the advertisement so far (preamble included).
    advertised: u64,
    refs: u64,
    /// Bytes after the advertisement.
    after: u64,
    /// The pkt-line length being read (up to 4 hex digits).
    len: [u8; 4],
    len_have: usize,
    /// Bytes of the current pkt-line's data still to pass.
    skip: u64,
    /// The next byte is the first of a pkt-line's data (in [`Phase::Answer`]: its band).
    line_start: bool,
    /// The current pkt-line is side-band channel 1 (pack data).
    band1: bool,
    /// The pack came without side-band: its header follows the answer's lines raw.
    raw: bool,
    /// The pack's header as far as it has arrived.
    header: [u8; PACK_HEADER],
    header_have: usize,
}

impl Meter {
    /// A stream that starts with the ref advertisement: over smart HTTP (`over_http`) after a
    /// `# service=` line and its flush, over `git://` and SSH at once.
    pub fn advertisement(limits: FetchLimits, over_http: bool) -> Meter {
        Meter::starting(
            limits,
            if over_http {
                Phase::Preamble
            } else {
                Phase::Advertisement
            },
        )
    }

    /// A stream of answers and pack only (a smart-HTTP POST's answer).
    pub fn answer(limits: FetchLimits) -> Meter {
        Meter::starting(limits, Phase::Answer)
    }

    fn starting(limits: FetchLimits, phase: Phase) -> Meter {
        Meter {
            limits,
            phase,
            advertised: 0,
            refs: 0,
            after: 0,
            len: [0; 4],
            len_have: 0,
            skip: 0,
            line_start: false,
            band1: false,
            raw: false,
            header: [0; PACK_HEADER],
            header_have: 0,
        }
    }

    /// Counts `bytes`, just read from the remote; past a limit, which one.
    pub fn count(&mut self, mut bytes: &[u8]) -> Result<(), Exceeded> {
        while !bytes.is_empty() {
            let advertising = matches!(self.phase, Phase::Preamble | Phase::Advertisement);
            let taken = match self.phase {
                Phase::Pack => bytes.len(),
                _ => self.frame(bytes)?,
            };
            if advertising {
                self.advertised += taken as u64;
            } else {
                self.after += taken as u64;
            }
            if self.advertised > self.limits.max_advertisement {
                return Err(Exceeded::advertisement(self.limits.max_advertisement));
            }
            if self.refs > self.limits.max_refs {
                return Err(Exceeded::refs(self.limits.max_refs));
            }
            if self.after > self.limits.max_pack {
                return Err(Exceeded::pack(self.limits.max_pack));
            }
            bytes = &bytes[taken..];
        }
        Ok(())
    }

    /// Follows the pkt-line framing over the start of `bytes`; returns how many bytes it took
    /// (at least one), or the object count the pack's header declared when it is too many.
    fn frame(&mut self, bytes: &[u8]) -> Result<usize, Exceeded> {
        if self.raw {
            // A raw pack (no side-band): its header follows "PACK" directly.
            return self.pack_header(bytes);
        }
        if self.skip > 0 {
            if self.phase == Phase::Answer && self.line_start {
                self.line_start = false;
                self.band1 = bytes[0] == 1;
                self.skip -= 1;
                return Ok(1);
            }
            if self.phase == Phase::Answer && self.band1 {
                let n = self.pack_header(&bytes[..bytes.len().min(self.skip as usize)])?;
                self.skip -= n as u64;
                return Ok(n);
            }
            let n = self.skip.min(bytes.len() as u64);
            self.skip -= n;
            return Ok(n as usize);
        }
        self.len[self.len_have] = bytes[0];
        self.len_have += 1;
        if self.len_have < 4 {
            return Ok(1);
        }
        self.len_have = 0;
        if self.phase == Phase::Answer && &self.len == b"PACK" {
            self.header[..4].copy_from_slice(b"PACK");
            self.header_have = 4;
            self.raw = true;
            return Ok(1);
        }
        let n = std::str::from_utf8(&self.len)
            .ok()
            .and_then(|t| u64::from_str_radix(t, 16).ok());
        match n {
            Some(0) => {
                self.phase = match self.phase {
                    Phase::Preamble => Phase::Advertisement,
                    Phase::Advertisement => Phase::Answer,
                    // A flush inside the answer (after shallow lines, or its end).
                    other => other,
                };
            }
            // Protocol v2's delimiter and response-end packets: no data.
            Some(1..=3) => {}
            Some(n) => {
                self.skip = n - 4;
                self.line_start = true;
                self.band1 = false;
                if self.phase == Phase::Advertisement {
                    self.refs += 1;
                }
            }
            // Not a pkt-line length: whoever parses the stream refuses it; until then every
            // byte counts (against the advertisement, or the pack).
            None => match self.phase {
                Phase::Preamble | Phase::Advertisement => self.skip = u64::MAX,
                _ => self.phase = Phase::Pack,
            },
        }
        Ok(1)
    }

    /// Takes the pack header's bytes from the start of `bytes` (at least one); once all 12 are
    /// here, refuses a declared count past `max_objects` and only counts from then on.
    fn pack_header(&mut self, bytes: &[u8]) -> Result<usize, Exceeded> {
        let n = (PACK_HEADER - self.header_have).min(bytes.len());
        self.header[self.header_have..self.header_have + n].copy_from_slice(&bytes[..n]);
        self.header_have += n;
        if self.header_have == PACK_HEADER {
            if let Some(declared) = pack_objects(&self.header)
                && declared > self.limits.max_objects
            {
                return Err(Exceeded::objects(declared, self.limits.max_objects));
            }
            // The rest of a side-band stream is pkt-lines too, but nothing in it needs reading.
            self.phase = Phase::Pack;
        }
        Ok(n)
    }
}

/// The object count a pack's 12-byte header declares (`PACK`, version 2 or 3, count), or `None`
/// when `header` is not one.
pub fn pack_objects(header: &[u8]) -> Option<u64> {
    let (magic, rest) = header.split_first_chunk::<4>()?;
    let (version, rest) = rest.split_first_chunk::<4>()?;
    let (count, _) = rest.split_first_chunk::<4>()?;
    (magic == b"PACK" && matches!(u32::from_be_bytes(*version), 2 | 3))
        .then(|| u64::from(u32::from_be_bytes(*count)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(adv: u64, refs: u64, pack: u64) -> FetchLimits {
        FetchLimits {
            max_advertisement: adv,
            max_refs: refs,
            max_pack: pack,
            max_objects: 10,
        }
    }

    fn pkt(data: &str) -> String {
        format!("{:04x}{data}", data.len() + 4)
    }

    fn advertisement(refs: usize) -> String {
        let mut s = String::new();
        for i in 0..refs {
            s.push_str(&pkt(&format!("{:040x} refs/heads/b{i}\n", i + 1)));
        }
        s + "0000"
    }

    #[test]
    fn the_advertisement_ends_at_its_flush_then_the_pack_counts() {
        let adv = advertisement(3);
        let mut m = Meter::advertisement(limits(adv.len() as u64, 3, 10), false);
        m.count(adv.as_bytes()).unwrap();
        assert_eq!(
            (m.phase, m.refs, m.advertised),
            (Phase::Answer, 3, adv.len() as u64)
        );
        m.count(b"0008NAK\n").unwrap();
        m.count(b"ab").unwrap();
        assert_eq!(m.count(b"c"), Err(Exceeded::pack(10)));
    }

    #[test]
    fn smart_http_s_preamble_is_neither_a_ref_nor_the_end() {
        let text = format!(
            "{}0000{}",
            pkt("# service=git-upload-pack\n"),
            advertisement(2)
        );
        let mut m = Meter::advertisement(limits(1 << 20, 2, 0), true);
        // One byte at a time: framing survives any split of the reads.
        for b in text.as_bytes() {
            m.count(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!((m.phase, m.refs), (Phase::Answer, 2));
        assert!(m.count(b"x").is_err(), "max_pack 0: nothing after it");
    }

    #[test]
    fn too_many_refs_or_bytes_are_refused_with_the_key_to_raise() {
        let adv = advertisement(5);
        let e = Meter::advertisement(limits(1 << 20, 4, 1), false)
            .count(adv.as_bytes())
            .unwrap_err();
        assert!(e.0.contains("limits.max_refs (4)"), "{e:?}");
        let e = Meter::advertisement(limits(1024, 1000, 1), false)
            .count(advertisement(100).as_bytes())
            .unwrap_err();
        assert!(e.0.contains("limits.max_advertisement (1KiB)"), "{e:?}");
        // Garbage framing counts as advertisement until the parser refuses it.
        let mut m = Meter::advertisement(limits(1024, 1, 1), false);
        assert!(m.count(&[b'z'; 1025]).is_err());
    }

    #[test]
    fn a_post_s_answer_counts_against_max_pack() {
        let mut m = Meter::answer(limits(0, 0, 12));
        m.count(
            b"0008NAK
0000",
        )
        .unwrap();
        assert!(m.count(b"0").is_err());
    }

    /// A side-band pkt-line of channel 1 carrying `data`.
    fn band1(data: &[u8]) -> Vec<u8> {
        let mut out = format!("{:04x}\x01", data.len() + 5).into_bytes();
        out.extend_from_slice(data);
        out
    }

    fn header(count: u32) -> Vec<u8> {
        let mut h = b"PACK\0\0\0\x02".to_vec();
        h.extend_from_slice(&count.to_be_bytes());
        h
    }

    #[test]
    fn a_pack_declaring_too_many_objects_is_refused_at_its_header() {
        let big = FetchLimits {
            max_objects: 10,
            ..limits(1 << 20, 100, 1 << 20)
        };
        // In side-band channel 1, after progress on channel 2, split anywhere.
        let mut answer = b"0008NAK\n".to_vec();
        answer.extend(format!("{:04x}\x02counting\n", 14).into_bytes());
        answer.extend(band1(&header(10)[..5]));
        answer.extend(band1(&header(10)[5..]));
        answer.extend(band1(b"objects..."));
        let mut m = Meter::answer(big);
        for b in &answer {
            m.count(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(m.phase, Phase::Pack);
        let mut too_many = b"0008NAK\n".to_vec();
        too_many.extend(band1(&header(11)));
        let e = Meter::answer(big).count(&too_many).unwrap_err();
        assert!(
            e.0.contains("declares 11 objects") && e.0.contains("limits.max_objects (10)"),
            "{e:?}"
        );
        // Without side-band the pack follows the lines raw.
        let mut raw = b"0008NAK\n".to_vec();
        raw.extend(header(u32::MAX));
        let e = Meter::answer(big).count(&raw).unwrap_err();
        assert!(e.0.contains("declares 4294967295 objects"), "{e:?}");
        // Over git:// the advertisement comes first on the same stream.
        let mut stream = advertisement(2).into_bytes();
        stream.extend(&too_many);
        assert!(Meter::advertisement(big, false).count(&stream).is_err());
    }

    #[test]
    fn pack_headers_declare_their_object_count() {
        assert_eq!(pack_objects(b"PACK\0\0\0\x02\0\0\x01\x00"), Some(256));
        assert_eq!(
            pack_objects(b"PACK\0\0\0\x03\xff\xff\xff\xff"),
            Some(u32::MAX as u64)
        );
        assert_eq!(pack_objects(b"PACK\0\0\0\x04\0\0\0\x01"), None);
        assert_eq!(pack_objects(b"KCAP\0\0\0\x02\0\0\0\x01"), None);
        assert_eq!(pack_objects(b"PACK\0\0"), None);
    }

    proptest! {
        /// Whatever arrives, in whatever pieces: no panic, and nothing passes a limit unnoticed.
        #[test]
        fn no_stream_passes_the_limits(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
            http in any::<bool>(),
            adv in 0u64..2000,
            refs in 0u64..20,
            pack in 0u64..2000,
            objects in 0u64..5,
        ) {
            let mut m = Meter::advertisement(FetchLimits { max_objects: objects, ..limits(adv, refs, pack) }, http);
            for c in &chunks {
                if m.count(c).is_err() {
                    return Ok(());
                }
                prop_assert!(m.advertised <= adv && m.refs <= refs && m.after <= pack);
                if m.phase == Phase::Pack && m.header_have == PACK_HEADER {
                    prop_assert!(pack_objects(&m.header).is_none_or(|n| n <= objects));
                }
            }
        }
    }
}
