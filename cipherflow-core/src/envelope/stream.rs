//! The chunked body: STREAM over AES-256-GCM (`docs/FORMAT.md` section 1.4), sealed and
//! opened a batch of chunks at a time so both cores work and memory stays constant.
//!
//! [`SealWriter`] is a `std::io::Write`; its [`SealWriter::finish`] is mandatory (it seals the
//! last chunk and writes the signature; without it the envelope is truncated and every reader
//! refuses it). [`OpenReader`] is a `std::io::Read` that releases a chunk's plaintext only
//! after its tag verified. [`RandomAccess`] opens any one chunk by its offset.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::format::{Header, MAX_CHUNKS};
use crate::crypto::{Aes256GcmKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, IntegrityError, SignatureError};
use crate::sign::{Signer, Verifier};

/// Plaintext bytes sealed or opened per batch (spread over the cores).
const BATCH_BYTES: usize = 8 << 20;

/// `i` as 11 big-endian bytes, then the last-chunk flag (FORMAT.md 1.4).
fn nonce(index: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = last as u8;
    n
}

fn chunks_per_batch(chunk_size: usize) -> usize {
    (BATCH_BYTES / chunk_size).max(2)
}

/// The signed message's running state (FORMAT.md 1.5).
struct SignatureChain {
    preamble_hash: [u8; 32],
    chunk_digests: Sha256,
    chunks: u64,
}

impl SignatureChain {
    fn new(preamble: &[u8]) -> Self {
        SignatureChain {
            preamble_hash: Sha256::digest(preamble).into(),
            chunk_digests: Sha256::new(),
            chunks: 0,
        }
    }

    fn add(&mut self, digests: &[[u8; 32]]) {
        for d in digests {
            self.chunk_digests.update(d);
        }
        self.chunks += digests.len() as u64;
    }

    fn message(self) -> Vec<u8> {
        let mut m = Vec::with_capacity(24 + 32 + 32 + 8);
        m.extend_from_slice(b"cipherflow/v1 signature\0");
        m.extend_from_slice(&self.preamble_hash);
        m.extend_from_slice(&self.chunk_digests.finalize());
        m.extend_from_slice(&self.chunks.to_be_bytes());
        m
    }
}

fn digest_sealed(ciphertext: &[u8], tag: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ciphertext);
    h.update(tag);
    h.finalize().into()
}

/// Seals `plaintext` (whole chunks, the last possibly short) in place, in parallel. Returns
/// the tags and, if asked, each sealed chunk's digest.
fn seal_batch(
    key: &dyn Aes256GcmKey,
    plaintext: &mut [u8],
    chunk_size: usize,
    first: u64,
    ends_envelope: bool,
    want_digests: bool,
) -> Vec<([u8; TAG_LEN], [u8; 32])> {
    let n = plaintext.len().div_ceil(chunk_size).max(1);
    let seal_one = |(j, chunk): (usize, &mut [u8])| {
        let last = ends_envelope && j + 1 == n;
        let tag = key.seal_in_place(&nonce(first + j as u64, last), &[], chunk);
        let digest = if want_digests {
            digest_sealed(chunk, &tag)
        } else {
            [0; 32]
        };
        (tag, digest)
    };
    if plaintext.is_empty() {
        return vec![seal_one((0, plaintext))];
    }
    plaintext
        .par_chunks_mut(chunk_size)
        .enumerate()
        .map(seal_one)
        .collect()
}

/// What [`open_batch`] found: where each chunk's plaintext now is, and the chunks' digests.
struct OpenedBatch {
    plaintext: Vec<Range<usize>>,
    digests: Vec<[u8; 32]>,
}

