//! hookmirror's own fetch of one ref over its transports (`http`, `ssh`, `git_proto`), instead
//! of libgit2's negotiation, for the common case (see [`applies`]).
//!
//! Why: libgit2's v0 negotiation (smart_protocol.c `git_smart__negotiate_fetch`) sends its
//! `have` lines in rounds — over smart HTTP a POST of the wants and 20 haves, then another of
//! the common haves and `done`; over SSH a round for the haves and one for `done` — and every
//! round costs a round trip to the forge. Here the advertisement is read and then ONE request
//! goes out: `want <tip> <caps>`, a few `have` lines chosen to find a common base in one go
//! (the local ref's tip, HEAD, and first-parent ancestors at growing distances, [`pkt::select_haves`]),
//! `done`. Over HTTP that is the GET and one POST; over SSH and `git://` the advertisement and
//! one request on the same channel. When the tip is already in the object database, nothing is
//! requested at all. The pack (side-band-64k) streams into [`git2::Odb::packwriter`] (the
//! indexer resolves thin packs against the object database), and the destination ref is
//! updated as libgit2's fetch would (forced, reflog `hookmirror: fetch`).
//!
//! The streams are the transports' own (`SmartSubtransport::action`), so pools, logins,
//! proxies, CA files, host-key checks, the [`transport::Watch`] on every read and the error
//! mapping (`auth`, `tls`, `timeout`) are those of a libgit2 fetch through them. A server that
//! lacks side-band-64k or ofs-delta, or speaks only protocol v2, gets libgit2's fetch instead.

use std::io::{self, BufReader, Read, Write};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use git2::{Error, Oid, Repository};

use super::git_proto::{GitProto, io_error, net_error};
use super::http::SmartHttp;
use super::pkt::{self, AdvertError, Advertisement, Answer, Pkt};
use super::ssh::Ssh;
use super::transport;
use crate::config::{Repo, TransportChoice};
use crate::url::Scheme;

/// Sent as `agent=` where the server advertises `agent` (no spaces allowed there).
const AGENT: &str = concat!("hookmirror/", env!("CARGO_PKG_VERSION"));

/// `have` lines sent at most.
const MAX_HAVES: usize = 32;

/// How much of an answer is buffered between the transport and the pack writer.
const BUFFER: usize = 64 * 1024;

/// What the negotiation did.
#[derive(Debug)]
pub(super) enum Negotiated {
    /// The destination ref now points at the remote's tip (fetched, or already here).
    Done {
        /// The branch the remote's HEAD names, when it says.
        head_symref: Option<String>,
        /// A pack was fetched (false: the tip was in the object database already).
        fetched: bool,
    },
    /// The remote does not advertise the ref.
    Missing,
    /// The server lacks what this negotiation needs: libgit2's fetch takes over.
    Unsupported(String),
}

/// Whether [`fetch`] serves `repo`: hookmirror's transports (not `transport: libgit2`, not a
/// local path), no `depth`, and a checkout that is not shallow. Everything else keeps
/// libgit2's fetch.
pub(super) fn applies(git: &Repository, repo: &Repo) -> bool {
    repo.transport != TransportChoice::Libgit2
        && repo.url.scheme() != Scheme::File
        && repo.depth.is_none()
        && !git.is_shallow()
}

type Stream = Box<dyn SmartSubtransportStream>;

