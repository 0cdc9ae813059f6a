//! Streaming sort-merge of a base snapshot (sorted by key) with a [`Delta`]: memory
//! grows with the batch, never with the table, and unchanged base rows are copied as their
//! raw bytes, never parsed into values and re-encoded.

use std::io::{self, IoSlice, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use smallvec::SmallVec;

use super::encode_record;
use crate::cdc::raw::{Span, split_quoted};
use crate::cdc::{CdcError, CdcErrorKind, Key, KeyValue, Position, TableSchema};

/// What [`merge_sorted`] applies to a base: the table and, in key order, each changed key's
/// row. A [`super::MergeState`] (the stateful form) or [`super::PackedBatches`] (a one-off
/// merge, which resolves each key only when the merge reaches it).
pub trait Delta: Sync {
    /// A changed key's row, resolvable against its base row.
    type Row<'a>: Resolve
    where
        Self: 'a;

    /// The table's schema.
    fn schema(&self) -> &TableSchema;

    /// How many trailing columns were added mid-stream: a base may lack those, and no others.
    fn added_columns(&self) -> usize;

    /// Every changed key, in key order, with its row.
    fn rows(&self) -> impl Iterator<Item = (&Key, Self::Row<'_>)>;
}

/// A changed key's row, resolved against the base.
pub trait Resolve {
    /// The row as it stands after its changes, applied on top of `base` (the row's fields
    /// before any of them, if it existed); `None` if it is deleted.
    fn resolve<'a>(&'a self, base: Option<&[&'a [u8]]>, null: &'a [u8]) -> Option<Vec<&'a [u8]>>;
}

/// What a sort-merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// Base rows copied unchanged, as raw bytes.
    pub copied: u64,
    /// Base rows replaced by a changed version.
    pub updated: u64,
    /// Base rows removed by a delete.
    pub deleted: u64,
    /// Rows written that were not in the base.
    pub inserted: u64,
    /// Rows written in all.
    pub rows: u64,
    /// Bytes written, header included.
    pub bytes: u64,
}

/// Writes `delta` applied on top of `base`, a snapshot of the same table sorted by key
/// (as this function and [`super::MergeState::write_snapshot`] write them), to `out`.
///
/// Base rows no change touches are copied as their raw bytes (line end normalised to LF);
/// every other row is encoded with [`encode_record`]. The base is checked as it streams: its
/// header must be the table's, each record must have every column and a valid key, and keys
/// must strictly increase. On any error `out` holds a partial result: write to a temporary
/// file and rename it on success.
///
/// Speed: two threads. The calling thread does the I/O: it reads the base ahead in large
/// blocks and writes what the other thread hands back, with vectored writes straight from
/// those blocks; the other thread merges. A record is only split as far as needed: a
/// line without quotes or CR (most lines) is checked with one pass that counts its commas,
/// and only its key fields are parsed; runs of unchanged lines are never copied in memory,
/// only written out from the block they were read into. A line of well-formed quoted fields is split directly
/// (`split_quoted`); other records (CR line ends, blank lines, multi-line or malformed
/// quoting, a last line without LF) go through `csv_core`, the parser of the `csv` crate,
/// exactly as the change-file reader parses them.
pub fn merge_sorted(
    delta: &impl Delta,
    base_object: &str,
    base: impl Read,
    out: impl Write,
) -> Result<MergeStats, crate::Error> {
    merge_in_blocks(delta, base_object, base, out, (BLOCK, RESERVE))
}

/// [`merge_sorted`] with blocks of `sizes.0` bytes after `sizes.1` reserved ones (small in
/// tests, so that records straddle blocks and outgrow the reserve).
fn merge_in_blocks(
    delta: &impl Delta,
    base_object: &str,
    base: impl Read,
    out: impl Write,
    sizes: (usize, usize),
) -> Result<MergeStats, crate::Error> {
    let (chunks_tx, chunks) = sync_channel(BUFFERS);
    let (filled_tx, filled) = channel();
    std::thread::scope(|scope| {
        let merger = scope.spawn(move || {
            let mut src = Blocks::new(filled, chunks_tx, sizes.1);
            let result = merge_blocks(delta, base_object, &mut src);
            if result.is_ok() {
                src.finish();
            }
            result
        });
        let written = io_loop(base, out, sizes, &filled_tx, &chunks);
        // Stops the merger if the output failed: its next block or chunk finds no one.
        drop((filled_tx, chunks));
        let merged = match merger.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // A failed write stops the merge (with a broken pipe): report the write.
        written?;
        merged
    })
}

/// The I/O side of [`merge_sorted`]: reads the base into free buffers and hands them to the
/// merger, writes the chunks it hands back and reuses their buffers; ends when the merger
/// is done (or at a write error). Reads never run more than [`BUFFERS`] blocks ahead.
fn io_loop(
    mut base: impl Read,
    mut out: impl Write,
    (block, reserve): (usize, usize),
    filled: &Sender<Filled>,
    chunks: &Receiver<Chunk>,
) -> io::Result<()> {
    let mut free: Vec<Vec<u8>> = (0..BUFFERS).map(|_| Vec::new()).collect();
    let mut eof = false;
    loop {
        while !eof && let Some(buf) = free.pop() {
            let block = read_block(&mut base, buf, block, reserve);
            eof = !matches!(block, Filled::Data(..));
            if filled.send(block).is_err() {
                eof = true;
            }
        }
        let Ok(chunk) = chunks.recv() else { break };
        write_chunk(&mut out, &chunk)?;
        // Only the pool's blocks go back to it (one grown for a long record is freed).
        if chunk.pooled {
            free.push(chunk.block);
        }
    }
    out.flush()
}

/// Reads up to `block` bytes (fewer only at the end) into `buf` after `reserve` bytes.
fn read_block(base: &mut impl Read, mut buf: Vec<u8>, block: usize, reserve: usize) -> Filled {
    buf.resize(reserve + block, 0);
    let mut len = reserve;
    while len < buf.len() {
        match base.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The data read so far first; the error comes again with the next read.
            Err(_) if len > reserve => break,
            Err(e) => return Filled::Error(e),
        }
    }
    if len == reserve {
        return Filled::End;
    }
    buf.truncate(len);
    let lines = index_lines(&buf, reserve);
    Filled::Data(buf, lines)
}

