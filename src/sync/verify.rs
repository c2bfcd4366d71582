//! Signature-gated publishing (`verify:`): a commit is published only when its own signature
//! (`head`) or its annotated tag's (`tag`) verifies against a trusted key — an SSH key from the
//! allowed_signers file (sshsig, namespace `git`) or an OpenPGP key from `gpg_keys`. The key
//! files are read at every check, so a changed file is in force for the next sync.
//!
//! The signed data is exactly what git signs: the commit object without ALL of its signature
//! headers (`gpgsig` and `gpgsig-sha256`, with their continuation lines; git2's
//! `extract_signature` removes only the one it is asked for), or the tag object up to the
//! signature appended to its message.

use git2::{ObjectType, Oid, Repository};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

use super::error::{ErrorKind, SyncError};
use crate::config::{Repo, Target, VerifyMode};
use crate::signers::{self, SSH_NAMESPACE};

/// The headers a commit's signatures live in; all are removed from the signed data.
const SIGNATURE_HEADERS: [&str; 2] = ["gpgsig", "gpgsig-sha256"];

/// Who signed: shown in the log when a commit is published.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Signer {
    pub who: String,
    pub fingerprint: String,
}

/// Checks what `repo.deploy.verify` asks of `commit` (fetched, not yet published). An
/// [`ErrorKind::Unverified`] error names the commit, the reason and the key it saw.
pub(super) fn check(git: &Repository, repo: &Repo, commit: Oid) -> Result<(), SyncError> {
    let (what, id, payload, signature) = match repo.deploy.verify.mode {
        VerifyMode::None => return Ok(()),
        VerifyMode::Head => {
            let raw = raw_object(git, commit)?;
            let (payload, signature) = split_commit(&raw);
            ("commit", commit, payload, signature)
        }
        VerifyMode::Tag => {
            let Target::Tag(name) = &repo.target else {
                return Err(unverified(
                    "this repo",
                    commit,
                    "`verify.mode: tag` needs `tag:`",
                ));
            };
            let id = git
                .refname_to_id(&format!("refs/tags/{name}"))
                .map_err(|e| SyncError::new(ErrorKind::Other, e.message()))?;
            let is_annotated = git.find_object(id, None).ok().and_then(|o| o.kind());
            if is_annotated != Some(ObjectType::Tag) {
                let why = format!("tag `{name}` is a lightweight tag: it carries no signature");
                return Err(unverified("commit", commit, &why));
            }
            let raw = raw_object(git, id)?;
            // The signature covers the tag's own name: a trusted tag object of another
            // release, replayed under this name, must not pass for it.
            let named = tag_name(&raw);
            if named.as_deref() != Some(name.as_str()) {
                let why = match named {
                    Some(other) => format!(
                        "the tag object fetched as `{name}` is tag `{}` (a signed tag replayed under another name)",
                        crate::printable::escape(&other)
                    ),
                    None => format!("the tag object fetched as `{name}` names no tag"),
                };
                return Err(unverified("tag", id, &why));
            }
            let (payload, signature) = split_tag(&raw);
            ("tag", id, payload, signature)
        }
    };
    match verdict(repo, &payload, signature.as_deref()) {
        Ok(signer) => {
            tracing::info!(repo = %repo.name, object = what, id = %id, signer = %signer.who, key = %signer.fingerprint, "signature verified");
            Ok(())
        }
        Err(reason) => Err(unverified(what, id, &reason)),
    }
}

fn unverified(what: &str, id: Oid, reason: &str) -> SyncError {
    SyncError::new(
        ErrorKind::Unverified,
        format!("{what} {id} is not published: {reason}; the published tree stays where it was"),
    )
}

fn raw_object(git: &Repository, id: Oid) -> Result<Vec<u8>, SyncError> {
    let odb = git
        .odb()
        .map_err(|e| SyncError::new(ErrorKind::Other, e.message()))?;
    let object = odb
        .read(id)
        .map_err(|e| SyncError::new(ErrorKind::Other, e.message()))?;
    Ok(object.data().to_vec())
}

