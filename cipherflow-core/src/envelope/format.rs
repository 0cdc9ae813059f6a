//! The envelope header, byte for byte as `docs/FORMAT.md` section 1 specifies it: a
//! `write` half that encodes and a `read` half that parses, checks every length against the
//! limits, and keeps the exact bytes received so the MAC and signature are checked over them.

use std::collections::BTreeMap;
use std::io::Read;

use crate::crypto::SignatureAlgorithm;
use crate::error::{Error, FormatError};
use crate::keys::{KeyId, WrapAlgorithm};

/// `\x89CFE\r\n\x1a\n`: not text, and mangled by any text-mode transfer (FORMAT.md 1.1).
pub const MAGIC: [u8; 8] = *b"\x89CFE\r\n\x1a\n";
/// The only format version this build reads and writes.
pub const VERSION_V1: u16 = 1;
/// AES-256-GCM body, HKDF-SHA-256 key schedule, HMAC-SHA-256 header MAC.
pub const SUITE_V1: u16 = 1;

/// Smallest chunk size (plaintext bytes).
pub const MIN_CHUNK_SIZE: usize = 1024;
/// Largest chunk size (plaintext bytes).
pub const MAX_CHUNK_SIZE: usize = 16 << 20;
/// Default chunk size: 1 MiB, chosen by measurement (`benches/README.md`).
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Most chunks in one envelope (the 11-byte counter could go further; this keeps sizes in u64).
pub const MAX_CHUNKS: u64 = u32::MAX as u64;
/// Most recipients.
pub const MAX_RECIPIENTS: usize = 64;
/// Most metadata entries.
pub const MAX_METADATA_ENTRIES: usize = 1024;
/// Longest metadata key.
pub const MAX_METADATA_KEY_LEN: usize = 255;
/// Longest metadata value.
pub const MAX_METADATA_VALUE_LEN: usize = 65536;
/// Most bytes of metadata entries, length fields included.
pub const MAX_METADATA_LEN: usize = 65536;
/// Longest header.
pub const MAX_HEADER_LEN: usize = 256 << 10;
/// Wrapped key lengths (RSA 2048 to 4096 bits).
pub const WRAPPED_KEY_LEN: std::ops::RangeInclusive<usize> = 256..=512;
/// Length of the header MAC.
pub const MAC_LEN: usize = 32;

/// Who signed, and how long the signature at the end is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerInfo {
    /// The algorithm.
    pub algorithm: SignatureAlgorithm,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Exact signature length `S`.
    pub signature_len: u16,
}

/// What the producer vouches for (FORMAT.md 1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preamble {
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Random per envelope; the HKDF salt.
    pub file_id: [u8; 32],
    /// Key commitment.
    pub commitment: [u8; 32],
    /// The producer signature's parameters, if signed.
    pub signer: Option<SignerInfo>,
    /// Authenticated metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
}

/// One recipient (FORMAT.md 1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// How the data key is wrapped.
    pub algorithm: WrapAlgorithm,
    /// The recipient's key id.
    pub key_id: KeyId,
    /// The wrapped key.
    pub wrapped: Vec<u8>,
}

/// A parsed header with the exact bytes it came from.
#[derive(Debug, Clone)]
pub struct Header {
    /// The preamble.
    pub preamble: Preamble,
    /// The recipients.
    pub stanzas: Vec<Stanza>,
    /// The header MAC as received.
    pub mac: [u8; MAC_LEN],
    /// Bytes of the preamble as received (what the signature covers).
    pub(crate) preamble_bytes: Vec<u8>,
    /// Bytes of preamble and recipients as received (what the MAC covers).
    pub(crate) mac_input: Vec<u8>,
}

impl Header {
    /// Total header length in bytes.
    pub fn encoded_len(&self) -> usize {
        self.mac_input.len() + MAC_LEN
    }

    /// Signature length at the end of the envelope (0 if unsigned).
    pub fn signature_len(&self) -> usize {
        self.preamble
            .signer
            .as_ref()
            .map_or(0, |s| s.signature_len as usize)
    }

    /// Reads a header from the start of `input`, consuming exactly its bytes.
    pub fn read<R: Read>(input: R) -> Result<Header, Error> {
        read::header(input)
    }
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Error> {
    let limit = |what, value: usize, limit: usize| {
        if value > limit {
            Err(Error::Limit {
                what,
                value: value as u64,
                limit: limit as u64,
            })
        } else {
            Ok(())
        }
    };
    limit("metadata entry count", metadata.len(), MAX_METADATA_ENTRIES)?;
    let mut total = 0;
    for (k, v) in metadata {
        if k.is_empty() {
            return Err(Error::misuse("metadata keys must not be empty"));
        }
        limit("metadata key length", k.len(), MAX_METADATA_KEY_LEN)?;
        limit("metadata value length", v.len(), MAX_METADATA_VALUE_LEN)?;
        total += 2 + k.len() + 4 + v.len();
    }
    limit("metadata size", total, MAX_METADATA_LEN)
}

pub(crate) mod write {
    use super::*;