/// Opens sealed chunks (`ciphertext || tag` each) in place, in parallel. Returns the
/// plaintext ranges within `sealed` and, if asked, each sealed chunk's digest. On failure
/// the buffer is wiped and the first failing chunk is named.
fn open_batch(
    key: &dyn Aes256GcmKey,
    sealed: &mut [u8],
    chunk_size: usize,
    first: u64,
    ends_envelope: bool,
    want_digests: bool,
) -> Result<OpenedBatch, IntegrityError> {
    let stride = chunk_size + TAG_LEN;
    let n = sealed.len().div_ceil(stride).max(1);
    let results: Vec<Result<[u8; 32], u64>> = sealed
        .par_chunks_mut(stride)
        .enumerate()
        .map(|(j, piece)| {
            let index = first + j as u64;
            let last = ends_envelope && j + 1 == n;
            let (ciphertext, tag) = piece.split_at_mut(piece.len() - TAG_LEN);
            let tag: [u8; TAG_LEN] = (&*tag).try_into().expect("split at TAG_LEN");
            let digest = if want_digests {
                digest_sealed(ciphertext, &tag)
            } else {
                [0; 32]
            };
            key.open_in_place(&nonce(index, last), &[], ciphertext, &tag)
                .map(|()| digest)
                .map_err(|_| index)
        })
        .collect();
    let mut digests = Vec::with_capacity(if want_digests { n } else { 0 });
    for r in results {
        match r {
            Ok(d) if want_digests => digests.push(d),
            Ok(_) => {}
            Err(index) => {
                sealed.fill(0);
                return Err(IntegrityError::Chunk(index));
            }
        }
    }
    let plaintext = (0..n)
        .map(|j| {
            let start = j * stride;
            let end = ((j + 1) * stride).min(sealed.len()) - TAG_LEN;
            start..end
        })
        .collect();
    Ok(OpenedBatch { plaintext, digests })
}

/// Number of chunks of a body of `body_len` bytes, refusing impossible lengths (FORMAT.md 1.4).
pub(crate) fn chunk_count(body_len: u64, chunk_size: usize) -> Result<u64, IntegrityError> {
    let stride = (chunk_size + TAG_LEN) as u64;
    if body_len == TAG_LEN as u64 {
        return Ok(1);
    }
    let n = body_len.div_ceil(stride);
    let last = body_len - (n.saturating_sub(1)) * stride;
    if n == 0 || last <= TAG_LEN as u64 || n > MAX_CHUNKS {
        return Err(IntegrityError::Length);
    }
    Ok(n)
}

/// Streams plaintext into an envelope. Create it with [`crate::Sealer::seal_writer`].
pub struct SealWriter<'a, W: Write> {
    output: W,
    key: Box<dyn Aes256GcmKey>,
    chunk_size: usize,
    batch: Vec<u8>,
    batch_cap: usize,
    next_index: u64,
    signer: Option<(&'a dyn Signer, SignatureChain)>,
    failed: bool,
}

impl<'a, W: Write> SealWriter<'a, W> {
    pub(crate) fn new(
        output: W,
        key: Box<dyn Aes256GcmKey>,
        chunk_size: usize,
        signer: Option<(&'a dyn Signer, &[u8])>,
    ) -> Self {
        let batch_cap = chunks_per_batch(chunk_size) * chunk_size;
        SealWriter {
            output,
            key,
            chunk_size,
            batch: Vec::with_capacity(batch_cap),
            batch_cap,
            next_index: 0,
            signer: signer.map(|(s, preamble)| (s, SignatureChain::new(preamble))),
            failed: false,
        }
    }

    fn seal_and_write(&mut self, ends_envelope: bool) -> Result<(), Error> {
        let chunks = self.batch.len().div_ceil(self.chunk_size).max(1) as u64;
        if self.next_index + chunks > MAX_CHUNKS {
            return Err(Error::Limit {
                what: "chunk count",
                value: self.next_index + chunks,
                limit: MAX_CHUNKS,
            });
        }
        let sealed = seal_batch(
            self.key.as_ref(),
            &mut self.batch,
            self.chunk_size,
            self.next_index,
            ends_envelope,
            self.signer.is_some(),
        );
        let mut pieces = self.batch.chunks(self.chunk_size);
        for (tag, _) in &sealed {
            self.output.write_all(pieces.next().unwrap_or(&[]))?;
            self.output.write_all(tag)?;
        }
        if let Some((_, chain)) = &mut self.signer {
            let digests: Vec<[u8; 32]> = sealed.iter().map(|(_, d)| *d).collect();
            chain.add(&digests);
        }
        self.next_index += chunks;
        self.batch.clear();
        Ok(())
    }

    /// Seals the last chunk, writes the signature (if any), flushes, and returns the output.
    /// Mandatory: an envelope whose writer was dropped unfinished is refused by every reader.
    pub fn finish(mut self) -> Result<W, Error> {
        if self.failed {
            return Err(Error::misuse(
                "the sealer failed earlier; its output is incomplete",
            ));
        }
        self.seal_and_write(true)?;
        if let Some((signer, chain)) = self.signer.take() {
            let signature = signer.sign(&chain.message())?;
            if signature.len() != signer.signature_len() {
                return Err(
                    SignatureError::SigningFailed("signature of unexpected length".into()).into(),
                );
            }
            self.output.write_all(&signature)?;
        }
        self.output.flush()?;
        Ok(self.output)
    }
}

impl<W: Write> Write for SealWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(Error::misuse("the sealer failed earlier").into_io());
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.batch.len() == self.batch_cap {
                // More plaintext follows, so none of these chunks is the last.
                if let Err(e) = self.seal_and_write(false) {
                    self.failed = true;
                    return Err(e.into_io());
                }
            }
            let take = rest.len().min(self.batch_cap - self.batch.len());
            self.batch.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}

