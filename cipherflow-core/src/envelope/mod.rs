//! The sealed-snapshot envelope (format v1, `docs/FORMAT.md`).
//!
//! Which API for which job:
//! - [`Sealer`]: seal for one or more recipients (one-shot [`Sealer::seal_bytes`], or the
//!   streaming [`Sealer::seal_writer`] whose `finish()` is mandatory).
//! - [`Opener`]: open with one recipient's key (one-shot, streaming [`Opener::open_reader`],
//!   file to file [`Opener::open_file`] which never leaves plaintext behind on failure, or
//!   one chunk at a time with [`Opener::random_access`]).
//! - [`inspect`]: what an envelope says about itself, without any key.
//! - [`rewrap`]: add or remove recipients without touching a byte of the body.

mod format;
mod keys;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

pub use format::{
    DEFAULT_CHUNK_SIZE, Header, MAGIC, MAX_CHUNK_SIZE, MAX_CHUNKS, MAX_HEADER_LEN,
    MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN, MAX_METADATA_LEN, MAX_METADATA_VALUE_LEN,
    MAX_RECIPIENTS, MIN_CHUNK_SIZE, Preamble, SUITE_V1, SignerInfo, Stanza, VERSION_V1,
};
pub use stream::{OpenReader, RandomAccess, SealWriter};

use self::keys::{DataKey, FileKeys};
use crate::crypto::{Backend, SignatureAlgorithm, TAG_LEN, default_backend, fill_random};
use crate::error::{Error, IntegrityError, KeyError, SignatureError};
use crate::keys::{KeyId, KeyUnwrapper, KeyWrapper};
use crate::sign::{Signer, Verifier};

/// Seals plaintext for a set of recipients.
pub struct Sealer<'a> {
    recipients: Vec<&'a dyn KeyWrapper>,
    signer: Option<&'a dyn Signer>,
    metadata: BTreeMap<String, String>,
    chunk_size: usize,
    backend: &'static dyn Backend,
}

impl<'a> Sealer<'a> {
    /// A sealer for these recipients (at least one, at most [`MAX_RECIPIENTS`]).
    pub fn new(recipients: &[&'a dyn KeyWrapper]) -> Self {
        Sealer {
            recipients: recipients.to_vec(),
            signer: None,
            metadata: BTreeMap::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            backend: default_backend(),
        }
    }

    /// Adds an authenticated metadata entry (table, snapshot id, watermark, ...).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Signs the envelope as its producer.
    pub fn signer(mut self, signer: &'a dyn Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Plaintext bytes per chunk ([`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`]).
    pub fn chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Uses another crypto backend for the body.
    pub fn backend(mut self, backend: &'static dyn Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Writes the header to `output` and returns a writer for the plaintext.
    pub fn seal_writer<W: Write>(&self, output: W) -> Result<SealWriter<'a, W>, Error> {
        let (data_key, file_id) = fresh_key_and_file_id()?;
        self.seal_writer_with(output, data_key, file_id)
    }

    /// [`Sealer::seal_writer`] with the random values given: for test vectors only.
    pub(crate) fn seal_writer_with<W: Write>(
        &self,
        mut output: W,
        data_key: DataKey,
        file_id: [u8; 32],
    ) -> Result<SealWriter<'a, W>, Error> {
        let prepared = self.prepare(data_key, file_id)?;
        output.write_all(&prepared.header)?;
        let signer = self.signer.map(|s| (s, prepared.preamble()));
        let key = self.backend.aes256gcm(&prepared.payload_key);
        Ok(SealWriter::new(output, key, self.chunk_size, signer))
    }

    /// Seals `plaintext` into a new envelope.
    pub fn seal_bytes(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.seal_to_vec(plaintext, &mut out)?;
        Ok(out)
    }

    /// Seals `plaintext` into `out`, replacing its contents and reusing its memory: the
    /// fastest path for data already in memory (each chunk is copied into place and sealed
    /// there by one worker, on all cores).
    pub fn seal_to_vec(&self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let (data_key, file_id) = fresh_key_and_file_id()?;
        let prepared = self.prepare(data_key, file_id)?;
        let signer = self.signer.map(|s| (s, prepared.preamble()));
        let key = self.backend.aes256gcm(&prepared.payload_key);
        stream::seal_into(
            key.as_ref(),
            &prepared.header,
            plaintext,
            self.chunk_size,
            signer,
            out,
        )
    }

    /// Everything up to the body: checks, key schedule, wrapped keys, header bytes.
    fn prepare(&self, data_key: DataKey, file_id: [u8; 32]) -> Result<Prepared, Error> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(Error::misuse("chunk size must be between 1 KiB and 16 MiB"));
        }
        let file_keys = data_key.derive(&file_id);
        let signer = match self.signer {
            None => None,
            Some(s) => Some(SignerInfo {
                algorithm: s.algorithm(),
                key_id: s.key_id(),
                signature_len: u16::try_from(s.signature_len())
                    .map_err(|_| Error::misuse("signature length over 65535"))?,
            }),
        };
        let preamble = format::write::preamble(&Preamble {
            chunk_size: self.chunk_size as u32,
            file_id,
            commitment: file_keys.commitment,
            signer,
            metadata: self.metadata.clone(),
        })?;
        let stanzas = wrap_for(&self.recipients, &data_key, &file_id)?;
        Ok(Prepared {
            header: encode_header(&preamble, &stanzas, &file_keys)?,
            preamble_len: preamble.len(),
            payload_key: file_keys.payload,
        })
    }
}