    /// Encodes a preamble, checking the limits a reader will enforce.
    pub(crate) fn preamble(p: &Preamble) -> Result<Vec<u8>, Error> {
        let chunk_size = p.chunk_size as usize;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::misuse("chunk size must be between 1 KiB and 16 MiB"));
        }
        check_metadata(&p.metadata)?;
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION_V1.to_be_bytes());
        out.extend_from_slice(&SUITE_V1.to_be_bytes());
        out.extend_from_slice(&p.chunk_size.to_be_bytes());
        out.extend_from_slice(&p.file_id);
        out.extend_from_slice(&p.commitment);
        match &p.signer {
            None => out.push(0),
            Some(s) => {
                out.push(s.algorithm.code());
                out.extend_from_slice(&s.key_id.0);
                out.extend_from_slice(&s.signature_len.to_be_bytes());
            }
        }
        out.extend_from_slice(&(p.metadata.len() as u16).to_be_bytes());
        for (k, v) in &p.metadata {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        Ok(out)
    }

    /// Encodes the recipient section.
    pub(crate) fn recipients(stanzas: &[Stanza]) -> Result<Vec<u8>, Error> {
        if stanzas.is_empty() {
            return Err(Error::misuse("an envelope needs at least one recipient"));
        }
        if stanzas.len() > MAX_RECIPIENTS {
            return Err(Error::Limit {
                what: "recipient count",
                value: stanzas.len() as u64,
                limit: MAX_RECIPIENTS as u64,
            });
        }
        let mut out = Vec::with_capacity(2 + stanzas.len() * 300);
        out.extend_from_slice(&(stanzas.len() as u16).to_be_bytes());
        for (i, s) in stanzas.iter().enumerate() {
            if stanzas[..i].iter().any(|t| t.key_id == s.key_id) {
                return Err(Error::misuse("the same recipient key was given twice"));
            }
            if !WRAPPED_KEY_LEN.contains(&s.wrapped.len()) {
                return Err(Error::misuse("wrapped key length must be 256 to 512 bytes"));
            }
            out.push(s.algorithm.code());
            out.extend_from_slice(&s.key_id.0);
            out.extend_from_slice(&(s.wrapped.len() as u16).to_be_bytes());
            out.extend_from_slice(&s.wrapped);
        }
        Ok(out)
    }
}

mod read {
    use super::*;

    /// Reads fields while counting the offset and keeping every byte.
    struct Fields<R> {
        input: R,
        bytes: Vec<u8>,
    }

    impl<R: Read> Fields<R> {
        fn offset(&self) -> u64 {
            self.bytes.len() as u64
        }

        fn fail(&self, at: u64, reason: impl Into<String>) -> Error {
            FormatError {
                offset: at,
                reason: reason.into(),
            }
            .into()
        }

        fn take(&mut self, n: usize, what: &str) -> Result<&[u8], Error> {
            let start = self.bytes.len();
            if start + n > MAX_HEADER_LEN {
                return Err(Error::Limit {
                    what: "header length",
                    value: (start + n) as u64,
                    limit: MAX_HEADER_LEN as u64,
                });
            }
            self.bytes.resize(start + n, 0);
            let mut filled = 0;
            while filled < n {
                match self.input.read(&mut self.bytes[start + filled..]) {
                    Ok(0) => {
                        let at = (start + filled) as u64;
                        self.bytes.truncate(start + filled);
                        return Err(self.fail(at, format!("envelope ends inside the {what}")));
                    }
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::Io(e)),
                }
            }
            Ok(&self.bytes[start..])
        }

        fn u8(&mut self, what: &str) -> Result<u8, Error> {
            Ok(self.take(1, what)?[0])
        }

        fn u16(&mut self, what: &str) -> Result<u16, Error> {
            let b = self.take(2, what)?;
            Ok(u16::from_be_bytes([b[0], b[1]]))
        }

        fn u32(&mut self, what: &str) -> Result<u32, Error> {
            let b = self.take(4, what)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }

        fn array32(&mut self, what: &str) -> Result<[u8; 32], Error> {
            Ok(self.take(32, what)?.try_into().expect("took 32 bytes"))
        }

