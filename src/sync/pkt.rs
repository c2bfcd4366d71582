//! The pure half of hookmirror's own fetch negotiation ([`super::negotiate`]): git's pkt-line
//! framing, the protocol-v0 ref advertisement, the one request hookmirror sends, the answer's
//! `ACK`/`NAK` lines and side-band-64k bands, and which `have` lines to send. No IO beyond
//! reading from a given [`Read`].
//!
//! The request is v0's simplest form (no `multi_ack`): `want <tip> <caps>`, a flush, the
//! `have` lines, `done`. upload-pack then answers one `ACK <oid>` (the first common commit) or
//! `NAK`, and the pack, in one round — over stateless HTTP as over a stateful channel.

use std::io::{self, Read};

use git2::Oid;

use super::budget::Exceeded;
use crate::config::FetchLimits;
use crate::printable::escape_bytes;

/// A flush packet.
pub(super) const FLUSH: &[u8] = b"0000";

/// The largest pkt-line (4 bytes of length and 65516 of data).
pub(super) const MAX_PKT: usize = 65520;

/// What one pkt-line read returned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pkt {
    /// `0000`.
    Flush,
    /// A data line of this many bytes, now in the buffer.
    Data(usize),
}

/// Appends `data` as one pkt-line to `out`.
pub(super) fn encode(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.extend_from_slice(data);
}

/// Reads one pkt-line into `buf` (replacing its content). A stream ending before a whole line
/// is an [`io::ErrorKind::UnexpectedEof`].
pub(super) fn read_pkt(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Pkt> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let text = std::str::from_utf8(&len).ok();
    let n = text
        .and_then(|t| usize::from_str_radix(t, 16).ok())
        .ok_or_else(|| {
            bad(format!(
                "not a pkt-line length: {:?}",
                String::from_utf8_lossy(&len)
            ))
        })?;
    match n {
        0 => Ok(Pkt::Flush),
        // 0001 (delim) and 0002 (response end) are protocol v2's; v0 has none of them.
        1..=4 => Err(bad(format!("unexpected special packet {n:04x}"))),
        n if n > MAX_PKT => Err(bad(format!("pkt-line too long ({n})"))),
        n => {
            buf.resize(n - 4, 0);
            r.read_exact(buf)?;
            Ok(Pkt::Data(n - 4))
        }
    }
}

fn bad(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A line without its trailing newline.
fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// The refs and capabilities a protocol-v0 upload-pack advertised.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Advertisement {
    /// The advertised refs that were asked for, with their objects, in order (`HEAD` included
    /// when advertised and asked for).
    pub refs: Vec<(String, Oid)>,
    /// Capabilities from the first line (`side-band-64k`, `symref=HEAD:refs/heads/main`, …).
    pub caps: Vec<String>,
}

/// Why an advertisement cannot serve hookmirror's negotiation, or what the remote refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AdvertError {
    /// The server speaks something else (protocol v2): libgit2's fetch handles it.
    Unsupported(String),
    /// An `ERR` line: the remote's refusal, in its words (escaped: one line, no control
    /// characters).
    Remote(String),
    /// Larger than `limits.max_advertisement` or `limits.max_refs`.
    TooLarge(Exceeded),
}