/// Splits a raw commit into the bytes git signs (every signature header removed, with its
/// continuation lines) and the `gpgsig` signature (continuation lines joined).
pub(super) fn split_commit(raw: &[u8]) -> (Vec<u8>, Option<String>) {
    let header_end = find(raw, b"\n\n").map_or(raw.len(), |i| i + 1);
    let (headers, body) = raw.split_at(header_end);
    let mut payload = Vec::with_capacity(raw.len());
    let mut signature: Option<String> = None;
    // Which header the current continuation lines belong to: kept, the signature, or dropped.
    #[derive(PartialEq)]
    enum In {
        Kept,
        Signature,
        Dropped,
    }
    let mut current = In::Kept;
    for line in headers.split_inclusive(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b" ") {
            match current {
                In::Kept => payload.extend_from_slice(line),
                In::Signature => {
                    let s = signature.get_or_insert_with(String::new);
                    s.push('\n');
                    s.push_str(String::from_utf8_lossy(rest).trim_end_matches('\n'));
                }
                In::Dropped => {}
            }
            continue;
        }
        let name = line.split(|&b| b == b' ').next().unwrap_or_default();
        let name = String::from_utf8_lossy(name);
        current = if !SIGNATURE_HEADERS.contains(&name.as_ref()) {
            payload.extend_from_slice(line);
            In::Kept
        } else if name == SIGNATURE_HEADERS[0] && signature.is_none() {
            let value = &line[name.len() + 1..];
            signature = Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches('\n')
                    .to_string(),
            );
            In::Signature
        } else {
            In::Dropped
        };
    }
    payload.extend_from_slice(body);
    (payload, signature.map(|s| s + "\n"))
}

/// Splits a raw annotated tag into the bytes git signs and the signature appended to its
/// message (the first line that starts an armored signature, to the end).
pub(super) fn split_tag(raw: &[u8]) -> (Vec<u8>, Option<String>) {
    const STARTS: [&[u8]; 3] = [
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----BEGIN SSH SIGNATURE-----",
        b"-----BEGIN SIGNED MESSAGE-----",
    ];
    let mut at = 0;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if STARTS.iter().any(|s| line.starts_with(s)) {
            let signature = String::from_utf8_lossy(&raw[at..]).into_owned();
            return (raw[..at].to_vec(), Some(signature));
        }
        at += line.len();
    }
    (raw.to_vec(), None)
}

