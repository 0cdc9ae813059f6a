//! A streaming CSV record reader that keeps each record's raw bytes and counts lines exactly
//! (every LF, blank lines and CRLF ends included).

use std::io::{self, BufRead, BufReader, Read};

use super::error::Position;

/// A CSV reader that also hands out each record's raw bytes (RFC 4180, CR/LF/CRLF ends).
///
/// A line that ends in LF within the buffer and has no CR (most lines) is split where it lies
/// in the input buffer (it is consumed by the next call): at its commas, or by
/// [`split_quoted`] if it holds quotes. Anything else goes through `csv_core`, which is only
/// ever called at a record boundary after an LF, where its state is the start of a record.
pub(crate) struct RawReader<R> {
    input: BufReader<R>,
    core: csv_core::Reader,
    /// The record's raw bytes, when `csv_core` parsed it.
    raw: Vec<u8>,
    /// When the record is a line split in place: its length with its LF, at the start of the
    /// input buffer (0 otherwise).
    plain: usize,
    /// Whether that line held quotes: its fields are then `spans`, else it is split at the
    /// commas in `ends`.
    quoted: bool,
    spans: Vec<Span>,
    unescaped: Vec<u8>,
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
            quoted: false,
            spans: Vec::new(),
            unescaped: Vec::new(),
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

    /// The fast path: a whole non-empty line without CR in the buffer, and with only
    /// well-formed quoted fields if any.
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
        self.quoted = false;
        for i in memchr::memchr3_iter(b',', b'"', b'\r', line) {
            match line[i] {
                b',' => {}
                b'"' => {
                    self.quoted = true;
                    break;
                }
                _ => return Ok(false),
            }
            if n == self.ends.len() {
                self.ends.resize(n * 2, 0);
            }
            self.ends[n] = i;
            n += 1;
        }
        if self.quoted {
            if memchr::memchr(b'\r', line).is_some()
                || !split_quoted(line, &mut self.unescaped, &mut self.spans)
            {
                return Ok(false);
            }
            self.nfields = self.spans.len();
        } else {
            if n == self.ends.len() {
                self.ends.resize(n * 2, 0);
            }
            self.ends[n] = end;
            self.nfields = n + 1;
        }
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
        if self.plain > 0 && self.quoted {
            self.spans[i].of(&self.input.buffer()[..self.plain - 1], &self.unescaped)
        } else if self.plain > 0 {
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

/// Where a field of a line with quotes is: a range of the line (inside its quotes, if
/// quoted), or, for a quoted field with `""` in it, of the buffer it was unescaped into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
    unescaped: bool,
}

impl Span {
    /// The field's bytes, of `line` or of `unescaped` (as [`split_quoted`] filled them).
    pub(crate) fn of<'a>(&self, line: &'a [u8], unescaped: &'a [u8]) -> &'a [u8] {
        let from = if self.unescaped { unescaped } else { line };
        &from[self.start..self.end]
    }
}

/// Splits a line that holds quotes (but no CR) into its unquoted fields, as `csv_core` would,
/// when every quote belongs to a well-formed quoted field: `"` opening the field, `""`
/// inside, `"` closing it right before a comma or the line's end. Anything else (a quote
/// inside an unquoted field, a quoted field running onto the next line) is left to
/// `csv_core`: `false`. Only fields with `""` in them are copied (into `unescaped`).
pub(crate) fn split_quoted(line: &[u8], unescaped: &mut Vec<u8>, spans: &mut Vec<Span>) -> bool {
    unescaped.clear();
    spans.clear();
    let in_line = |start, end| Span {
        start,
        end,
        unescaped: false,
    };
    let mut i = 0;
    loop {
        if line.get(i) == Some(&b'"') {
            let open = i + 1;
            let (mut j, mut escaped) = (open, None);
            loop {
                let Some(q) = memchr::memchr(b'"', &line[j..]).map(|p| j + p) else {
                    return false;
                };
                if line.get(q + 1) == Some(&b'"') {
                    // `""`: the field is unescaped into the buffer (`j` moves only here,
                    // so `line[open..j]` is already there).
                    escaped.get_or_insert(unescaped.len());
                    unescaped.extend_from_slice(&line[j..=q]);
                    j = q + 2;
                } else {
                    spans.push(match escaped {
                        None => in_line(open, q),
                        Some(start) => {
                            unescaped.extend_from_slice(&line[j..q]);
                            Span {
                                start,
                                end: unescaped.len(),
                                unescaped: true,
                            }
                        }
                    });
                    i = q + 1;
                    break;
                }
            }
            match line.get(i) {
                None => return true,
                Some(b',') => i += 1,
                Some(_) => return false,
            }
        } else {
            match memchr::memchr2(b',', b'"', &line[i..]) {
                None => {
                    spans.push(in_line(i, line.len()));
                    return true;
                }
                Some(p) if line[i + p] == b',' => {
                    spans.push(in_line(i, i + p));
                    i += p + 1;
                }
                Some(_) => return false,
            }
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