/// Where a line of a block ends, and what [`scan_line`] found in it: computed on the I/O
/// thread as it reads, so that the merger (the busier thread) does not scan the lines itself.
#[derive(Clone, Copy)]
struct LineEnd {
    /// The position of its LF (a block read by [`read_block`] is far under 4 GiB).
    lf: u32,
    commas: u32,
    special: bool,
}

/// The lines of `block[from..]` that end in it: the first starts at `from` (it may be the
/// end of a record the block before began), each next one after the LF before it.
fn index_lines(block: &[u8], from: usize) -> Vec<LineEnd> {
    if u32::try_from(block.len()).is_err() {
        return Vec::new(); // not indexed: the merger scans the lines itself
    }
    let mut start = from;
    memchr::memchr_iter(b'\n', &block[from..])
        .map(|p| {
            let lf = from + p;
            let (commas, special) = scan_line(&block[start..lf]);
            start = lf + 1;
            LineEnd {
                lf: lf as u32,
                commas: commas as u32,
                special,
            }
        })
        .collect()
}

/// Writes a chunk's pieces in order, with vectored writes.
fn write_chunk(out: &mut impl Write, chunk: &Chunk) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunk
        .pieces
        .iter()
        .map(|piece| {
            IoSlice::new(match *piece {
                Piece::Base(a, b) => &chunk.block[a..b],
                Piece::Encoded(a, b) => &chunk.encoded[a..b],
            })
        })
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = slices.len().min(1024);
        match out.write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A block of the base for the merger: the data after [`RESERVE`] bytes, or the end, or a
/// read error (after the data before it).
enum Filled {
    Data(Vec<u8>, Vec<LineEnd>),
    End,
    Error(io::Error),
}

/// What the merger hands back to be written: pieces of a block it is done with, and of the
/// rows it encoded meanwhile, in output order.
struct Chunk {
    block: Vec<u8>,
    /// Whether `block` is one of the I/O thread's [`BUFFERS`] (else grown, or none).
    pooled: bool,
    encoded: Vec<u8>,
    pieces: Vec<Piece>,
}

/// A range of [`Chunk::block`] or of [`Chunk::encoded`].
#[derive(Clone, Copy)]
enum Piece {
    Base(usize, usize),
    Encoded(usize, usize),
}

