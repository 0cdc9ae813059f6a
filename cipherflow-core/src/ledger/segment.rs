//! Segments: one write-once object holding a run of consecutive records (`docs/LEDGER.md`
//! section 4).
//!
//! Appending a batch as one object (instead of one object per record) is what makes appends
//! fast on a local folder and cheap on S3, and naming the object by its first index is what
//! lets a create-only put claim that index range exactly once.
//!
//! ```text
//! segment = "CFLS" || version 01 || first u64 || count u32 || count × (u32 length || record)
//! ```
//!
//! The decoder checks the framing only (the records themselves are decoded and hashed by the
//! caller) and never panics: a segment cut at any byte, or with lengths that do not add up,
//! is a [`SegmentError`] naming the index of the first record it could not frame.

/// The 4-byte magic at the start of every segment.
pub const MAGIC: [u8; 4] = *b"CFLS";
/// The segment format version.
pub const VERSION: u8 = 1;
/// Bytes before the first frame: magic, version, first index, count.
pub const HEADER_LEN: usize = 4 + 1 + 8 + 4;
/// The longest record a frame may hold (a record of 20 maximal strings stays below it).
pub const MAX_RECORD_LEN: u32 = 1 << 22;

/// Why a segment's bytes cannot be framed: `index` is the first record affected (the
/// segment's first index when the header itself is bad).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentError {
    /// The first record index the error affects.
    pub index: u64,
    /// What is wrong.
    pub reason: String,
}

/// Builds a segment of `records` (canonical encodings) starting at index `first`.
pub fn encode<'a>(first: u64, records: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut builder = Builder::new(first, records.len() * 256);
    for record in records {
        builder
            .push(|out| {
                out.extend_from_slice(record);
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("infallible");
    }
    builder.finish()
}

/// Builds a segment in one buffer: each record is written straight into its frame, so an
/// append encodes each record once and copies nothing.
#[derive(Debug)]
pub struct Builder {
    out: Vec<u8>,
    count: u32,
}

impl Builder {
    /// A segment starting at index `first`, with room for about `capacity` bytes of records.
    pub fn new(first: u64, capacity: usize) -> Builder {
        let mut out = Vec::with_capacity(HEADER_LEN + capacity);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        Builder { out, count: 0 }
    }

    /// Adds one frame whose record `write` appends to the buffer (it must append at least
    /// one byte, at most [`MAX_RECORD_LEN`]); returns the record's bytes. If `write` fails,
    /// the segment is as it was.
    pub fn push<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<&[u8], E> {
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        if let Err(e) = write(&mut self.out) {
            self.out.truncate(at);
            return Err(e);
        }
        let len = self.out.len() - at - 4;
        assert!(
            len > 0 && len <= MAX_RECORD_LEN as usize,
            "a segment frame holds 1 to {MAX_RECORD_LEN} bytes"
        );
        self.out[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
        self.count = self
            .count
            .checked_add(1)
            .expect("batches hold fewer than 2^32 records");
        Ok(&self.out[at + 4..])
    }

    /// The segment's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[13..17].copy_from_slice(&self.count.to_be_bytes());
        self.out
    }
}

/// A segment's header, checked against the index its object name gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Index of the first record.
    pub first: u64,
    /// Number of records.
    pub count: u32,
}

impl Header {
    /// The index after the segment's last record.
    pub fn end(&self) -> u64 {
        self.first + u64::from(self.count)
    }
}

/// Reads and checks the header of a segment that its name says starts at `named_first`.
pub fn header(bytes: &[u8], named_first: u64) -> Result<Header, SegmentError> {
    let bad = |reason: String| SegmentError {
        index: named_first,
        reason,
    };
    if bytes.len() < HEADER_LEN {
        return Err(bad(format!(
            "segment header cut short ({} of {HEADER_LEN} bytes)",
            bytes.len()
        )));
    }
    if bytes[..4] != MAGIC {
        return Err(bad("not a segment (bad magic)".into()));
    }
    if bytes[4] != VERSION {
        return Err(bad(format!("unknown segment version {}", bytes[4])));
    }
    let first = u64::from_be_bytes(bytes[5..13].try_into().expect("8 bytes"));
    let count = u32::from_be_bytes(bytes[13..17].try_into().expect("4 bytes"));
    if first != named_first {
        return Err(bad(format!(
            "segment header says it starts at record {first}"
        )));
    }
    if first.checked_add(u64::from(count)).is_none() {
        return Err(bad(format!("record count {count} overflows the index")));
    }
    Ok(Header { first, count })
}