/// Reads verified plaintext out of an envelope. Create it with [`crate::Opener::open_reader`].
///
/// Each chunk is released only after its tag verified. With a required signer, the final
/// batch is held back until the signature verified; earlier batches are released before
/// (use [`crate::Opener::open_file`] or [`crate::Opener::open_bytes`] to release nothing
/// until everything verified).
pub struct OpenReader<'a, R: Read> {
    input: R,
    key: Box<dyn Aes256GcmKey>,
    chunk_size: usize,
    signature_len: usize,
    buf: Vec<u8>,
    batch_len: usize,
    ranges: Vec<Range<usize>>,
    range: usize,
    next_index: u64,
    done: bool,
    verifier: Option<(&'a dyn Verifier, SignatureChain)>,
    failed: bool,
}

impl<'a, R: Read> OpenReader<'a, R> {
    pub(crate) fn new(
        input: R,
        key: Box<dyn Aes256GcmKey>,
        header: &Header,
        verifier: Option<&'a dyn Verifier>,
    ) -> Self {
        let chunk_size = header.preamble.chunk_size as usize;
        OpenReader {
            input,
            key,
            chunk_size,
            signature_len: header.signature_len(),
            buf: Vec::new(),
            batch_len: 0,
            ranges: Vec::new(),
            range: 0,
            next_index: 0,
            done: false,
            verifier: verifier.map(|v| (v, SignatureChain::new(&header.preamble_bytes))),
            failed: false,
        }
    }

    /// Reads until `buf` holds `target` bytes or the input ends; returns whether it ended.
    /// The buffer grows with what arrives, so a small envelope costs a small buffer.
    fn fill(&mut self, target: usize) -> Result<bool, Error> {
        let want = target.saturating_sub(self.buf.len());
        self.buf.reserve(want.min(BATCH_BYTES));
        let got = (&mut self.input)
            .take(want as u64)
            .read_to_end(&mut self.buf)?;
        Ok(got < want)
    }