/// A header ready to write and the body key that goes with it.
struct Prepared {
    header: Vec<u8>,
    preamble_len: usize,
    payload_key: zeroize::Zeroizing<[u8; 32]>,
}

impl Prepared {
    fn preamble(&self) -> &[u8] {
        &self.header[..self.preamble_len]
    }
}

fn fresh_key_and_file_id() -> Result<(DataKey, [u8; 32]), Error> {
    let rng_failed = |_| Error::misuse("the operating system's random number generator failed");
    let data_key = DataKey::generate().map_err(rng_failed)?;
    let mut file_id = [0u8; 32];
    fill_random(&mut file_id).map_err(rng_failed)?;
    Ok((data_key, file_id))
}

fn wrap_for(
    recipients: &[&dyn KeyWrapper],
    data_key: &DataKey,
    file_id: &[u8; 32],
) -> Result<Vec<Stanza>, Error> {
    let plaintext = data_key.wrap_plaintext(file_id);
    recipients
        .iter()
        .map(|r| {
            let wrapped = r.wrap(&plaintext)?;
            if wrapped.len() != r.wrapped_len() {
                return Err(KeyError::OperationFailed(format!(
                    "recipient {} returned a wrapped key of {} bytes, expected {}",
                    r.key_id(),
                    wrapped.len(),
                    r.wrapped_len()
                ))
                .into());
            }
            Ok(Stanza {
                algorithm: r.algorithm(),
                key_id: r.key_id(),
                wrapped,
            })
        })
        .collect()
}

/// `preamble || recipients || header MAC` (FORMAT.md 1.1 to 1.3).
fn encode_header(preamble: &[u8], stanzas: &[Stanza], keys: &FileKeys) -> Result<Vec<u8>, Error> {
    let mut header = preamble.to_vec();
    header.extend_from_slice(&format::write::recipients(stanzas)?);
    if header.len() + format::MAC_LEN > MAX_HEADER_LEN {
        return Err(Error::Limit {
            what: "header length",
            value: (header.len() + format::MAC_LEN) as u64,
            limit: MAX_HEADER_LEN as u64,
        });
    }
    let mac = keys.header_mac(&header);
    header.extend_from_slice(&mac);
    Ok(header)
}

/// Opens envelopes with one recipient's key.
pub struct Opener<'a> {
    key: &'a dyn KeyUnwrapper,
    verifier: Option<&'a dyn Verifier>,
    backend: &'static dyn Backend,
}

impl<'a> Opener<'a> {
    /// An opener for the holder of `key`.
    pub fn new(key: &'a dyn KeyUnwrapper) -> Self {
        Opener {
            key,
            verifier: None,
            backend: default_backend(),
        }
    }