/// The `tag` header of a raw annotated tag: the name it was made (and signed) with.
pub(super) fn tag_name(raw: &[u8]) -> Option<String> {
    let header_end = find(raw, b"\n\n").unwrap_or(raw.len());
    raw[..header_end]
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"tag "))
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `signature` over `payload` verifies against `repo`'s trusted keys: who signed, or
/// why not.
fn verdict(repo: &Repo, payload: &[u8], signature: Option<&str>) -> Result<Signer, String> {
    let Some(signature) = signature else {
        return Err("it is not signed".into());
    };
    let v = &repo.deploy.verify;
    if signature.starts_with("-----BEGIN SSH SIGNATURE-----") {
        let Some(path) = &v.ssh_allowed_signers else {
            return Err("it has an SSH signature and no `ssh_allowed_signers` is set".into());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let signers = signers::parse_allowed_signers(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return verify_ssh(&signers, payload, signature);
    }
    if signature.starts_with("-----BEGIN PGP SIGNATURE-----") {
        if v.gpg_keys.is_empty() {
            return Err("it has an OpenPGP signature and no `gpg_keys` are set".into());
        }
        let mut keys = Vec::new();
        for path in &v.gpg_keys {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            keys.extend(
                signers::parse_gpg_keys(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
        return verify_pgp(&keys, payload, signature);
    }
    Err("its signature is of a kind hookmirror does not verify (X.509?)".into())
}

/// sshsig: the key in the signature must be an allowed signer for namespace `git`, and the
/// signature must verify with it.
pub(super) fn verify_ssh(
    allowed: &[signers::AllowedSigner],
    payload: &[u8],
    armored: &str,
) -> Result<Signer, String> {
    let sig = ssh_key::SshSig::from_pem(armored)
        .map_err(|e| format!("its SSH signature does not parse ({e})"))?;
    let key = ssh_key::PublicKey::from(sig.public_key().clone());
    let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    if sig.namespace() != SSH_NAMESPACE {
        return Err(format!(
            "its SSH signature (key {fingerprint}) is for namespace `{}`, not `{SSH_NAMESPACE}`",
            sig.namespace()
        ));
    }
    let Some(signer) = allowed
        .iter()
        .find(|s| s.key.key_data() == sig.public_key() && s.allows(SSH_NAMESPACE))
    else {
        return Err(format!(
            "signed by SSH key {fingerprint}, which is not an allowed signer"
        ));
    };
    signer
        .key
        .verify(SSH_NAMESPACE, payload, &sig)
        .map_err(|_| format!("the SSH signature by key {fingerprint} does not verify over it"))?;
    Ok(Signer {
        who: signer.principals.clone(),
        fingerprint,
    })
}

/// OpenPGP: the signature must verify with a trusted primary key or one of its subkeys.
pub(super) fn verify_pgp(
    keys: &[SignedPublicKey],
    payload: &[u8],
    armored: &str,
) -> Result<Signer, String> {
    let (sig, _) = DetachedSignature::from_string(armored)
        .map_err(|e| format!("its OpenPGP signature does not parse ({e})"))?;
    let issuer = sig
        .signature
        .issuer_fingerprint()
        .first()
        .map(|f| format!("{f:X}"))
        .or_else(|| {
            let ids = sig.signature.issuer_key_id();
            ids.first().map(|k| hex::encode_upper(k.as_ref()))
        })
        .unwrap_or_else(|| "(no issuer)".into());
    for key in keys {
        let primary = &key.primary_key;
        let user = key
            .details
            .users
            .first()
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .unwrap_or_default();
        if sig.verify(primary, payload).is_ok() {
            return Ok(Signer {
                who: user,
                fingerprint: format!("{:X}", primary.fingerprint()),
            });
        }
        for sub in &key.public_subkeys {
            if sig.verify(&sub.key, payload).is_ok() {
                return Ok(Signer {
                    who: user,
                    fingerprint: format!("{:X}", sub.key.fingerprint()),
                });
            }
        }
    }
    let known = keys.iter().any(|k| {
        std::iter::once(k.primary_key.fingerprint())
            .chain(k.public_subkeys.iter().map(|s| s.key.fingerprint()))
            .any(|f| format!("{f:X}").ends_with(&issuer))
    });
    Err(match known {
        true => format!("the OpenPGP signature by key {issuer} does not verify over it"),
        false => format!("signed by OpenPGP key {issuer}, which is not among the trusted keys"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_tags_name_is_read_from_its_header_only() {
        let raw = b"object 1111111111111111111111111111111111111111\ntype commit\ntag v1.0\ntagger A <a@b> 1 +0000\n\ntag live\n";
        assert_eq!(tag_name(raw).as_deref(), Some("v1.0"));
        assert_eq!(tag_name(b"object 1\ntype commit\n\ntag live\n"), None);
    }

    #[test]
    fn every_signature_header_is_removed_from_the_signed_data() {
        let raw = b"tree 1234\nparent 5678\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\ngpgsig -----BEGIN SSH SIGNATURE-----\n abc\n -----END SSH SIGNATURE-----\ngpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n def\n -----END PGP SIGNATURE-----\nencoding utf-8\n\nmessage\n\nbody gpgsig x\n";
        let (payload, sig) = split_commit(raw);
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            "tree 1234\nparent 5678\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\nencoding utf-8\n\nmessage\n\nbody gpgsig x\n"
        );
        assert_eq!(
            sig.as_deref(),
            Some("-----BEGIN SSH SIGNATURE-----\nabc\n-----END SSH SIGNATURE-----\n")
        );
        let unsigned = b"tree 1\nauthor A <a@x> 1 +0000\n\nmsg\n";
        assert_eq!(split_commit(unsigned), (unsigned.to_vec(), None));
    }

    #[test]
    fn a_tag_signature_is_the_end_of_its_message() {
        let raw = b"object 1\ntype commit\ntag v1\ntagger A <a@x> 1 +0000\n\nrelease\n-----BEGIN PGP SIGNATURE-----\nxyz\n-----END PGP SIGNATURE-----\n";
        let (payload, sig) = split_tag(raw);
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            "object 1\ntype commit\ntag v1\ntagger A <a@x> 1 +0000\n\nrelease\n"
        );
        assert!(
            sig.unwrap()
                .starts_with("-----BEGIN PGP SIGNATURE-----\nxyz")
        );
        assert_eq!(split_tag(b"object 1\n\nmsg\n").1, None);
    }
}