impl Advertisement {
    /// Reads an advertisement up to its flush, keeping only the refs `wanted` names, so that
    /// what it holds does not grow with the remote's ref count. Over smart HTTP it starts with a
    /// `# service=git-upload-pack` line and a flush, which are skipped. More than `limits`'
    /// `max_advertisement` bytes or `max_refs` refs is [`AdvertError::TooLarge`].
    pub(super) fn read(
        r: &mut impl Read,
        limits: &FetchLimits,
        wanted: impl Fn(&str) -> bool,
    ) -> io::Result<Result<Advertisement, AdvertError>> {
        let mut buf = Vec::new();
        let mut adv = Advertisement::default();
        let (mut first, mut after_service) = (true, false);
        let (mut bytes, mut refs) = (0u64, 0u64);
        loop {
            let pkt = read_pkt(r, &mut buf)?;
            bytes += match pkt {
                Pkt::Flush => 4,
                Pkt::Data(n) => n as u64 + 4,
            };
            if bytes > limits.max_advertisement {
                return Ok(Err(AdvertError::TooLarge(Exceeded::advertisement(
                    limits.max_advertisement,
                ))));
            }
            let n = match pkt {
                Pkt::Flush if after_service => {
                    after_service = false;
                    continue;
                }
                Pkt::Flush => return Ok(Ok(adv)),
                Pkt::Data(n) => n,
            };
            let line = trim(&buf[..n]);
            if first && line.starts_with(b"# service=") {
                after_service = true;
                continue;
            }
            if let Some(msg) = line.strip_prefix(b"ERR ") {
                return Ok(Err(AdvertError::Remote(escape_bytes(msg))));
            }
            refs += 1;
            if refs > limits.max_refs {
                return Ok(Err(AdvertError::TooLarge(Exceeded::refs(limits.max_refs))));
            }
            if first && line == b"version 2" {
                return Ok(Err(AdvertError::Unsupported("protocol v2".into())));
            }
            let (refpart, caps) = match line.iter().position(|&b| b == 0) {
                Some(i) => (&line[..i], Some(&line[i + 1..])),
                None => (line, None),
            };
            if let Some(caps) = caps.filter(|_| first) {
                adv.caps = String::from_utf8_lossy(caps)
                    .split(' ')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            first = false;
            let text =
                std::str::from_utf8(refpart).map_err(|_| bad("a ref line not in UTF-8".into()))?;
            let (hex, name) = text
                .split_once(' ')
                .ok_or_else(|| bad(format!("malformed ref line {text:?}")))?;
            let oid = Oid::from_str(hex)
                .ok()
                .filter(|_| hex.len() == 40)
                .ok_or_else(|| bad(format!("malformed object id {hex:?}")))?;
            // An empty repository advertises `capabilities^{}` with the null id.
            if name != "capabilities^{}" && wanted(name) {
                adv.refs.push((name.to_string(), oid));
            }
        }
    }

    /// The object `name` points to (for a tag, the tag object; its peeled `^{}` line aside).
    pub(super) fn find(&self, name: &str) -> Option<Oid> {
        self.refs.iter().find(|(n, _)| n == name).map(|(_, o)| *o)
    }

    /// Whether the server offers `cap` (a bare name, or `name=…`).
    pub(super) fn has(&self, cap: &str) -> bool {
        self.caps
            .iter()
            .any(|c| c == cap || c.strip_prefix(cap).is_some_and(|r| r.starts_with('=')))
    }

    /// The branch the remote's HEAD names (`symref=HEAD:refs/heads/main`), when it says.
    pub(super) fn head_symref(&self) -> Option<&str> {
        self.caps
            .iter()
            .find_map(|c| c.strip_prefix("symref=HEAD:"))
    }

    /// The capabilities to ask for: `None` when the server lacks one hookmirror needs
    /// (side-band-64k, ofs-delta), else those plus the optional ones it offers.
    pub(super) fn request_caps(&self, agent: &str) -> Option<Vec<String>> {
        if !self.has("side-band-64k") || !self.has("ofs-delta") {
            return None;
        }
        let mut caps = vec!["side-band-64k".to_string(), "ofs-delta".to_string()];
        for optional in ["thin-pack", "no-progress"] {
            if self.has(optional) {
                caps.push(optional.into());
            }
        }
        if self.has("agent") {
            caps.push(format!("agent={agent}"));
        }
        Some(caps)
    }
}

/// The whole request: one want with the capabilities, a flush, the haves, `done`.
pub(super) fn request(want: Oid, caps: &[String], haves: &[Oid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 50 * haves.len());
    encode(
        format!("want {want} {}\n", caps.join(" ")).as_bytes(),
        &mut out,
    );
    out.extend_from_slice(FLUSH);
    for h in haves {
        encode(format!("have {h}\n").as_bytes(), &mut out);
    }
    encode(b"done\n", &mut out);
    out
}

/// One line of upload-pack's answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer<'a> {
    /// `ACK <oid>`: a common commit.
    Ack,
    /// `NAK`: nothing in common (a whole pack follows).
    Nak,
    /// Pack data (band 1).
    Pack(&'a [u8]),
    /// Progress (band 2), ignored.
    Progress,
    /// An error from the remote (band 3 or an `ERR` line), in its words (escaped: one line, no
    /// control characters).
    Error(String),
}

/// Classifies one data line of the answer.
pub(super) fn answer(line: &[u8]) -> Result<Answer<'_>, String> {
    let text = trim(line);
    if text.starts_with(b"ACK ") {
        return Ok(Answer::Ack);
    }
    if text == b"NAK" {
        return Ok(Answer::Nak);
    }
    if let Some(msg) = text.strip_prefix(b"ERR ") {
        return Ok(Answer::Error(escape_bytes(msg)));
    }
    match line.split_first() {
        Some((&1, data)) => Ok(Answer::Pack(data)),
        Some((&2, _)) => Ok(Answer::Progress),
        Some((&3, msg)) => Ok(Answer::Error(escape_bytes(trim(msg).trim_ascii()))),
        _ => Err(format!(
            "unexpected line in upload-pack's answer: {:?}",
            String::from_utf8_lossy(&text[..text.len().min(40)])
        )),
    }
}

/// The farthest first-parent distance a `have` is taken from. Walking there costs a commit
/// lookup per step on every fetch (~3 ms cold for 1,024 steps), and a deeper base is rarely
/// needed: a force-push rewrites recent commits, and the tip it replaced usually still exists on
/// the server, which acknowledges any object it has.
pub(super) const MAX_DISTANCE: usize = 256;

/// The `have` lines to send: for each distinct tip, the tip itself and its first-parent
/// ancestors at distances 1, 2, 4, 8, … up to [`MAX_DISTANCE`] (so a force-push that rewrote
/// the last commits still finds a common base), at most `max` in all, without repeats.
/// `parent` gives a commit's first parent.
pub(super) fn select_haves<T: Copy + PartialEq>(
    tips: &[T],
    mut parent: impl FnMut(T) -> Option<T>,
    max: usize,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    let mut distinct: Vec<T> = Vec::new();
    for t in tips {
        if !distinct.contains(t) {
            distinct.push(*t);
        }
    }
    let per_tip = max / distinct.len().max(1);
    for tip in distinct {
        let mut taken = 0;
        let (mut at, mut distance, mut next) = (Some(tip), 0usize, 0usize);
        while let Some(c) = at {
            if distance == next {
                if !out.contains(&c) && out.len() < max {
                    out.push(c);
                }
                taken += 1;
                next = if next == 0 { 1 } else { next * 2 };
                if taken >= per_tip || next > MAX_DISTANCE {
                    break;
                }
            }
            at = parent(c);
            distance += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