    /// Refuses envelopes not signed by this producer key.
    pub fn require_signer(mut self, verifier: &'a dyn Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Uses another crypto backend for the body.
    pub fn backend(mut self, backend: &'static dyn Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Parses and authenticates the header: finds our stanza, unwraps, checks the commitment
    /// and the header MAC (FORMAT.md section 3, steps 1 to 5) and the signer's identity.
    fn authenticate<R: Read>(&self, input: R) -> Result<(Header, DataKey, FileKeys), Error> {
        let header = Header::read(input)?;
        if let Some(v) = self.verifier {
            let signer = header
                .preamble
                .signer
                .as_ref()
                .ok_or(SignatureError::Missing)?;
            if signer.key_id != v.key_id() || signer.algorithm != v.algorithm() {
                return Err(SignatureError::UnknownSigner {
                    expected: v.key_id(),
                    found: signer.key_id,
                }
                .into());
            }
        }
        let my_id = self.key.key_id();
        let stanza = header
            .stanzas
            .iter()
            .find(|s| s.key_id == my_id)
            .ok_or_else(|| Error::WrongKey {
                key_id: my_id,
                recipients: header
                    .stanzas
                    .iter()
                    .map(|s| s.key_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let unwrapped =
            self.key
                .unwrap(stanza.algorithm, &stanza.wrapped)
                .map_err(|e| match e {
                    // A remote key's access errors are worth reporting; a local failure is opaque.
                    Error::Key(k) => Error::Key(k),
                    _ => IntegrityError::Header.into(),
                })?;
        let data_key = DataKey::from_wrap_plaintext(&unwrapped, &header.preamble.file_id)?;
        let keys = data_key.derive(&header.preamble.file_id);
        keys.authenticate_header(&header.preamble.commitment, &header.mac_input, &header.mac)?;
        Ok((header, data_key, keys))
    }

    /// Authenticates the header and returns a reader of verified plaintext.
    pub fn open_reader<R: Read>(&self, mut input: R) -> Result<OpenReader<R>, Error> {
        let (header, _, keys) = self.authenticate(&mut input)?;
        let key = self.backend.aes256gcm(&keys.payload);
        Ok(OpenReader::new(input, key, &header, self.verifier))
    }

    /// Opens a whole envelope in memory; returns nothing unless everything verified.
    pub fn open_bytes(&self, envelope: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.open_to_vec(envelope, &mut out)?;
        Ok(out)
    }

    /// Opens a whole envelope into `out`, replacing its contents and reusing its memory; on
    /// failure `out` is left empty. The fastest path for data already in memory: every chunk
    /// is copied out and opened by one worker, on all cores.
    pub fn open_to_vec(&self, envelope: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let mut input = envelope;
        let (header, _, keys) = self.authenticate(&mut input).inspect_err(|_| out.clear())?;
        let key = self.backend.aes256gcm(&keys.payload);
        stream::open_body_into(key.as_ref(), input, &header, self.verifier, out)
    }

    /// Opens `src` into `dst`, streaming in constant memory. The plaintext goes to a
    /// temporary file beside `dst` and is moved into place only after the last chunk (and
    /// signature) verified; on any failure `dst` is untouched and nothing is left behind.
    /// The file is created readable by its owner only (mode 0600 on Unix): it is plaintext.
    pub fn open_file(&self, src: &Path, dst: &Path) -> Result<u64, Error> {
        let input = io::BufReader::with_capacity(1 << 20, File::open(src)?);
        self.open_to_path(input, dst)
    }

    /// Like [`Opener::open_file`], from any reader.
    pub fn open_to_path<R: Read>(&self, input: R, dst: &Path) -> Result<u64, Error> {
        let mut reader = self.open_reader(input)?;
        // A device or a pipe (`-o /dev/null` to only verify) is written in place: renaming a
        // file over it would replace the device node itself.
        if fs::metadata(dst).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let mut out = fs::OpenOptions::new().write(true).open(dst)?;
            return reader.copy_to_behind(&mut out);
        }
        let dir = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".cipherflow-open-")
            .tempfile_in(dir)?;
        let n = reader.copy_to_behind(tmp.as_file_mut())?;
        tmp.as_file().sync_all()?;
        tmp.persist(dst).map_err(|e| Error::Io(e.error))?;
        Ok(n)
    }

    /// Authenticates the header and returns a reader of single chunks. Chunks opened this way
    /// are authentic, but a producer signature can only be checked by reading every chunk.
    pub fn random_access<R: Read + Seek>(&self, mut input: R) -> Result<RandomAccess<R>, Error> {
        let start = input.stream_position()?;
        let (header, _, keys) = self.authenticate(&mut input)?;
        let key = self.backend.aes256gcm(&keys.payload);
        RandomAccess::new(input, key, &header, start + header.encoded_len() as u64)
    }
}

/// What an envelope says about itself (no key needed; nothing here is authenticated until
/// the envelope is opened).
#[derive(Debug, Clone)]
pub struct Info {
    /// Format version.
    pub version: u16,
    /// Algorithm suite id.
    pub suite: u16,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Header length in bytes.
    pub header_len: u64,
    /// Recipients' key ids.
    pub recipients: Vec<KeyId>,
    /// Producer signature algorithm and key id, if signed.
    pub signer: Option<(SignatureAlgorithm, KeyId)>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Number of chunks.
    pub chunk_count: u64,
    /// Plaintext length.
    pub plaintext_len: u64,
    /// Envelope length.
    pub envelope_len: u64,
}

/// Reads the header and measures the body (reading it through, without decrypting).
pub fn inspect<R: Read>(mut input: R) -> Result<Info, Error> {
    let header = Header::read(&mut input)?;
    let rest = io::copy(&mut input, &mut io::sink())?;
    info(header, rest)
}

/// Like [`inspect`] for a file: reads only the header and takes the length from the file
/// system, so it costs the same for any size.
pub fn inspect_file(path: &Path) -> Result<Info, Error> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let header = Header::read(io::BufReader::new(&mut file))?;
    let rest = len
        .checked_sub(header.encoded_len() as u64)
        .ok_or(IntegrityError::Length)?;
    info(header, rest)
}

fn info(header: Header, rest: u64) -> Result<Info, Error> {
    let body_len = rest
        .checked_sub(header.signature_len() as u64)
        .ok_or(IntegrityError::Length)?;
    let chunk_count = stream::chunk_count(body_len, header.preamble.chunk_size as usize)?;
    Ok(Info {
        version: VERSION_V1,
        suite: SUITE_V1,
        chunk_size: header.preamble.chunk_size,
        header_len: header.encoded_len() as u64,
        recipients: header.stanzas.iter().map(|s| s.key_id).collect(),
        signer: header
            .preamble
            .signer
            .as_ref()
            .map(|s| (s.algorithm, s.key_id)),
        metadata: header.preamble.metadata.clone(),
        chunk_count,
        plaintext_len: body_len - chunk_count * TAG_LEN as u64,
        envelope_len: header.encoded_len() as u64 + rest,
    })
}

/// Adds and removes recipients. `key` must be a current recipient; the header is
/// authenticated with it first. The preamble, body and signature are copied byte for byte,
/// so a producer signature stays valid. Returns the new recipients.
pub fn rewrap<R: Read, W: Write>(
    mut input: R,
    mut output: W,
    key: &dyn KeyUnwrapper,
    add: &[&dyn KeyWrapper],
    remove: &[KeyId],
) -> Result<Vec<KeyId>, Error> {
    let (header, data_key, keys) = Opener::new(key).authenticate(&mut input)?;

    for id in remove {
        if !header.stanzas.iter().any(|s| s.key_id == *id) {
            return Err(Error::misuse(format!(
                "key {id} is not a recipient of this envelope, so it cannot be removed"
            )));
        }
    }
    let mut stanzas: Vec<Stanza> = header
        .stanzas
        .iter()
        .filter(|s| !remove.contains(&s.key_id))
        .cloned()
        .collect();
    for r in add {
        if stanzas.iter().any(|s| s.key_id == r.key_id()) {
            return Err(Error::misuse(format!(
                "key {} is already a recipient of this envelope",
                r.key_id()
            )));
        }
    }
    stanzas.extend(wrap_for(add, &data_key, &header.preamble.file_id)?);
    if stanzas.is_empty() {
        return Err(Error::misuse(
            "rewrap would leave the envelope with no recipient",
        ));
    }
    output.write_all(&encode_header(&header.preamble_bytes, &stanzas, &keys)?)?;
    io::copy(&mut input, &mut output)?;
    output.flush()?;
    Ok(stanzas.iter().map(|s| s.key_id).collect())
}