        fn utf8(&mut self, n: usize, what: &str) -> Result<String, Error> {
            let at = self.offset();
            let bytes = self.take(n, what)?.to_vec();
            String::from_utf8(bytes).map_err(|e| {
                self.fail(
                    at + e.utf8_error().valid_up_to() as u64,
                    format!("{what} is not UTF-8"),
                )
            })
        }
    }

    pub(super) fn header<R: Read>(input: R) -> Result<Header, Error> {
        let mut f = Fields {
            input,
            bytes: Vec::with_capacity(1024),
        };
        if f.take(8, "magic")? != MAGIC {
            return Err(f.fail(0, "not a CipherFlow envelope (bad magic)"));
        }
        let version = f.u16("format version")?;
        if version != VERSION_V1 {
            return Err(Error::Unsupported {
                what: "format version",
                value: version.into(),
            });
        }
        let suite = f.u16("suite id")?;
        if suite != SUITE_V1 {
            return Err(Error::Unsupported {
                what: "algorithm suite",
                value: suite.into(),
            });
        }
        let at = f.offset();
        let chunk_size = f.u32("chunk size")?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&(chunk_size as usize)) {
            return Err(f.fail(
                at,
                format!("chunk size {chunk_size} is outside 1024..=16777216"),
            ));
        }
        let file_id = f.array32("file id")?;
        let commitment = f.array32("commitment")?;
        let at = f.offset();
        let signer = match f.u8("signature algorithm")? {
            0 => None,
            code => {
                let algorithm = SignatureAlgorithm::from_code(code).ok_or(Error::Unsupported {
                    what: "signature algorithm",
                    value: code.into(),
                })?;
                let key_id = KeyId(f.array32("signer key id")?);
                let at = f.offset();
                let signature_len = f.u16("signature length")?;
                let ok = match algorithm {
                    SignatureAlgorithm::EcdsaP256Sha256 => signature_len == 64,
                    SignatureAlgorithm::RsaPssSha256 => {
                        WRAPPED_KEY_LEN.contains(&(signature_len as usize))
                    }
                };
                if !ok {
                    return Err(f.fail(
                        at,
                        format!("signature length {signature_len} is invalid for {algorithm:?}"),
                    ));
                }
                Some(SignerInfo {
                    algorithm,
                    key_id,
                    signature_len,
                })
            }
        };
        let _ = at;
        let at = f.offset();
        let entries = f.u16("metadata count")? as usize;
        if entries > MAX_METADATA_ENTRIES {
            return Err(f.fail(
                at,
                format!("{entries} metadata entries, over the limit of {MAX_METADATA_ENTRIES}"),
            ));
        }
        let metadata_start = f.offset();
        let mut metadata = BTreeMap::new();
        let mut last_key: Option<String> = None;
        for _ in 0..entries {
            let at = f.offset();
            let klen = f.u16("metadata key length")? as usize;
            if klen == 0 || klen > MAX_METADATA_KEY_LEN {
                return Err(f.fail(at, format!("metadata key length {klen} is outside 1..=255")));
            }
            let key = f.utf8(klen, "metadata key")?;
            if last_key
                .as_ref()
                .is_some_and(|last| last.as_bytes() >= key.as_bytes())
            {
                return Err(f.fail(
                    at + 2,
                    format!("metadata key {key:?} is out of order or repeated"),
                ));
            }
            let at = f.offset();
            let vlen = f.u32("metadata value length")? as usize;
            if vlen > MAX_METADATA_VALUE_LEN {
                return Err(f.fail(at, format!("metadata value length {vlen} is over 65536")));
            }
            let value = f.utf8(vlen, "metadata value")?;
            if f.offset() - metadata_start > MAX_METADATA_LEN as u64 {
                return Err(f.fail(at, "metadata is over 65536 bytes"));
            }
            last_key = Some(key.clone());
            metadata.insert(key, value);
        }
        let preamble_len = f.bytes.len();

        let at = f.offset();
        let count = f.u16("recipient count")? as usize;
        if count == 0 || count > MAX_RECIPIENTS {
            return Err(f.fail(at, format!("recipient count {count} is outside 1..=64")));
        }
        let mut stanzas: Vec<Stanza> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = f.offset();
            let code = f.u8("wrap algorithm")?;
            let algorithm = WrapAlgorithm::from_code(code).ok_or(Error::Unsupported {
                what: "wrap algorithm",
                value: code.into(),
            })?;
            let key_id = KeyId(f.array32("recipient key id")?);
            if stanzas.iter().any(|s| s.key_id == key_id) {
                return Err(f.fail(at + 1, format!("recipient {key_id} appears twice")));
            }
            let at = f.offset();
            let wlen = f.u16("wrapped key length")? as usize;
            if !WRAPPED_KEY_LEN.contains(&wlen) {
                return Err(f.fail(
                    at,
                    format!("wrapped key length {wlen} is outside 256..=512"),
                ));
            }
            let wrapped = f.take(wlen, "wrapped key")?.to_vec();
            stanzas.push(Stanza {
                algorithm,
                key_id,
                wrapped,
            });
        }
        let mac_input = f.bytes.clone();
        let mac = f.array32("header MAC")?;
        let preamble_bytes = mac_input[..preamble_len].to_vec();
        Ok(Header {
            preamble: Preamble {
                chunk_size,
                file_id,
                commitment,
                signer,
                metadata,
            },
            stanzas,
            mac,
            preamble_bytes,
            mac_input,
        })
    }
}
