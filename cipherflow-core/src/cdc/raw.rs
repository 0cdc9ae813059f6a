//! A streaming CSV record reader that keeps each record's raw bytes and counts lines exactly
//! (every LF, blank lines and CRLF ends included).

use std::io::{self, BufRead, BufReader, Read};

use super::error::Position;

/// A CSV reader that also hands out each record's raw bytes (RFC 4180, CR/LF/CRLF ends).
///
/// A line that ends in LF within the buffer and has no quote and no CR (most lines) is split
/// at its commas directly, where it lies in the input buffer (it is consumed by the next
/// call); anything else goes through `csv_core`, which is only ever called at a record
/// boundary after an LF, where its state is the start of a record.
pub(crate) struct RawReader<R> {
    input: BufReader<R>,
    core: csv_core::Reader,
    /// The record's raw bytes, when `csv_core` parsed it.
    raw: Vec<u8>,
    /// When the record is a plain line: its length with its LF, at the start of the input
    /// buffer (0 otherwise).
    plain: usize,
    fields: Vec<u8>,
    ends: Vec<usize>,
    pub(crate) nfields: usize,
    /// Whether the last byte consumed was an LF (or nothing was consumed yet).
    after_lf: bool,
    byte: u64,
    record: u64,
    /// The line of the next byte to read.
    next_line: u64,
    pub(crate) line: u64,
    record_byte: u64,
}

impl<R: Read> RawReader<R> {
    pub(crate) fn new(input: R) -> RawReader<R> {
        RawReader {
            input: BufReader::with_capacity(1 << 16, input),
            core: csv_core::Reader::new(),
            raw: Vec::with_capacity(1024),
            fields: vec![0; 1024],
            ends: vec![0; 64],
            nfields: 0,
            plain: 0,
            after_lf: true,
            byte: 0,
            record: 0,
            next_line: 1,
            line: 0,
            record_byte: 0,
        }
    }

    /// Reads the next record; `false` at the end.
    pub(crate) fn next(&mut self) -> io::Result<bool> {
        use csv_core::ReadRecordResult as R;
        self.input.consume(std::mem::take(&mut self.plain));
        self.raw.clear();
        self.record_byte = self.byte;
        if self.after_lf && self.next_plain_line()? {
            return Ok(true);
        }
        let (mut nout, mut nend) = (0, 0);
        loop {
            let input = self.input.fill_buf()?;
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            self.raw.extend_from_slice(&input[..nin]);
            self.input.consume(nin);
            self.byte += nin as u64;
            nout += o;
            nend += e;
            match res {
                R::InputEmpty => {}
                R::OutputFull => self.fields.resize(self.fields.len() * 2, 0),
                R::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                R::Record => {
                    self.nfields = nend;
                    self.record += 1;
                    self.after_lf = self.raw.last() == Some(&b'\n');
                    // The parser skips blank lines before a record, and the LF of a CRLF
                    // ending the previous one: the record starts after them.
                    let lead = self
                        .raw
                        .iter()
                        .take_while(|b| matches!(b, b'\r' | b'\n'))
                        .count();
                    let newlines = |b: &[u8]| b.iter().filter(|&&b| b == b'\n').count() as u64;
                    self.line = self.next_line + newlines(&self.raw[..lead]);
                    self.next_line += newlines(&self.raw);
                    self.record_byte += lead as u64;
                    self.raw.drain(..lead);
                    while matches!(self.raw.last(), Some(b'\r' | b'\n')) {
                        self.raw.pop();
                    }
                    return Ok(true);
                }
                R::End => return Ok(false),
            }
        }
    }

    /// The fast path: a whole non-empty line without quotes or CR in the buffer.
    fn next_plain_line(&mut self) -> io::Result<bool> {
        let buf = self.input.fill_buf()?;
        let Some(end) = memchr::memchr(b'\n', buf) else {
            return Ok(false);
        };
        let line = &buf[..end];
        if line.is_empty() {
            return Ok(false);
        }
        let mut n = 0;
        for i in memchr::memchr3_iter(b',', b'"', b'\r', line) {
            if line[i] != b',' {
                return Ok(false);
            }
            if n == self.ends.len() {
                self.ends.resize(n * 2, 0);
            }
            self.ends[n] = i;
            n += 1;
        }
        if n == self.ends.len() {
            self.ends.resize(n * 2, 0);
        }
        self.ends[n] = end;
        self.nfields = n + 1;
        self.plain = end + 1;
        self.byte += end as u64 + 1;
        self.record += 1;
        self.line = self.next_line;
        self.next_line += 1;
        Ok(true)
    }

    /// The current record's bytes, without its line end.
    #[cfg(test)]
    pub(crate) fn raw(&self) -> &[u8] {
        if self.plain > 0 {
            &self.input.buffer()[..self.plain - 1]
        } else {
            &self.raw
        }
    }

    pub(crate) fn field(&self, i: usize) -> &[u8] {
        if self.plain > 0 {
            let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
            &self.input.buffer()[start..self.ends[i]]
        } else {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.fields[start..self.ends[i]]
        }
    }

    pub(crate) fn position(&self, object: &str) -> Position {
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

    #[test]
    fn raw_reader_fields_equal_the_csv_crate() {
        let long = "y".repeat(70_000);
        let inputs = [
            "a,b\n,,\n\"q,\"\"\",x\r\ny,z\n\n\nlast,\"multi\nline\"".to_string(),
            "a\rb,c\r\n\r\nd\n\"\"\ne,\"f\r\"".to_string(),
            format!("h,i\n{long},1\n2,\"{long}\"\n3,4"),
            ",\n,\n".to_string(),
        ];
        for input in inputs {
            let mut expected = Vec::new();
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(input.as_bytes());
            for r in rdr.byte_records() {
                let r = r.unwrap();
                let fields: Vec<Vec<u8>> = r.iter().map(<[u8]>::to_vec).collect();
                expected.push(fields);
            }
            let mut raw = RawReader::new(input.as_bytes());
            let (mut got, mut lines) = (Vec::new(), Vec::new());
            while raw.next().unwrap() {
                let fields: Vec<Vec<u8>> =
                    (0..raw.nfields).map(|i| raw.field(i).to_vec()).collect();
                got.push(fields);
                lines.push(raw.line);
            }
            assert_eq!(got, expected, "{input:?}");
            // Lines count every LF, blank lines included (where the csv crate's do not).
            if input.starts_with("a,b") {
                assert_eq!(lines, [1, 2, 3, 4, 7]);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn raw_reader_agrees_with_the_csv_crate_on_any_input(
            input in proptest::collection::vec(
                proptest::sample::select(b"ab,\"\r\n".to_vec()), 0..200),
        ) {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&input[..]);
            let expected: Vec<Vec<Vec<u8>>> = rdr
                .byte_records()
                .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
                .collect();
            let mut raw = RawReader::new(&input[..]);
            let mut got = Vec::new();
            while raw.next().unwrap() {
                got.push((0..raw.nfields).map(|i| raw.field(i).to_vec()).collect::<Vec<_>>());
            }
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