/// The merge itself, on the merger thread.
fn merge_blocks(
    delta: &impl Delta,
    base_object: &str,
    src: &mut Blocks,
) -> Result<MergeStats, crate::Error> {
    let schema = delta.schema();
    let columns = schema.columns();
    let null = schema.null();
    let mut stats = MergeStats::default();
    let mut scratch = Vec::with_capacity(1 << 12);

    let header = match src.next_record()? {
        Some(rec) => rec,
        None => {
            let pos = src.position(base_object);
            return Err(match src.read_error.take() {
                Some(e) => read_err(pos, &e),
                None => CdcError::new(Position::object(base_object), CdcErrorKind::NoHeader),
            }
            .into());
        }
    };
    // A base older than a column the batch added lacks it (and only such columns): its
    // rows get null there.
    let width = src.nfields(&header);
    let header_ok = width <= columns.len()
        && width + delta.added_columns() >= columns.len()
        && columns
            .iter()
            .take(width)
            .enumerate()
            .all(|(i, c)| src.field(&header, i) == c.as_bytes());
    if !header_ok {
        let found = String::from_utf8_lossy(src.trimmed(&header)).into_owned();
        return Err(CdcError::new(
            src.position(base_object),
            CdcErrorKind::HeaderMismatch {
                expected: columns.join(","),
                found,
            },
        )
        .into());
    }
    src.skip(&header);
    encode_record(columns.iter().map(|c| c.as_bytes()), &mut scratch);
    src.write(&mut scratch);
    // What a copied base row gets appended: a null per column the base lacks.
    let mut padding = Vec::new();
    if width < columns.len() {
        let mut two = Vec::new();
        encode_record([null, null], &mut two); // `E,E\n`: E is the encoded null
        let encoded = &two[..(two.len() - 2) / 2];
        for _ in width..columns.len() {
            padding.push(b',');
            padding.extend_from_slice(encoded);
        }
    }

    let mut pending = delta.rows().peekable();
    let mut key = Key(SmallVec::with_capacity(schema.key().len()));
    let mut previous = Key(SmallVec::with_capacity(schema.key().len()));
    let mut first = true;
    loop {
        let Some(rec) = src.next_record()? else {
            if let Some(e) = src.read_error.take() {
                return Err(read_err(src.position(base_object), &e).into());
            }
            break;
        };
        let pos = |src: &Blocks| src.position(base_object);
        let nfields = src.nfields(&rec);
        if nfields != width {
            let kind = CdcErrorKind::ColumnCount {
                expected: width,
                found: nfields,
            };
            return Err(CdcError::new(pos(src), kind).into());
        }
        key.0.clear();
        for &(c, ty) in schema.key() {
            let bytes = src.field(&rec, c);
            let parsed = if bytes == null {
                Err(CdcErrorKind::NullKey)
            } else {
                KeyValue::parse(ty, bytes)
            };
            match parsed {
                Ok(v) => key.0.push(v),
                Err(kind) => {
                    let at = pos(src).with_column(c, Some(&columns[c]));
                    return Err(CdcError::new(at, kind).into());
                }
            }
        }
        if !first && previous >= key {
            return Err(CdcError::new(pos(src), CdcErrorKind::Unsorted).into());
        }
        first = false;
        let touched = pending.peek().is_some_and(|(k, _)| **k <= key);
        if touched {
            // Everything up to this record goes out first, then the inserted rows before
            // it, then the record itself, changed or not.
            src.flush_run_to(&rec);
            while let Some((_, row)) = pending.next_if(|(k, _)| **k < key) {
                if let Some(fields) = row.resolve(None, null) {
                    encode_record(fields, &mut scratch);
                    stats.inserted += 1;
                }
            }
            match pending.next_if(|(k, _)| **k == key) {
                Some((_, row)) => {
                    let mut base_fields = src.fields(&rec);
                    base_fields.resize(columns.len(), null);
                    match row.resolve(Some(&base_fields), null) {
                        Some(fields) => {
                            encode_record(fields, &mut scratch);
                            stats.updated += 1;
                        }
                        None => stats.deleted += 1,
                    }
                    src.skip(&rec);
                }
                None => {
                    src.write(&mut scratch);
                    stats.copied += 1;
                    src.keep(&rec, &padding);
                }
            }
            src.write(&mut scratch);
        } else {
            stats.copied += 1;
            src.keep(&rec, &padding);
        }
        std::mem::swap(&mut key, &mut previous);
    }
    src.flush_run();
    // The base is done: its last block goes out, and the rows after it in chunks of their own.
    src.finish();
    for (_, row) in pending {
        if let Some(fields) = row.resolve(None, null) {
            encode_record(fields, &mut scratch);
            stats.inserted += 1;
        }
        if scratch.len() >= 1 << 16 {
            src.write(&mut scratch);
        }
    }
    src.write(&mut scratch);
    stats.rows = stats.copied + stats.updated + stats.inserted;
    stats.bytes = src.bytes;
    Ok(stats)
}

/// The other side of the merge is gone (it failed, and reports why).
fn broken() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the merge's other thread stopped",
    )
}

fn read_err(pos: Position, e: &io::Error) -> CdcError {
    CdcError::new(pos, CdcErrorKind::Read(e.to_string()))
}

/// One pass over a line: its number of commas, and whether it holds a quote or a CR (and so
/// needs the full parser). Written as fixed 32-byte blocks with byte-sized counters so that
/// the compiler turns it into vector code.
fn scan_line(line: &[u8]) -> (usize, bool) {
    let mut commas = 0usize;
    let mut special = 0u8;
    let mut blocks = line.chunks_exact(32);
    for block in &mut blocks {
        let (mut n, mut s) = (0u8, 0u8);
        for &b in block {
            n += u8::from(b == b',');
            s |= u8::from(b == b'"') | u8::from(b == b'\r');
        }
        commas += usize::from(n);
        special |= s;
    }
    let rest = blocks.remainder().len();
    if rest > 0 && line.len() >= 32 {
        // The line's last 32 bytes, counting the commas of only the last `rest` of them (the
        // others were counted above): vector code again, not a byte loop.
        let skip = 32 - rest;
        let (mut n, mut s) = (0u8, 0u8);
        for (i, &b) in line[line.len() - 32..].iter().enumerate() {
            n += u8::from(b == b',') & u8::from(i >= skip);
            s |= u8::from(b == b'"') | u8::from(b == b'\r');
        }
        commas += usize::from(n);
        special |= s;
    } else {
        for &b in blocks.remainder() {
            commas += usize::from(b == b',');
            special |= u8::from(b == b'"') | u8::from(b == b'\r');
        }
    }
    (commas, special != 0)
}

