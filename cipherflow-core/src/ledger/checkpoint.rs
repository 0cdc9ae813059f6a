//! Signed checkpoints in the C2SP signed-note / tlog-checkpoint style, and the trusted-key set
//! that verifies them.
//!
//! A checkpoint commits to the whole log (origin, tree size, root hash) plus the time it
//! states; an auditor who trusts the key trusts every record the root covers. Keys carry
//! validity windows checked against that stated time, so a signing key can be rotated (or
//! retired after a compromise) without invalidating older checkpoints.
//!
//! ```text
//! example.com/ledger/prod
//! 3
//! <base64 root hash>
//! time 1549053768
//!
//! — <key name> <base64(4-byte key hash || signature)>
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use super::LedgerError;
use super::merkle::Hash;
use super::time::format_rfc3339;
use crate::{Error, KeyId, Signer, Verifier};

/// Longest checkpoint note accepted.
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// Longest origin line accepted.
pub const MAX_ORIGIN_LEN: usize = 1024;
/// Prefixed to the note body before signing, so a checkpoint signature can never be taken
/// for an envelope signature (or anything else the same key signs), and vice versa.
pub const SIGNING_CONTEXT: &[u8] = b"cipherflow ledger checkpoint v1\n";
/// The signed-note signature type byte hashed into key hashes (0xff: not a C2SP-registered
/// algorithm; the algorithm comes from the key itself).
const SIGNATURE_TYPE: u8 = 0xff;
const SIG_PREFIX: &str = "\u{2014} ";

/// What a checkpoint says about the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name; one origin per log.
    pub origin: String,
    /// Number of records covered.
    pub size: u64,
    /// The RFC 6962 root hash of those records.
    pub root: Hash,
    /// When the checkpoint was made, in seconds since the Unix epoch (the time key validity
    /// windows are checked against).
    pub time: u64,
}

/// Checks an origin line: non-empty, at most [`MAX_ORIGIN_LEN`] bytes, no control characters.
pub fn check_origin(origin: &str) -> Result<(), LedgerError> {
    if origin.is_empty() || origin.len() > MAX_ORIGIN_LEN || origin.chars().any(char::is_control) {
        return Err(LedgerError::Checkpoint(format!(
            "origin {origin:?} must be 1 to {MAX_ORIGIN_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// The name a key signs under: its key id in hex.
pub fn key_name(key_id: KeyId) -> String {
    key_id.to_string()
}

/// The 4-byte key hash on a signature line: `SHA-256(name || 0x0A || 0xFF || key id)[..4]`.
pub fn key_hash(name: &str, key_id: KeyId) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', SIGNATURE_TYPE]);
    h.update(key_id.0);
    h.finalize()[..4].try_into().expect("4 bytes")
}

impl Checkpoint {
    /// The note body, which is what gets signed (after [`SIGNING_CONTEXT`]).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.time
        )
    }

    /// Signs the checkpoint: the full note text, body and one signature line.
    pub fn sign(&self, signer: &dyn Signer) -> Result<String, Error> {
        check_origin(&self.origin)?;
        let body = self.body();
        let signature = signer.sign(&signed_message(&body))?;
        let name = key_name(signer.key_id());
        let mut blob = key_hash(&name, signer.key_id()).to_vec();
        blob.extend_from_slice(&signature);
        Ok(format!(
            "{body}\n{SIG_PREFIX}{name} {}\n",
            BASE64.encode(blob)
        ))
    }

    /// Parses a note without checking any signature. Use [`TrustedKeys::verify`] to trust it.
    pub fn parse_unverified(note: &str) -> Result<(Checkpoint, Vec<SignatureLine>), LedgerError> {
        let bad = |reason: &str| LedgerError::Checkpoint(reason.into());
        if note.len() > MAX_NOTE_LEN {
            return Err(bad("note is too long"));
        }
        let split = note
            .find("\n\n")
            .ok_or_else(|| bad("no blank line between body and signatures"))?;
        let (body, signatures) = (&note[..split + 1], &note[split + 2..]);

        let mut lines = body.lines();
        let origin = lines.next().unwrap_or_default();
        check_origin(origin)?;
        let size_text = lines.next().ok_or_else(|| bad("no tree size line"))?;
        let size = parse_decimal(size_text).ok_or_else(|| bad("tree size is not a decimal"))?;
        let root_text = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = BASE64
            .decode(root_text)
            .ok()
            .and_then(|v| v.try_into().ok())
            .filter(|r: &Hash| BASE64.encode(r) == root_text)
            .ok_or_else(|| bad("root hash is not 32 bytes of canonical base64"))?;
        let time = lines
            .next()
            .and_then(|l| l.strip_prefix("time "))
            .and_then(parse_decimal)
            .ok_or_else(|| bad("no `time SECONDS` line"))?;
        if lines.next().is_some() {
            return Err(bad("unexpected extension line"));
        }
        let checkpoint = Checkpoint {
            origin: origin.into(),
            size,
            root,
            time,
        };
        if checkpoint.body() != body {
            return Err(bad("body is not in canonical form"));
        }

        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(bad("signature lines missing or not newline-terminated"));
        }
        let mut parsed = Vec::new();
        for line in signatures.lines() {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad("signature line does not start with an em dash and space"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("signature line has no key name"))?;
            if name.is_empty() || name.contains('+') {
                return Err(bad("bad key name on a signature line"));
            }
            let blob = BASE64
                .decode(blob)
                .ok()
                .filter(|b| b.len() > 4)
                .ok_or_else(|| bad("signature is not base64 of key hash and signature"))?;
            parsed.push(SignatureLine {
                name: name.into(),
                key_hash: blob[..4].try_into().expect("4 bytes"),
                signature: blob[4..].to_vec(),
            });
        }
        Ok((checkpoint, parsed))
    }
}

fn signed_message(body: &str) -> Vec<u8> {
    [SIGNING_CONTEXT, body.as_bytes()].concat()
}

/// A decimal with no sign, no leading zeros (except `0` itself), that fits a `u64`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    /// The key name.
    pub name: String,
    /// The 4-byte key hash.
    pub key_hash: [u8; 4],
    /// The signature.
    pub signature: Vec<u8>,
}