    fn next_batch(&mut self) -> Result<(), Error> {
        self.buf.drain(..self.batch_len);
        self.ranges.clear();
        self.range = 0;
        let stride = self.chunk_size + TAG_LEN;
        let full = chunks_per_batch(self.chunk_size) * stride;
        let ended = self.fill(full + self.signature_len + 1)?;
        let want_digests = self.verifier.is_some();
        let (body_len, ends_envelope) = if ended {
            let body = self
                .buf
                .len()
                .checked_sub(self.signature_len)
                .ok_or(IntegrityError::Length)?;
            let stride = stride as u64;
            let last = (body as u64) % stride;
            // A chunk needs a tag and (unless the whole envelope is empty) a plaintext byte.
            let empty_envelope = self.next_index == 0 && body == TAG_LEN;
            if body == 0 || (!empty_envelope && last != 0 && last <= TAG_LEN as u64) {
                return Err(IntegrityError::Length.into());
            }
            (body, true)
        } else {
            (full, false)
        };
        let OpenedBatch {
            plaintext: ranges,
            digests,
        } = open_batch(
            self.key.as_ref(),
            &mut self.buf[..body_len],
            self.chunk_size,
            self.next_index,
            ends_envelope,
            want_digests,
        )?;
        self.next_index += ranges.len() as u64;
        if let Some((_, chain)) = &mut self.verifier {
            chain.add(&digests);
        }
        if ends_envelope {
            if let Some((verifier, chain)) = self.verifier.take() {
                let signature = &self.buf[body_len..];
                if let Err(e) = verifier.verify(&chain.message(), signature) {
                    self.buf.fill(0);
                    return Err(e);
                }
            }
            self.done = true;
        }
        self.batch_len = body_len + if ends_envelope { self.signature_len } else { 0 };
        self.ranges = ranges;
        Ok(())
    }

    /// Reads to the end, verifying everything, and returns the number of plaintext bytes.
    pub fn verify_to_end(&mut self) -> Result<u64, Error> {
        io::copy(self, &mut io::sink()).map_err(Error::from_io)
    }
}

impl<R: Read> Read for OpenReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(Error::misuse(
                "the envelope failed to open earlier; nothing more is released",
            )
            .into_io());
        }
        loop {
            if let Some(r) = self.ranges.get_mut(self.range) {
                if r.start >= r.end {
                    self.range += 1;
                    continue;
                }
                let n = out.len().min(r.len());
                out[..n].copy_from_slice(&self.buf[r.start..r.start + n]);
                r.start += n;
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            if let Err(e) = self.next_batch() {
                self.failed = true;
                self.ranges.clear();
                return Err(e.into_io());
            }
        }
    }
}

/// Opens any chunk of a seekable envelope on its own.
pub struct RandomAccess<R: Read + Seek> {
    input: R,
    key: Box<dyn Aes256GcmKey>,
    chunk_size: usize,
    body_start: u64,
    body_len: u64,
    chunk_count: u64,
}

impl<R: Read + Seek> RandomAccess<R> {
    pub(crate) fn new(
        mut input: R,
        key: Box<dyn Aes256GcmKey>,
        header: &Header,
        body_start: u64,
    ) -> Result<Self, Error> {
        let end = input.seek(SeekFrom::End(0))?;
        let chunk_size = header.preamble.chunk_size as usize;
        let body_len = end
            .checked_sub(body_start + header.signature_len() as u64)
            .ok_or(IntegrityError::Length)?;
        let chunk_count = chunk_count(body_len, chunk_size)?;
        Ok(RandomAccess {
            input,
            key,
            chunk_size,
            body_start,
            body_len,
            chunk_count,
        })
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u64 {
        self.chunk_count
    }

    /// Plaintext length of the whole envelope.
    pub fn plaintext_len(&self) -> u64 {
        self.body_len - self.chunk_count * TAG_LEN as u64
    }

    /// Plaintext bytes per chunk (all chunks but the last).
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Opens chunk `index`, verifying its tag before returning any byte.
    pub fn read_chunk(&mut self, index: u64) -> Result<Vec<u8>, Error> {
        if index >= self.chunk_count {
            return Err(Error::misuse("chunk index is past the last chunk"));
        }
        let stride = (self.chunk_size + TAG_LEN) as u64;
        let start = index * stride;
        let len = stride.min(self.body_len - start) as usize;
        let mut sealed = vec![0u8; len];
        self.input.seek(SeekFrom::Start(self.body_start + start))?;
        self.input.read_exact(&mut sealed)?;
        let last = index + 1 == self.chunk_count;
        let (ciphertext, tag) = sealed.split_at_mut(len - TAG_LEN);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().expect("split at TAG_LEN");
        self.key
            .open_in_place(&nonce(index, last), &[], ciphertext, &tag)
            .map_err(|_| IntegrityError::Chunk(index))?;
        sealed.truncate(len - TAG_LEN);
        Ok(sealed)
    }
}