/// Where a record's fields are.
enum Fields {
    /// A plain line (no quote, no CR): `buf[start..end]` split at its commas.
    Plain { commas: usize },
    /// A line with well-formed quoted fields, split by [`split_quoted`] into
    /// `Blocks::spans` (of the line, or of `Blocks::unescaped`).
    Quoted { nfields: usize },
    /// Parsed by `csv_core` into `Blocks::fields` / `Blocks::ends`.
    Parsed { nfields: usize },
}

/// One record of the base, as positions in the current block.
struct Record {
    /// The first byte the record consumed (blank lines before it included).
    begin: usize,
    /// The record's first byte.
    start: usize,
    /// Its content's end: its line end (or the end of the input) starts here.
    end: usize,
    /// Where the next record begins (after the line end).
    next: usize,
    fields: Fields,
    /// Whether `buf[begin..next]` is exactly the record and one LF: kept, it can be copied
    /// as it is.
    verbatim: bool,
}

/// The base, read in large blocks, handed out one record at a time.
///
/// Unchanged verbatim records are not copied: `buf[run_start..]` up to the current record
/// is a run of them, which becomes one piece of the output when something else must be
/// written (a changed row, a record whose line end is normalised) or before the block
/// moves. So `run_start` is at most the current record's `begin`. When the block moves, the
/// part of a record it ends with is copied in front of the next block's data (into its
/// [`RESERVE`] bytes, or a grown block), and the block goes to the I/O thread with its pieces.
struct Blocks {
    /// Bytes of output so far.
    bytes: u64,
    /// The bytes before each block's data ([`RESERVE`]).
    reserve: usize,
    /// Whether `buf` is one of the I/O thread's blocks.
    pooled: bool,
    /// Blocks of the base, from the I/O thread.
    filled: Receiver<Filled>,
    /// Chunks to write, to the I/O thread.
    chunks: SyncSender<Chunk>,
    /// The pieces of the output since the block was taken, and the encoded rows they name.
    pieces: Vec<Piece>,
    encoded: Vec<u8>,
    buf: Vec<u8>,
    /// Valid bytes are `buf[..len]`.
    len: usize,
    /// The lines of `buf`, as far as the I/O thread indexed them, and the next one to use.
    lines: Vec<LineEnd>,
    next_line_end: usize,
    eof: bool,
    run_start: usize,
    /// The end of the last record handed out.
    consumed: usize,
    /// Byte offset in the base of `buf[0]` (wrapping: the first block's data starts at
    /// `RESERVE`).
    offset: u64,
    core: csv_core::Reader,
    fields: Vec<u8>,
    ends: Vec<usize>,
    unescaped: Vec<u8>,
    spans: Vec<Span>,
    /// The record number, line and byte offset of the current record.
    record: u64,
    line: u64,
    record_byte: u64,
    /// The line of the next byte to read.
    next_line: u64,
    /// A read error met after the last record handed out.
    read_error: Option<io::Error>,
}

/// The block size.
const BLOCK: usize = 1 << 20;
/// Bytes kept free before each block's data, for the end of a record the block before ended
/// with (a longer one is copied into a grown block).
const RESERVE: usize = 1 << 12;
/// Blocks in use at once: being read, merged or written.
const BUFFERS: usize = 3;

impl Blocks {
    fn new(filled: Receiver<Filled>, chunks: SyncSender<Chunk>, reserve: usize) -> Blocks {
        Blocks {
            reserve,
            pooled: false,
            bytes: 0,
            filled,
            chunks,
            pieces: Vec::new(),
            encoded: Vec::new(),
            buf: Vec::new(),
            len: 0,
            lines: Vec::new(),
            next_line_end: 0,
            eof: false,
            run_start: 0,
            consumed: 0,
            offset: 0,
            core: csv_core::Reader::new(),
            fields: vec![0; 1024],
            ends: vec![0; 64],
            unescaped: Vec::with_capacity(1024),
            spans: Vec::with_capacity(64),
            record: 0,
            line: 0,
            record_byte: 0,
            next_line: 1,
            read_error: None,
        }
    }