/// Fetches `src` from `repo`'s remote into `dst`. Runs inside `fetch::limited` (the fetch
/// context and limits installed for the transports).
pub(super) fn fetch(
    git: &Repository,
    repo: &Repo,
    src: &str,
    dst: &str,
) -> Result<Negotiated, Error> {
    let url = transport::fetch_url(repo);
    let (sub, stateless): (Box<dyn SmartSubtransport>, bool) = match repo.url.scheme() {
        Scheme::Https | Scheme::Http => (Box::new(SmartHttp::default()), true),
        Scheme::Ssh => (Box::new(Ssh), false),
        Scheme::Git => (Box::new(GitProto), false),
        Scheme::File => return Ok(Negotiated::Unsupported("a local path".into())),
    };
    let sizes = transport::Limits::current_or_default().sizes;
    let mut stream = BufReader::with_capacity(BUFFER, sub.action(&url, Service::UploadPackLs)?);
    // Only the tracked ref is kept: what the advertisement holds does not grow with the remote.
    let adv =
        match Advertisement::read(&mut stream, &sizes, |name| name == src).map_err(read_error)? {
            Ok(adv) => adv,
            Err(AdvertError::Remote(msg)) => return Err(remote_error(&msg)),
            Err(AdvertError::TooLarge(e)) => return Err(read_error(transport::too_large(e))),
            Err(AdvertError::Unsupported(why)) => {
                end(stream, stateless);
                return Ok(Negotiated::Unsupported(why));
            }
        };
    // The remote's words, shown as the ref a default-branch sync followed: escaped.
    let head_symref = adv
        .head_symref()
        .map(|s| crate::printable::escape(s).into_owned());
    let Some(tip) = adv.find(src) else {
        end(stream, stateless);
        return Ok(Negotiated::Missing);
    };
    let odb = git.odb()?;
    if odb.exists(tip) {
        end(stream, stateless);
        update_ref(git, dst, tip)?;
        return Ok(Negotiated::Done {
            head_symref,
            fetched: false,
        });
    }
    let Some(caps) = adv.request_caps(AGENT) else {
        end(stream, stateless);
        return Ok(Negotiated::Unsupported(
            "the server offers no side-band-64k or ofs-delta".into(),
        ));
    };
    let body = pkt::request(tip, &caps, &haves(git, dst));
    let mut answer = if stateless {
        // Read to its end: the advertisement's connection goes back to the pool for the POST.
        drop(stream);
        let mut post = sub.action(&url, Service::UploadPack)?;
        post.write_all(&body).map_err(read_error)?;
        BufReader::with_capacity(BUFFER, post)
    } else {
        let channel = stream.get_mut();
        channel
            .write_all(&body)
            .and_then(|()| channel.flush())
            .map_err(read_error)?;
        stream
    };
    receive_pack(&mut answer, &odb)?;
    drop(answer);
    update_ref(git, dst, tip)?;
    Ok(Negotiated::Done {
        head_symref,
        fetched: true,
    })
}

/// Ends a channel without a request: a flush tells upload-pack there is nothing to fetch, so it
/// exits cleanly (an SSH session then goes back to the pool). Over HTTP dropping the answer is
/// all (it was read to its end).
fn end(mut stream: BufReader<Stream>, stateless: bool) {
    if !stateless {
        let channel = stream.get_mut();
        let _ = channel.write_all(pkt::FLUSH).and_then(|()| channel.flush());
    }
}

/// The `have` lines: the destination ref's tip and HEAD, and their first-parent ancestors at
/// growing distances.
fn haves(git: &Repository, dst: &str) -> Vec<Oid> {
    let commit_of = |oid: Oid| {
        git.find_object(oid, None)
            .and_then(|o| o.peel_to_commit())
            .ok()
    };
    let tips: Vec<Oid> = [
        git.refname_to_id(dst).ok(),
        git.head().ok().and_then(|h| h.target()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|o| commit_of(o).map(|c| c.id()))
    .collect();
    pkt::select_haves(
        &tips,
        |c| git.find_commit(c).ok().and_then(|c| c.parent_id(0).ok()),
        MAX_HAVES,
    )
}

/// Reads upload-pack's answer to its end: the `ACK`/`NAK` line, then the side-band-64k pack
/// (band 1) into the object database's pack writer, progress ignored, band 3 an error. (The
/// transport's [`budget::Meter`](super::budget::Meter) has refused a pack header that declares
/// more than `limits.max_objects` before it gets here.)
fn receive_pack(r: &mut impl Read, odb: &git2::Odb<'_>) -> Result<(), Error> {
    let mut writer = odb.packwriter()?;
    let mut buf = Vec::with_capacity(BUFFER);
    loop {
        let n = match pkt::read_pkt(r, &mut buf).map_err(read_error)? {
            Pkt::Flush => break,
            Pkt::Data(n) => n,
        };
        match pkt::answer(&buf[..n]).map_err(|m| net_error(&format!("upload-pack: {m}")))? {
            Answer::Ack | Answer::Nak | Answer::Progress => {}
            Answer::Pack(data) => {
                // git2 keeps only "Write error" of the indexer's failure; libgit2 still holds
                // its own (a full disk, a malformed pack).
                writer.write_all(data).map_err(|_| Error::last_error(-1))?;
            }
            Answer::Error(msg) => return Err(remote_error(&msg)),
        }
    }
    writer.commit()?;
    Ok(())
}

/// Points `dst` at `tip`, as libgit2's fetch of `+src:dst` does.
fn update_ref(git: &Repository, dst: &str, tip: Oid) -> Result<(), Error> {
    git.reference(dst, tip, true, "hookmirror: fetch")
        .map(|_| ())
}

/// The remote's refusal as libgit2 words it (`error::classify` reads the remote's text).
fn remote_error(msg: &str) -> Error {
    net_error(&format!("remote error: {}", msg.trim()))
}

/// A failed read or write of a transport's stream. The transports record their own error
/// (`transport::fail`, taken back by `error::classify` when the text matches); a stream cut
/// short is a network error; a timeout keeps its code (as for every transport: `io_error`).
fn read_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return net_error("upload-pack: the answer ended early");
    }
    io_error(&e, &e.to_string())
}