/// The frames of a segment, in order, after its header: each item is one record's bytes
/// or the error that stops the walk (after which the iterator ends).
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    rest: &'a [u8],
    next: u64,
    end: u64,
    done: bool,
}

/// Checks the header and walks the frames of a segment named as starting at `named_first`.
pub fn frames(bytes: &[u8], named_first: u64) -> Result<(Header, Frames<'_>), SegmentError> {
    let header = header(bytes, named_first)?;
    let frames = Frames {
        rest: &bytes[HEADER_LEN..],
        next: header.first,
        end: header.end(),
        done: false,
    };
    Ok((header, frames))
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(u64, &'a [u8]), SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let index = self.next;
        let fail = |done: &mut bool, reason: String| {
            *done = true;
            Some(Err(SegmentError { index, reason }))
        };
        if index == self.end {
            self.done = true;
            if !self.rest.is_empty() {
                return fail(
                    &mut self.done,
                    format!("{} bytes after the segment's last record", self.rest.len()),
                );
            }
            return None;
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            return fail(
                &mut self.done,
                "segment cut short in this record's length".into(),
            );
        };
        let len = u32::from_be_bytes(*len);
        if len == 0 || len > MAX_RECORD_LEN {
            return fail(&mut self.done, format!("record length {len} out of range"));
        }
        let Some((record, rest)) = rest.split_at_checked(len as usize) else {
            return fail(
                &mut self.done,
                format!(
                    "segment cut short in this record ({} of {len} bytes)",
                    rest.len()
                ),
            );
        };
        self.rest = rest;
        self.next += 1;
        Some(Ok((index, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_byte_exact() {
        let bytes = encode(7, [&b"ab"[..], &b"c"[..]].into_iter());
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "43464c53",
                "01",
                "0000000000000007",
                "00000002",
                "00000002",
                "6162",
                "00000001",
                "63"
            )
        );
        let (header, frames) = frames(&bytes, 7).unwrap();
        assert_eq!(header, Header { first: 7, count: 2 });
        let got: Vec<_> = frames.collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![(7, &b"ab"[..]), (8, &b"c"[..])]);
    }

    #[test]
    fn empty_segment_frames_nothing() {
        let bytes = encode(3, std::iter::empty());
        let (header, mut frames) = frames(&bytes, 3).unwrap();
        assert_eq!(header.end(), 3);
        assert!(frames.next().is_none());
    }

    #[test]
    fn every_truncation_and_extension_is_an_error_naming_a_record() {
        let records: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 5 + i as usize]).collect();
        let bytes = encode(100, records.iter().map(Vec::as_slice));
        for cut in 0..bytes.len() {
            let result =
                frames(&bytes[..cut], 100).and_then(|(_, f)| f.collect::<Result<Vec<_>, _>>());
            let err = result.expect_err("a cut segment must not frame");
            // The first record whose frame the cut reaches.
            let mut expected = 100;
            let mut offset = HEADER_LEN;
            for r in &records {
                offset += 4 + r.len();
                if cut < offset {
                    break;
                }
                expected += 1;
            }
            if cut < HEADER_LEN {
                expected = 100;
            }
            assert_eq!(err.index, expected, "cut at {cut}: {}", err.reason);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = frames(&longer, 100)
            .and_then(|(_, f)| f.collect::<Result<Vec<_>, _>>())
            .unwrap_err();
        assert_eq!(err.index, 104);
        assert!(frames(&bytes, 101).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bytes (and valid segments with bytes flipped) frame or fail, never panic,
        /// and every frame lies inside the segment's declared range.
        #[test]
        fn framing_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            flip in 0usize..64,
        ) {
            let record = if bytes.is_empty() { &b"a"[..] } else { &bytes[..bytes.len().min(9)] };
            let valid = encode(5, [record, &b"xyz"[..]].into_iter());
            let mut flipped = valid.clone();
            let at = flip % flipped.len();
            flipped[at] ^= 0x41;
            for input in [&bytes[..], &flipped[..]] {
                if let Ok((header, frames)) = frames(input, 5) {
                    for (index, _) in frames.flatten() {
                        proptest::prop_assert!(index >= header.first && index < header.end());
                    }
                }
            }
        }
    }
}