    /// The next record, or `None` at the end of the input or at a read error (then kept in
    /// `read_error`). Before the block moves, the pending run is written.
    fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            let indexed = self.indexed_line();
            let rest = &self.buf[self.consumed..self.len];
            if let Some((nl, commas, special)) = indexed.or_else(|| {
                let nl = memchr::memchr(b'\n', rest)?;
                let (commas, special) = scan_line(&rest[..nl]);
                Some((nl, commas, special))
            }) {
                let line = &rest[..nl];
                let fields = if line.is_empty() {
                    None
                } else if !special {
                    Some(Fields::Plain { commas })
                } else if !line.contains(&b'\r')
                    && split_quoted(line, &mut self.unescaped, &mut self.spans)
                {
                    Some(Fields::Quoted {
                        nfields: self.spans.len(),
                    })
                } else {
                    None
                };
                if let Some(fields) = fields {
                    let start = self.consumed;
                    self.consumed += nl + 1;
                    self.record += 1;
                    self.line = self.next_line;
                    self.next_line += 1;
                    self.record_byte = self.offset.wrapping_add(start as u64);
                    return Ok(Some(Record {
                        begin: start,
                        start,
                        end: start + nl,
                        next: start + nl + 1,
                        fields,
                        verbatim: true,
                    }));
                }
            } else if !self.eof {
                if !self.refill()? {
                    return Ok(None);
                }
                continue;
            }
            match self.parse_with_core() {
                Some(rec) => return Ok(rec),
                None => {
                    if !self.refill()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The line at `consumed` as the I/O thread indexed it (its length, commas, and whether
    /// it holds a quote or CR), if it did: not the first line of a block (it may have begun
    /// in the block before), nor one after a record `csv_core` parsed past its line.
    fn indexed_line(&mut self) -> Option<(usize, usize, bool)> {
        let lines = &self.lines[self.next_line_end..];
        let skip = lines
            .iter()
            .take_while(|l| (l.lf as usize) < self.consumed)
            .count();
        self.next_line_end += skip;
        let line = lines.get(skip)?;
        let starts_here = match self.next_line_end.checked_sub(1) {
            Some(before) => self.lines[before].lf as usize + 1 == self.consumed,
            None => false,
        };
        starts_here.then(|| {
            let len = line.lf as usize - self.consumed;
            (len, line.commas as usize, line.special)
        })
    }

    /// Parses the record at `consumed` with `csv_core`: `None` if the block ends first (and
    /// the input does not), `Some(None)` at the end of the input.
    fn parse_with_core(&mut self) -> Option<Option<Record>> {
        use csv_core::ReadRecordResult as R;
        let begin = self.consumed;
        'parse: loop {
            self.core.reset();
            let (mut nin, mut nout, mut nend) = (0, 0, 0);
            loop {
                let at_end = begin + nin == self.len;
                let (res, i, o, e) = self.core.read_record(
                    &self.buf[begin + nin..self.len],
                    &mut self.fields[nout..],
                    &mut self.ends[nend..],
                );
                nin += i;
                nout += o;
                nend += e;
                match res {
                    // More input; at the end of the input, one call with none ends the record.
                    R::InputEmpty if !self.eof => return None,
                    R::InputEmpty if !at_end => {}
                    R::InputEmpty => unreachable!("csv_core asked for input after the end"),
                    R::OutputFull => {
                        self.fields.resize(self.fields.len() * 2, 0);
                        continue 'parse;
                    }
                    R::OutputEndsFull => {
                        self.ends.resize(self.ends.len() * 2, 0);
                        continue 'parse;
                    }
                    R::Record => {
                        let rec = self.found(begin, nin, nend);
                        return Some(Some(rec));
                    }
                    R::End => {
                        // Only blank lines were left: they are not part of any run.
                        self.consumed = begin;
                        return Some(None);
                    }
                }
            }
        }
    }

    /// Files the record `csv_core` found in `buf[begin..begin + nin]`.
    fn found(&mut self, begin: usize, nin: usize, nfields: usize) -> Record {
        let raw = &self.buf[begin..begin + nin];
        let newlines = |b: &[u8]| b.iter().filter(|&&b| b == b'\n').count() as u64;
        // The parser skips blank lines before a record (and the LF of a CRLF that ended the
        // one before): the record starts after them.
        let lead = raw
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let mut end = raw.len();
        while end > lead && matches!(raw[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        let verbatim = lead == 0 && end + 1 == raw.len() && raw[end] == b'\n';
        self.record += 1;
        self.line = self.next_line + newlines(&raw[..lead]);
        self.next_line += newlines(raw);
        self.record_byte = self.offset.wrapping_add((begin + lead) as u64);
        self.consumed = begin + nin;
        Record {
            begin,
            start: begin + lead,
            end: begin + end,
            next: begin + nin,
            fields: Fields::Parsed { nfields },
            verbatim,
        }
    }

    /// Writes the run, takes the next block with the rest of this one in front of it and
    /// hands this one over to be written; `false` at a read error (kept in `read_error`).
    /// Sets `eof` at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        let (run_start, consumed) = (self.run_start, self.consumed);
        self.piece_of_base(run_start, consumed);
        self.run_start = consumed;
        let next = match self.filled.recv() {
            Ok(Filled::Data(next, lines)) => {
                self.lines = lines;
                self.next_line_end = 0;
                next
            }
            Ok(Filled::End) => {
                self.eof = true;
                return Ok(true);
            }
            Ok(Filled::Error(e)) => {
                self.read_error = Some(e);
                return Ok(false);
            }
            Err(_) => return Err(broken()),
        };
        let rest = &self.buf[consumed..self.len];
        let reserve = self.reserve;
        let (block, start, spare) = if rest.len() <= reserve {
            let mut next = next;
            let start = reserve - rest.len();
            next[start..reserve].copy_from_slice(rest);
            (next, start, None)
        } else {
            // A record longer than the reserve: one grown block holds it all (its lines
            // are no longer where the index says).
            self.lines.clear();
            let mut grown = Vec::with_capacity(rest.len() + next.len() - reserve);
            grown.extend_from_slice(rest);
            grown.extend_from_slice(&next[reserve..]);
            (grown, 0, Some(next))
        };
        self.offset = self
            .offset
            .wrapping_add(consumed as u64)
            .wrapping_sub(start as u64);
        let old = std::mem::replace(&mut self.buf, block);
        self.len = self.buf.len();
        self.consumed = start;
        self.run_start = start;
        self.send(old)?;
        self.pooled = spare.is_none();
        if let Some(spare) = spare {
            // Back to the pool, with nothing to write.
            let chunk = Chunk {
                block: spare,
                pooled: true,
                encoded: Vec::new(),
                pieces: Vec::new(),
            };
            self.chunks.send(chunk).map_err(|_| broken())?;
        }
        Ok(true)
    }

    /// Hands `block` and the pieces so far over to be written.
    fn send(&mut self, block: Vec<u8>) -> io::Result<()> {
        let chunk = Chunk {
            block,
            pooled: self.pooled,
            encoded: std::mem::take(&mut self.encoded),
            pieces: std::mem::take(&mut self.pieces),
        };
        self.chunks.send(chunk).map_err(|_| broken())
    }

    /// Hands the block and the pieces so far over, once the base is done (after the end
    /// of the input, then for each chunk of rows encoded after it).
    fn finish(&mut self) {
        let block = std::mem::take(&mut self.buf);
        self.len = 0;
        // If the I/O thread is gone, it has the error to report.
        let _ = self.send(block);
        self.pooled = false;
    }

    /// Adds `buf[a..b]` to the output.
    fn piece_of_base(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        self.bytes += (b - a) as u64;
        match self.pieces.last_mut() {
            Some(Piece::Base(_, end)) if *end == a => *end = b,
            _ => self.pieces.push(Piece::Base(a, b)),
        }
    }

    /// Adds `bytes` to the output (after copying them).
    fn piece_of_encoded(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.bytes += bytes.len() as u64;
        let a = self.encoded.len();
        self.encoded.extend_from_slice(bytes);
        let b = self.encoded.len();
        match self.pieces.last_mut() {
            Some(Piece::Encoded(_, end)) if *end == a => *end = b,
            _ => self.pieces.push(Piece::Encoded(a, b)),
        }
    }

    /// Writes and empties `buf`. Once the base is done (no block), the encoded rows go
    /// out every [`BLOCK`] bytes.
    fn write(&mut self, buf: &mut Vec<u8>) {
        self.piece_of_encoded(buf);
        buf.clear();
        if self.buf.is_empty() && self.encoded.len() >= BLOCK {
            self.finish();
        }
    }

    fn nfields(&self, rec: &Record) -> usize {
        match rec.fields {
            Fields::Plain { commas } => commas + 1,
            Fields::Quoted { nfields } | Fields::Parsed { nfields } => nfields,
        }
    }

    /// Field `i` of the record (`i` < its number of fields), unquoted.
    fn field(&self, rec: &Record, i: usize) -> &[u8] {
        match rec.fields {
            Fields::Plain { .. } => self.buf[rec.start..rec.end]
                .split(|&b| b == b',')
                .nth(i)
                .unwrap_or_default(),
            Fields::Quoted { .. } => {
                self.spans[i].of(&self.buf[rec.start..rec.end], &self.unescaped)
            }
            Fields::Parsed { .. } => {
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                &self.fields[start..self.ends[i]]
            }
        }
    }

    /// Every field of the record, unquoted.
    fn fields(&self, rec: &Record) -> Vec<&[u8]> {
        match rec.fields {
            Fields::Plain { .. } => self.buf[rec.start..rec.end].split(|&b| b == b',').collect(),
            Fields::Quoted { nfields } | Fields::Parsed { nfields } => {
                (0..nfields).map(|i| self.field(rec, i)).collect()
            }
        }
    }

    /// The record's bytes without its line end.
    fn trimmed(&self, rec: &Record) -> &[u8] {
        &self.buf[rec.start..rec.end]
    }

    /// Keeps the record unchanged, followed by `padding` (the nulls of columns the base
    /// predates; usually none). A verbatim record without padding just joins the run;
    /// otherwise the run is written, then the record's bytes, the padding and an LF.
    fn keep(&mut self, rec: &Record, padding: &[u8]) {
        if rec.verbatim && padding.is_empty() {
            return;
        }
        self.flush_run_to(rec);
        self.piece_of_base(rec.start, rec.end);
        self.piece_of_encoded(padding);
        self.piece_of_encoded(b"\n");
        self.run_start = rec.next;
    }

    /// Drops the record (replaced or deleted, or the header); the run must be written.
    fn skip(&mut self, rec: &Record) {
        self.run_start = rec.next;
    }

    /// Writes the run up to the record (excluding any blank lines before it).
    fn flush_run_to(&mut self, rec: &Record) {
        self.piece_of_base(self.run_start, rec.begin);
        self.run_start = rec.begin;
    }

    /// Writes the run up to the last record handed out.
    fn flush_run(&mut self) {
        self.piece_of_base(self.run_start, self.consumed);
        self.run_start = self.consumed;
    }

    fn position(&self, object: &str) -> Position {
        Position {
            object: object.to_owned(),
            line: self.line,
            record: self.record,
            byte: self.record_byte,
            column: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::raw::RawReader;
    use crate::cdc::{DmsOptions, KeySpec, read_dms};
    use crate::merge::MergeState;

    fn state(changes: &[u8]) -> MergeState {
        let schema = TableSchema::new(
            vec!["id".into(), "v".into()],
            &KeySpec::parse_list("id:int64").unwrap(),
        )
        .unwrap();
        let batch = read_dms("c.csv", changes, &schema, &DmsOptions::default()).unwrap();
        let mut state = MergeState::new(schema);
        state.apply(&batch);
        state
    }

    #[test]
    fn raw_rows_keep_their_bytes_and_line_ends_become_lf() {
        let base = b"id,v\r\n1,\"a\r\nb\"\r\n\r\n2,\"x\"\r\n3,c";
        let mut out = Vec::new();
        let stats = merge_sorted(&state(b"Op,id,v\n"), "b.csv", &base[..], &mut out).unwrap();
        assert_eq!(out, b"id,v\n1,\"a\r\nb\"\n2,\"x\"\n3,c\n");
        assert_eq!(stats.copied, 3);

        let changes = b"Op,id,v\nU,2,y\nD,3,\nI,0,\"new,\"\nI,4,\n";
        let mut out = Vec::new();
        let stats = merge_sorted(&state(changes), "b.csv", &base[..], &mut out).unwrap();
        assert_eq!(out, b"id,v\n0,\"new,\"\n1,\"a\r\nb\"\n2,y\n4,\n");
        assert_eq!(
            (
                stats.copied,
                stats.updated,
                stats.deleted,
                stats.inserted,
                stats.rows
            ),
            (1, 1, 1, 2, 4)
        );
    }

    #[test]
    fn base_errors_name_the_line() {
        let base = b"id,v\n1,a\n\n2,\"b\nc\"\n3\n";
        let e = merge_sorted(&state(b"Op,id,v\n"), "b.csv", &base[..], io::sink()).unwrap_err();
        assert_eq!(e.to_string(), "b.csv, line 6: expected 2 fields, found 1");
    }

    /// The merge as it was first written (every record through `RawReader`, one at a time):
    /// the block reader must give the same bytes, statistics and errors on any input.
    fn reference_merge(
        state: &MergeState,
        base_object: &str,
        base: impl Read,
        mut out: impl Write,
    ) -> Result<MergeStats, crate::Error> {
        let schema = state.schema();
        let columns = schema.columns();
        let null = schema.null();
        let read_err =
            |pos: Position, e: io::Error| CdcError::new(pos, CdcErrorKind::Read(e.to_string()));
        let mut rdr = RawReader::new(base);
        let mut stats = MergeStats::default();
        let mut buf = Vec::with_capacity(1 << 17);

        if !rdr
            .next()
            .map_err(|e| read_err(Position::object(base_object), e))?
        {
            return Err(
                CdcError::new(Position::object(base_object), CdcErrorKind::NoHeader).into(),
            );
        }
        let header_ok = rdr.nfields == columns.len()
            && columns
                .iter()
                .enumerate()
                .all(|(i, c)| rdr.field(i) == c.as_bytes());
        if !header_ok {
            return Err(CdcError::new(
                rdr.position(base_object),
                CdcErrorKind::HeaderMismatch {
                    expected: columns.join(","),
                    found: String::from_utf8_lossy(rdr.raw()).into_owned(),
                },
            )
            .into());
        }
        encode_record(columns.iter().map(|c| c.as_bytes()), &mut buf);

        let mut pending = state.rows().iter().peekable();
        let mut previous: Option<Key> = None;
        loop {
            let more = rdr
                .next()
                .map_err(|e| read_err(rdr.position(base_object), e))?;
            if !more {
                break;
            }
            let pos = || rdr.position(base_object);
            if rdr.nfields != columns.len() {
                let kind = CdcErrorKind::ColumnCount {
                    expected: columns.len(),
                    found: rdr.nfields,
                };
                return Err(CdcError::new(pos(), kind).into());
            }
            let key = schema
                .parse_key(|c| Some(rdr.field(c)))
                .map_err(|(c, kind)| {
                    CdcError::new(pos().with_column(c, Some(&columns[c])), kind)
                })?;
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return Err(CdcError::new(pos(), CdcErrorKind::Unsorted).into());
            }
            while let Some((_, row)) = pending.next_if(|(k, _)| **k < key) {
                if let Some(fields) = row.resolve(None, null) {
                    encode_record(fields, &mut buf);
                    stats.inserted += 1;
                }
            }
            match pending.next_if(|(k, _)| **k == key) {
                Some((_, row)) => {
                    let base_fields: Vec<&[u8]> =
                        (0..columns.len()).map(|c| rdr.field(c)).collect();
                    match row.resolve(Some(&base_fields), null) {
                        Some(fields) => {
                            encode_record(fields, &mut buf);
                            stats.updated += 1;
                        }
                        None => stats.deleted += 1,
                    }
                }
                None => {
                    buf.extend_from_slice(rdr.raw());
                    buf.push(b'\n');
                    stats.copied += 1;
                }
            }
            previous = Some(key);
            if buf.len() >= 1 << 16 {
                out.write_all(&buf)?;
                stats.bytes += buf.len() as u64;
                buf.clear();
            }
        }
        for (_, row) in pending {
            if let Some(fields) = row.resolve(None, null) {
                encode_record(fields, &mut buf);
                stats.inserted += 1;
            }
        }
        out.write_all(&buf)?;
        out.flush()?;
        stats.bytes += buf.len() as u64;
        stats.rows = stats.copied + stats.updated + stats.inserted;
        Ok(stats)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn blocks_agree_with_the_record_reader(
            rows in proptest::collection::vec(
                (0u8..4, proptest::collection::vec(proptest::sample::select(
                    b"ab,\"\r\n".to_vec()), 0..6), 0u8..5),
                0..40),
            changes in proptest::collection::vec((0u8..3, 0i64..60, 0u8..3), 0..10),
            header in proptest::sample::select(vec!["id,v", "id,v,w", "\u{feff}id,v", "id"]),
            block in 1u8..12,
            reserve in 0u8..6,
        ) {
            // Mostly valid bases (increasing keys, quoted or not, every kind of line end),
            // with now and then a field of random bytes, a blank line or a step back.
            let mut base = Vec::from(header.as_bytes());
            base.extend_from_slice(b"\n");
            let mut id = 0i64;
            for (step, bytes, shape) in &rows {
                id += i64::from(*step) - i64::from(*shape == 4);
                let v: Vec<u8> = bytes.clone();
                let field = match shape {
                    0 => v.iter().copied().filter(|b| !b",\"\r\n".contains(b)).collect(),
                    1 | 4 => {
                        let mut q = vec![b'"'];
                        for &b in &v {
                            if b == b'"' { q.push(b'"'); }
                            q.push(b);
                        }
                        q.push(b'"');
                        q
                    }
                    _ => v,
                };
                base.extend_from_slice(format!("{id},").as_bytes());
                base.extend_from_slice(&field);
                base.extend_from_slice(match shape { 0 => b"\n", 1 => b"\r\n", 2 => b"\r", _ => b"\n\n" });
            }
            let mut text = String::from("Op,id,v\n");
            for (op, id, v) in &changes {
                text.push_str(&format!("{},{id},{}\n", ["I", "U", "D"][*op as usize], ["x", "\"y,\"", ""][*v as usize]));
            }
            let state = state(text.as_bytes());
            // Tiny reads and blocks: records straddle blocks, and outgrow the reserve.
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let sizes = (usize::from(block), usize::from(reserve));
            let ours = merge_in_blocks(&state, "b.csv", Trickle(&base[..]), &mut a, sizes);
            let theirs = reference_merge(&state, "b.csv", &base[..], &mut b);
            match (ours, theirs) {
                (Ok(x), Ok(y)) => {
                    proptest::prop_assert_eq!(x, y);
                    proptest::prop_assert_eq!(a, b);
                }
                (Err(x), Err(y)) => proptest::prop_assert_eq!(x.to_string(), y.to_string()),
                (x, y) => proptest::prop_assert!(false, "{x:?} vs {y:?}"),
            }
        }
    }

    #[test]
    fn scan_line_counts_every_comma_once() {
        let mut x = 1u32;
        for len in 0..140 {
            for round in 0..20 {
                // Every other line without quotes or CR.
                let alphabet = [b"a,,b\"\r,x", b"a,,bxy,z"][round % 2];
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        alphabet[(x >> 24) as usize % 8]
                    })
                    .collect();
                let commas = line.iter().filter(|&&b| b == b',').count();
                let special = line.iter().any(|&b| b == b'"' || b == b'\r');
                assert_eq!(scan_line(&line), (commas, special), "{line:?}");
            }
        }
    }

    /// Hands out at most 7 bytes a read.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
}