/// A key trusted to sign checkpoints, for checkpoints whose stated time is in
/// `[not_before, not_after)` (either bound may be open).
pub struct TrustedKey {
    name: String,
    hash: [u8; 4],
    verifier: Box<dyn Verifier>,
    not_before: Option<u64>,
    not_after: Option<u64>,
}

impl TrustedKey {
    /// Trusts `verifier` for any time.
    pub fn new(verifier: impl Verifier + 'static) -> TrustedKey {
        let id = verifier.key_id();
        let name = key_name(id);
        TrustedKey {
            hash: key_hash(&name, id),
            name,
            verifier: Box::new(verifier),
            not_before: None,
            not_after: None,
        }
    }

    /// Only for checkpoints stating a time at or after `unix_seconds`.
    pub fn not_before(mut self, unix_seconds: u64) -> TrustedKey {
        self.not_before = Some(unix_seconds);
        self
    }

    /// Only for checkpoints stating a time before `unix_seconds`.
    pub fn not_after(mut self, unix_seconds: u64) -> TrustedKey {
        self.not_after = Some(unix_seconds);
        self
    }

    fn valid_at(&self, time: u64) -> bool {
        self.not_before.is_none_or(|t| time >= t) && self.not_after.is_none_or(|t| time < t)
    }
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey")
            .field("name", &self.name)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The keys an auditor trusts to sign checkpoints.
#[derive(Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// An empty set (trusts nothing).
    pub fn new() -> TrustedKeys {
        TrustedKeys::default()
    }

    /// Adds a key.
    pub fn with(mut self, key: TrustedKey) -> TrustedKeys {
        self.keys.push(key);
        self
    }

    /// Parses `note` and accepts it if a trusted key, valid at the checkpoint's stated time,
    /// signed it. Signatures by unknown keys are ignored (C2SP); a trusted key's invalid
    /// signature is an error.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, Error> {
        let (checkpoint, signatures) = Checkpoint::parse_unverified(note)?;
        let message = signed_message(&checkpoint.body());
        let mut out_of_window = None;
        for line in &signatures {
            for key in &self.keys {
                if key.name != line.name || key.hash != line.key_hash {
                    continue;
                }
                if !key.valid_at(checkpoint.time) {
                    out_of_window = Some(LedgerError::KeyNotValid {
                        key: key.name.clone(),
                        time: format_rfc3339(checkpoint.time.saturating_mul(1000)),
                    });
                    continue;
                }
                return match key.verifier.verify(&message, &line.signature) {
                    Ok(()) => Ok(checkpoint),
                    Err(_) => Err(LedgerError::BadSignature(key.name.clone()).into()),
                };
            }
        }
        Err(out_of_window
            .unwrap_or_else(|| {
                LedgerError::UntrustedKey(
                    signatures
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
            .into())
    }
}
