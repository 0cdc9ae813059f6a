//! The chunked body: STREAM over AES-256-GCM (`docs/FORMAT.md` section 1.4), sealed and
//! opened a batch of chunks at a time so both cores work and memory stays constant.
//!
//! [`SealWriter`] is a `std::io::Write`; its [`SealWriter::finish`] is mandatory (it seals the
//! last chunk and writes the signature; without it the envelope is truncated and every reader
//! refuses it). [`OpenReader`] is a `std::io::Read` that releases a chunk's plaintext only
//! after its tag verified. [`RandomAccess`] opens any one chunk by its offset.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::sync::mpsc;

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

    fn add<'d>(&mut self, digests: impl IntoIterator<Item = &'d [u8; 32]>) {
        for d in digests {
            self.chunk_digests.update(d);
            self.chunks += 1;
        }
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

fn digest_sealed(sealed_chunk: &[u8]) -> [u8; 32] {
    Sha256::digest(sealed_chunk).into()
}

/// Seals, in parallel and in place, a buffer laid out as sealed chunks (`ciphertext || tag`
/// slots of `chunk_size + 16` bytes, the last possibly short). The plaintext is already in the
/// ciphertext slots, or, if `source` is given, is copied there from it by the same worker that
/// seals the chunk (so the copy runs on both cores too). Returns each sealed chunk's digest
/// when asked (for the signature), else nothing.
fn seal_chunks(
    key: &dyn Aes256GcmKey,
    sealed: &mut [u8],
    source: Option<&[u8]>,
    chunk_size: usize,
    first: u64,
    ends_envelope: bool,
    want_digests: bool,
) -> Vec<[u8; 32]> {
    let stride = chunk_size + TAG_LEN;
    let n = sealed.len().div_ceil(stride);
    sealed
        .par_chunks_mut(stride)
        .enumerate()
        .filter_map(|(j, piece)| {
            let (chunk, tag_slot) = piece.split_at_mut(piece.len() - TAG_LEN);
            if let Some(source) = source {
                chunk.copy_from_slice(&source[j * chunk_size..j * chunk_size + chunk.len()]);
            }
            let last = ends_envelope && j + 1 == n;
            let tag = key.seal_in_place(&nonce(first + j as u64, last), &[], chunk);
            tag_slot.copy_from_slice(&tag);
            want_digests.then(|| digest_sealed(piece))
        })
        .collect()
}

/// One chunk opened: its digest if asked for, or the index of a chunk that failed.
type ChunkResult = Result<Option<[u8; 32]>, u64>;

/// Where [`open_chunks`] puts plaintext.
enum OpenTarget<'b> {
    /// Over the ciphertext, in the sealed buffer itself.
    InPlace(&'b mut [u8]),
    /// Into `out`, chunk `j` at `j * chunk_size`; `sealed` is only read.
    Into { sealed: &'b [u8], out: &'b mut [u8] },
}

/// Opens sealed chunks (`ciphertext || tag` slots) in parallel, each worker also copying its
/// chunk when opening into another buffer. Returns the sealed chunks' digests when asked. On
/// failure every plaintext byte written is wiped and the first failing chunk is named.
fn open_chunks(
    key: &dyn Aes256GcmKey,
    target: OpenTarget<'_>,
    chunk_size: usize,
    first: u64,
    ends_envelope: bool,
    want_digests: bool,
) -> Result<Vec<[u8; 32]>, IntegrityError> {
    let stride = chunk_size + TAG_LEN;
    let open_one =
        |j: usize, n: usize, digest: Option<[u8; 32]>, tag: [u8; TAG_LEN], chunk: &mut [u8]| {
            let index = first + j as u64;
            let last = ends_envelope && j + 1 == n;
            key.open_in_place(&nonce(index, last), &[], chunk, &tag)
                .map(|()| digest)
                .map_err(|_| index)
        };
    let tag_of = |piece: &[u8]| -> [u8; TAG_LEN] {
        piece[piece.len() - TAG_LEN..].try_into().expect("16 bytes")
    };
    let (results, written): (Vec<ChunkResult>, &mut [u8]) = match target {
        // An empty plaintext still has one chunk (a bare tag) to verify; `out` has no
        // chunk to pair it with, so it must not be skipped.
        OpenTarget::Into { sealed, out } if out.is_empty() => {
            let digest = want_digests.then(|| digest_sealed(sealed));
            (vec![open_one(0, 1, digest, tag_of(sealed), &mut [])], out)
        }
        OpenTarget::Into { sealed, out } => {
            let n = sealed.len().div_ceil(stride);
            let results = out
                .par_chunks_mut(chunk_size)
                .zip(sealed.par_chunks(stride))
                .enumerate()
                .map(|(j, (chunk, piece))| {
                    let digest = want_digests.then(|| digest_sealed(piece));
                    let index = first + j as u64;
                    let last = ends_envelope && j + 1 == n;
                    let ciphertext = &piece[..piece.len() - TAG_LEN];
                    key.open_to(&nonce(index, last), &[], ciphertext, &tag_of(piece), chunk)
                        .map(|()| digest)
                        .map_err(|_| index)
                })
                .collect();
            (results, out)
        }
        OpenTarget::InPlace(sealed) => {
            let n = sealed.len().div_ceil(stride);
            let results = sealed
                .par_chunks_mut(stride)
                .enumerate()
                .map(|(j, piece)| {
                    let digest = want_digests.then(|| digest_sealed(piece));
                    let tag = tag_of(piece);
                    let len = piece.len() - TAG_LEN;
                    open_one(j, n, digest, tag, &mut piece[..len])
                })
                .collect();
            (results, sealed)
        }
    };
    let mut digests = Vec::with_capacity(if want_digests { results.len() } else { 0 });
    for r in results {
        match r {
            Ok(d) => digests.extend(d),
            Err(index) => {
                written.fill(0);
                return Err(IntegrityError::Chunk(index));
            }
        }
    }
    Ok(digests)
}

/// Plaintext ranges of the chunks of a sealed buffer of `len` bytes.
fn plaintext_ranges(len: usize, chunk_size: usize) -> impl Iterator<Item = Range<usize>> {
    let stride = chunk_size + TAG_LEN;
    (0..len.div_ceil(stride)).map(move |j| j * stride..((j + 1) * stride).min(len) - TAG_LEN)
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

/// Length of the sealed form of `plaintext_len` bytes (one empty chunk if there are none).
fn sealed_len(plaintext_len: usize, chunk_size: usize) -> usize {
    plaintext_len + plaintext_len.div_ceil(chunk_size).max(1) * TAG_LEN
}

/// Signs the chain, checking the signer kept its promised length.
fn sign_chain(signer: &dyn Signer, chain: SignatureChain) -> Result<Vec<u8>, Error> {
    let signature = signer.sign(&chain.message())?;
    if signature.len() != signer.signature_len() {
        return Err(SignatureError::SigningFailed("signature of unexpected length".into()).into());
    }
    Ok(signature)
}

/// Resizes `out` to `len` bytes, zero-filling only bytes it never had, so a reused buffer
/// costs no extra pass over memory.
fn set_len(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        out.resize(len, 0);
    } else {
        out.truncate(len);
    }
}

/// Writes `header`, then the body and signature of `plaintext`, over `out` (reusing its
/// memory: nothing is zero-filled that was there before), in one parallel pass: each worker
/// copies its chunk into place and seals it there.
pub(crate) fn seal_into(
    key: &dyn Aes256GcmKey,
    header: &[u8],
    plaintext: &[u8],
    chunk_size: usize,
    signer: Option<(&dyn Signer, &[u8])>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let chunks = plaintext.len().div_ceil(chunk_size).max(1) as u64;
    if chunks > MAX_CHUNKS {
        return Err(Error::Limit {
            what: "chunk count",
            value: chunks,
            limit: MAX_CHUNKS,
        });
    }
    let body_len = sealed_len(plaintext.len(), chunk_size);
    set_len(out, header.len() + body_len);
    out[..header.len()].copy_from_slice(header);
    let body = &mut out[header.len()..];
    let digests = seal_chunks(
        key,
        body,
        Some(plaintext),
        chunk_size,
        0,
        true,
        signer.is_some(),
    );
    if let Some((signer, preamble)) = signer {
        let mut chain = SignatureChain::new(preamble);
        chain.add(&digests);
        out.extend_from_slice(&sign_chain(signer, chain)?);
    }
    Ok(())
}

/// Opens a whole body (and checks the signature) into `out`, reusing its memory, in one
/// parallel pass. On any failure `out` is wiped and left empty.
pub(crate) fn open_body_into(
    key: &dyn Aes256GcmKey,
    rest: &[u8],
    header: &Header,
    verifier: Option<&dyn Verifier>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let result = (|| {
        let chunk_size = header.preamble.chunk_size as usize;
        let body_len = rest
            .len()
            .checked_sub(header.signature_len())
            .ok_or(IntegrityError::Length)?;
        let chunks = chunk_count(body_len as u64, chunk_size)?;
        let (body, signature) = rest.split_at(body_len);
        set_len(out, body_len - chunks as usize * TAG_LEN);
        let target = OpenTarget::Into { sealed: body, out };
        let digests = open_chunks(key, target, chunk_size, 0, true, verifier.is_some())?;
        if let Some(verifier) = verifier {
            let mut chain = SignatureChain::new(&header.preamble_bytes);
            chain.add(&digests);
            verifier.verify(&chain.message(), signature)?;
        }
        Ok(())
    })();
    if result.is_err() {
        out.fill(0);
        out.clear();
    }
    result
}

/// Reads into `buf[*filled..target]` (growing `buf` as data arrives, never re-zeroing what it
/// had) until `target` bytes are there or the input ends; returns whether it ended.
fn fill<R: Read>(
    input: &mut R,
    buf: &mut Vec<u8>,
    filled: &mut usize,
    target: usize,
) -> io::Result<bool> {
    while *filled < target {
        if *filled == buf.len() {
            let grown = (buf.len() * 2).max(64 << 10).min(target);
            buf.resize(grown, 0);
        }
        match input.read(&mut buf[*filled..]) {
            Ok(0) => return Ok(true),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Streams plaintext into an envelope. Create it with [`crate::Sealer::seal_writer`].
///
/// Plaintext is gathered straight into its sealed layout (a tag slot after every chunk), a
/// batch of chunks is sealed in place on both cores and written with one `write_all`.
pub struct SealWriter<'a, W: Write> {
    output: W,
    key: Box<dyn Aes256GcmKey>,
    chunk_size: usize,
    /// The batch in sealed layout; grows to `batch_chunks` chunks and is reused.
    batch: Vec<u8>,
    batch_chunks: usize,
    /// Plaintext bytes in the batch.
    plain: usize,
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
        SealWriter {
            output,
            key,
            chunk_size,
            batch: Vec::new(),
            batch_chunks: chunks_per_batch(chunk_size),
            plain: 0,
            next_index: 0,
            signer: signer.map(|(s, preamble)| (s, SignatureChain::new(preamble))),
            failed: false,
        }
    }

    fn batch_full(&self) -> bool {
        self.plain == self.batch_chunks * self.chunk_size
    }

    /// The unfilled part of the current chunk's plaintext slot.
    fn slot(&mut self) -> &mut [u8] {
        let stride = self.chunk_size + TAG_LEN;
        let (j, offset) = (self.plain / self.chunk_size, self.plain % self.chunk_size);
        let end = j * stride + self.chunk_size;
        if self.batch.len() < end + TAG_LEN {
            self.batch.resize(end + TAG_LEN, 0);
        }
        &mut self.batch[j * stride + offset..end]
    }

    fn seal_and_write(&mut self, ends_envelope: bool) -> Result<(), Error> {
        let chunks = self.plain.div_ceil(self.chunk_size).max(1) as u64;
        if self.next_index + chunks > MAX_CHUNKS {
            return Err(Error::Limit {
                what: "chunk count",
                value: self.next_index + chunks,
                limit: MAX_CHUNKS,
            });
        }
        let len = sealed_len(self.plain, self.chunk_size);
        if self.batch.len() < len {
            self.batch.resize(len, 0);
        }
        let digests = seal_chunks(
            self.key.as_ref(),
            &mut self.batch[..len],
            None,
            self.chunk_size,
            self.next_index,
            ends_envelope,
            self.signer.is_some(),
        );
        self.output.write_all(&self.batch[..len])?;
        if let Some((_, chain)) = &mut self.signer {
            chain.add(&digests);
        }
        self.next_index += chunks;
        self.plain = 0;
        Ok(())
    }

    fn fail<T>(&mut self, e: Error) -> io::Result<T> {
        self.failed = true;
        Err(e.into_io())
    }

    /// Reads `input` to its end straight into the batch (no intermediate buffer) and seals
    /// it; returns the number of plaintext bytes read. Call [`SealWriter::finish`] after.
    pub fn read_from<R: Read>(&mut self, mut input: R) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            if self.failed {
                return Err(Error::misuse("the sealer failed earlier").into_io());
            }
            if self.batch_full() {
                // Only seal a full batch as not-last once a next byte exists.
                let mut next = [0u8; 1];
                if input.read(&mut next)? == 0 {
                    return Ok(total);
                }
                if let Err(e) = self.seal_and_write(false) {
                    return self.fail(e);
                }
                self.slot()[0] = next[0];
                self.plain += 1;
                total += 1;
            }
            let n = match input.read(self.slot()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(total);
            }
            self.plain += n;
            total += n as u64;
        }
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
            let signature = sign_chain(signer, chain)?;
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
            if self.batch_full() {
                // More plaintext follows, so none of these chunks is the last.
                if let Err(e) = self.seal_and_write(false) {
                    return self.fail(e);
                }
            }
            let slot = self.slot();
            let n = slot.len().min(rest.len());
            slot[..n].copy_from_slice(&rest[..n]);
            self.plain += n;
            rest = &rest[n..];
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
pub struct OpenReader<R: Read> {
    input: R,
    key: Box<dyn Aes256GcmKey>,
    chunk_size: usize,
    signature_len: usize,
    /// Sealed bytes read so far; grows to one batch and a lookahead, then is reused.
    buf: Vec<u8>,
    filled: usize,
    /// Bytes of `buf` the current batch occupies.
    batch_len: usize,
    /// Plaintext of the current batch not yet released.
    ranges: Vec<Range<usize>>,
    range: usize,
    next_index: u64,
    done: bool,
    verifier: Option<(Box<dyn Verifier>, SignatureChain)>,
    failed: bool,
}

impl<R: Read> OpenReader<R> {
    pub(crate) fn new(
        input: R,
        key: Box<dyn Aes256GcmKey>,
        header: &Header,
        verifier: Option<&dyn Verifier>,
    ) -> Self {
        OpenReader {
            input,
            key,
            chunk_size: header.preamble.chunk_size as usize,
            signature_len: header.signature_len(),
            buf: Vec::new(),
            filled: 0,
            batch_len: 0,
            ranges: Vec::new(),
            range: 0,
            next_index: 0,
            done: false,
            verifier: verifier.map(|v| {
                (
                    v.clone_verifier(),
                    SignatureChain::new(&header.preamble_bytes),
                )
            }),
            failed: false,
        }
    }

    fn next_batch(&mut self) -> Result<(), Error> {
        self.buf.copy_within(self.batch_len..self.filled, 0);
        self.filled -= self.batch_len;
        self.batch_len = 0;
        self.ranges.clear();
        self.range = 0;
        let stride = self.chunk_size + TAG_LEN;
        let full = chunks_per_batch(self.chunk_size) * stride;
        // A batch is known not to be the last only when more than a signature follows it.
        let ended = fill(
            &mut self.input,
            &mut self.buf,
            &mut self.filled,
            full + self.signature_len + 1,
        )?;
        let (body_len, ends_envelope) = if ended {
            let body = self
                .filled
                .checked_sub(self.signature_len)
                .ok_or(IntegrityError::Length)?;
            let last = body % stride;
            // A chunk needs a tag and (unless the whole envelope is empty) a plaintext byte.
            let empty_envelope = self.next_index == 0 && body == TAG_LEN;
            if body == 0 || (!empty_envelope && last != 0 && last <= TAG_LEN) {
                return Err(IntegrityError::Length.into());
            }
            (body, true)
        } else {
            (full, false)
        };
        let digests = open_chunks(
            self.key.as_ref(),
            OpenTarget::InPlace(&mut self.buf[..body_len]),
            self.chunk_size,
            self.next_index,
            ends_envelope,
            self.verifier.is_some(),
        )?;
        self.next_index += body_len.div_ceil(stride) as u64;
        if let Some((_, chain)) = &mut self.verifier {
            chain.add(&digests);
        }
        if ends_envelope {
            if let Some((verifier, chain)) = self.verifier.take() {
                let signature = &self.buf[body_len..self.filled];
                if let Err(e) = verifier.verify(&chain.message(), signature) {
                    self.buf[..body_len].fill(0);
                    return Err(e);
                }
            }
            self.done = true;
        }
        self.batch_len = if ends_envelope { self.filled } else { body_len };
        self.ranges = plaintext_ranges(body_len, self.chunk_size).collect();
        Ok(())
    }

    /// Advances to the next batch unless the current one still has plaintext; returns false
    /// at the end. After a failure every call fails.
    fn ensure_plaintext(&mut self) -> Result<bool, Error> {
        if self.failed {
            return Err(Error::misuse(
                "the envelope failed to open earlier; nothing more is released",
            ));
        }
        loop {
            while self.ranges.get(self.range).is_some_and(|r| r.is_empty()) {
                self.range += 1;
            }
            if self.range < self.ranges.len() {
                return Ok(true);
            }
            if self.done {
                return Ok(false);
            }
            if let Err(e) = self.next_batch() {
                self.failed = true;
                self.ranges.clear();
                return Err(e);
            }
        }
    }

    /// Writes all remaining plaintext to `output` straight from the decrypted batches (no
    /// intermediate copy), verifying everything; returns the number of bytes written.
    pub fn copy_to<W: Write>(&mut self, output: &mut W) -> Result<u64, Error> {
        let mut total = 0;
        while self.ensure_plaintext()? {
            for r in &mut self.ranges[self.range..] {
                output.write_all(&self.buf[r.clone()])?;
                total += r.len() as u64;
                r.start = r.end;
            }
        }
        Ok(total)
    }

    /// Like [`OpenReader::copy_to`], but a second thread writes each verified batch while
    /// this one reads and opens the next, so I/O and AES-GCM overlap (on tmpfs or a page
    /// cache, reading and writing cost more than opening). Batches change hands whole, never
    /// copied; at most four are alive at once, so memory stays constant. A write error stops
    /// the reading; an open error stops before the failing batch is handed over.
    pub fn copy_to_behind<W: Write + Send>(&mut self, output: &mut W) -> Result<u64, Error> {
        type Batch = (Vec<u8>, Vec<Range<usize>>);
        std::thread::scope(|scope| {
            let (to_writer, batches) = mpsc::sync_channel::<Batch>(1);
            let (to_reader, spares) = mpsc::sync_channel::<Vec<u8>>(1);
            let writer = scope.spawn(move || -> io::Result<()> {
                for (buf, ranges) in batches {
                    for r in ranges {
                        output.write_all(&buf[r])?;
                    }
                    // Never block here: the reader may be blocked handing over the next
                    // batch. A buffer it has no room for (or that comes after the end) is
                    // freed.
                    let _ = to_reader.try_send(buf);
                }
                Ok(())
            });
            let mut total = 0;
            let read = (|| {
                while self.ensure_plaintext()? {
                    let ranges: Vec<_> = self.ranges.drain(self.range..).collect();
                    total += ranges.iter().map(|r| r.len() as u64).sum::<u64>();
                    let batch = self.swap_batch(spares.try_recv().unwrap_or_default());
                    if to_writer.send((batch, ranges)).is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Ok::<_, Error>(())
            })();
            drop(to_writer);
            let written = writer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            read?;
            written?;
            Ok(total)
        })
    }

    /// Hands out the current (fully released) batch buffer and continues in `spare`, carrying
    /// over the lookahead bytes read past the batch. `spare` keeps its length, so a recycled
    /// buffer is never zeroed again.
    fn swap_batch(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        let carry = self.filled - self.batch_len;
        if spare.len() < carry {
            spare.resize(carry, 0);
        }
        spare[..carry].copy_from_slice(&self.buf[self.batch_len..self.filled]);
        self.filled = carry;
        self.batch_len = 0;
        self.ranges.clear();
        self.range = 0;
        std::mem::replace(&mut self.buf, spare)
    }

    /// Reads to the end, verifying everything, and returns the number of plaintext bytes.
    pub fn verify_to_end(&mut self) -> Result<u64, Error> {
        self.copy_to(&mut io::sink())
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if !self.ensure_plaintext().map_err(Error::into_io)? {
            return Ok(0);
        }
        let r = &mut self.ranges[self.range];
        let n = out.len().min(r.len());
        out[..n].copy_from_slice(&self.buf[r.start..r.start + n]);
        r.start += n;
        Ok(n)
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
