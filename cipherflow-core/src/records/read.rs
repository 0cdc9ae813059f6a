//! Readers for a JSON array (or one JSON object), JSON lines and CSV with a header. Each
//! record is validated into a typed [`Record`]; every error of the file is collected. By
//! default a file with any bad record is refused whole; in reject mode the good records come
//! back with the bad ones, verbatim, and their reasons.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::io::{self, Read, Write};
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::error::{Reason, RecordError, RecordsError};
use super::json;
use super::schema::{Extra, RecordSchema};
use super::validate::{json_field, null, text_field};
use super::value::{DecimalRef, Value};
use crate::cdc::ChangeBatch;

/// The input's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of record objects, or a single record object (an HTTP body).
    Json,
    /// One JSON object per line; blank lines are skipped.
    JsonLines,
    /// CSV with a header row naming the columns; the empty field is null.
    Csv,
}

impl Format {
    /// The format an object name's extension says: `.json`, `.jsonl` / `.ndjson`, `.csv`
    /// (any case).
    pub fn from_name(name: &str) -> Option<Format> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// How to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Reject mode: bad records go to [`Records::rejects`] and the rest is returned. Off, a
    /// file with any bad record is refused with [`RecordsError::Invalid`].
    pub reject: bool,
    /// Refuse inputs larger than this many bytes with [`RecordsError::TooLarge`].
    pub max_bytes: Option<u64>,
}

/// A valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based index of the record in its file (the CSV header is not a record).
    pub index: u64,
    /// 1-based line where it starts.
    pub line: u64,
    /// One value per schema column, in [`RecordSchema::columns`] order.
    pub values: Vec<Value>,
}

/// A record refused in reject mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based index of the record.
    pub record: u64,
    /// 1-based line where it starts.
    pub line: u64,
    /// The record's bytes exactly as they were in the input (without the line end).
    pub raw: Vec<u8>,
    /// Every reason.
    pub errors: Vec<RecordError>,
}

/// The records of one object.
#[derive(Debug, Clone)]
pub struct Records {
    /// The object's name.
    pub object: Arc<str>,
    /// SHA-256 of the object's bytes (the ledger's and the merge's identity of the input).
    pub sha256: [u8; 32],
    /// The valid records, in input order.
    pub records: Vec<Record>,
    /// In reject mode, the refused records, in input order.
    pub rejects: Vec<Rejected>,
}

impl Records {
    /// The merge engine's batch: one upsert per record (see [`super::to_changes`]).
    pub fn to_batch(&self, schema: &RecordSchema) -> ChangeBatch {
        ChangeBatch {
            object: self.object.clone(),
            sha256: self.sha256,
            changes: super::to_changes(&self.records, schema, &self.object),
            rejects: Vec::new(),
            added_columns: Vec::new(),
        }
    }
}

/// Reads `input` (at most [`ReadOptions::max_bytes`]) and validates it; see [`read_records`].
pub fn read_records_from(
    object: &str,
    input: impl Read,
    format: Format,
    schema: &RecordSchema,
    options: &ReadOptions,
) -> Result<Records, RecordsError> {
    let mut buf = Vec::new();
    let limit = options.max_bytes.map_or(u64::MAX, |m| m.saturating_add(1));
    input
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| RecordsError::Read {
            object: object.into(),
            reason: e.to_string(),
        })?;
    read_records(object, &buf, format, schema, options)
}

/// Validates every record of `input` (the whole object) against `schema`.
///
/// Errors: [`RecordsError::TooLarge`] over the size limit; [`RecordsError::Invalid`] with
/// every error found when the file is malformed as a whole (a JSON syntax error in an array,
/// a bad CSV header) or, outside reject mode, when any record is bad.
pub fn read_records(
    object: &str,
    input: &[u8],
    format: Format,
    schema: &RecordSchema,
    options: &ReadOptions,
) -> Result<Records, RecordsError> {
    if let Some(limit) = options.max_bytes
        && input.len() as u64 > limit
    {
        return Err(RecordsError::TooLarge {
            object: object.into(),
            limit,
        });
    }
    let body = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut c = Collector {
        object: object.into(),
        body,
        spans: Vec::new(),
        schema,
        records: Vec::new(),
        bad: Vec::new(),
        file_errors: Vec::new(),
        reasons: Vec::new(),
    };
    match format {
        Format::Json => read_json(&mut c, body),
        Format::JsonLines => read_json_lines(&mut c, body),
        Format::Csv => read_csv(&mut c, body),
    }
    c.duplicate_keys();
    let Collector {
        object,
        records,
        mut bad,
        file_errors,
        ..
    } = c;
    if !file_errors.is_empty() || (!bad.is_empty() && !options.reject) {
        let mut errors = file_errors;
        bad.sort_by_key(|b| b.record);
        errors.extend(bad.into_iter().flat_map(|b| b.errors));
        errors.sort_by_key(|e| (e.line, e.record));
        return Err(RecordsError::Invalid {
            object: object.to_string(),
            errors,
        });
    }
    bad.sort_by_key(|b| b.record);
    Ok(Records {
        sha256: Sha256::digest(input).into(),
        object,
        records,
        rejects: bad,
    })
}

/// Gathers records, bad records and file-level errors while a reader runs.
struct Collector<'s> {
    object: Arc<str>,
    /// The input (after any byte-order mark), which every record's raw text is a slice of.
    body: &'s [u8],
    /// Where each valid record's text is in `body` (for a duplicate key's reject).
    spans: Vec<std::ops::Range<usize>>,
    schema: &'s RecordSchema,
    records: Vec<Record>,
    bad: Vec<Rejected>,
    file_errors: Vec<RecordError>,
    /// Reasons of the record being read: (field, reason).
    reasons: Vec<(Option<String>, Reason)>,
}

impl Collector<'_> {
    fn error(&self, record: u64, line: u64, field: Option<String>, reason: Reason) -> RecordError {
        RecordError {
            object: self.object.clone(),
            record,
            line,
            field,
            reason,
        }
    }

    fn file_error(&mut self, line: u64, field: Option<String>, reason: Reason) {
        let e = self.error(0, line, field, reason);
        self.file_errors.push(e);
    }

    /// Ends a record: valid if no reason was given.
    fn finish(&mut self, index: u64, line: u64, raw: &[u8], values: Vec<Value>) {
        if self.reasons.is_empty() {
            let start = raw.as_ptr() as usize - self.body.as_ptr() as usize;
            self.spans.push(start..start + raw.len());
            self.records.push(Record {
                index,
                line,
                values,
            });
            return;
        }
        let errors = std::mem::take(&mut self.reasons)
            .into_iter()
            .map(|(field, reason)| self.error(index, line, field, reason))
            .collect();
        self.bad.push(Rejected {
            record: index,
            line,
            raw: raw.to_vec(),
            errors,
        });
    }

    /// Validates the fields found (`slots`, one per column; `None` = absent).
    fn fields<'a>(
        &mut self,
        slots: &[Option<&'a str>],
        check: impl Fn(usize, &'a str, &mut Vec<Reason>) -> Option<Value>,
    ) -> Vec<Value> {
        let mut values = Vec::with_capacity(slots.len());
        let mut reasons = Vec::new();
        for (i, (column, slot)) in self.schema.columns().iter().zip(slots).enumerate() {
            let value = match slot {
                Some(raw) => check(i, raw, &mut reasons),
                None if column.nullable() => Some(Value::Null),
                None => {
                    reasons.push(Reason::Missing);
                    None
                }
            };
            match value {
                Some(v) => values.push(v),
                None => {
                    self.reasons.extend(
                        reasons
                            .drain(..)
                            .map(|r| (Some(column.name().to_owned()), r)),
                    );
                }
            }
        }
        values
    }

    /// Moves every record whose key another record of the file also has to the bad ones.
    fn duplicate_keys(&mut self) {
        let key = self.schema.key();
        fn parts<'r>(key: &[usize], r: &'r Record) -> Vec<KeyPart<'r>> {
            key.iter().map(|&i| KeyPart::of(&r.values[i])).collect()
        }
        // Hashes only sort keys into candidate groups, which are then compared in full, so a
        // collision costs time, never correctness; the seed is random per process, so that no
        // input can be made to collide on purpose.
        let state = foldhash::fast::RandomState::default();
        let mut hashes: Vec<(u64, usize)> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut h = state.build_hasher();
                for &k in key {
                    KeyPart::of(&r.values[k]).hash(&mut h);
                }
                (h.finish(), i)
            })
            .collect();
        // Most files have no repeated key: a set finds the hashes seen twice without sorting
        // them all, and only the records with such a hash are sorted and compared in full.
        let mut seen: HashSet<u64, BuildHasherDefault<Identity>> =
            HashSet::with_capacity_and_hasher(hashes.len(), Default::default());
        let mut repeated: HashSet<u64, BuildHasherDefault<Identity>> = HashSet::default();
        for &(h, _) in &hashes {
            if !seen.insert(h) {
                repeated.insert(h);
            }
        }
        if repeated.is_empty() {
            return;
        }
        hashes.retain(|(h, _)| repeated.contains(h));
        hashes.sort_unstable();
        // For each duplicate: the index of another record with its key.
        let mut other: Vec<(usize, u64)> = Vec::new();
        for run in hashes
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|run| run.len() > 1)
        {
            for &(_, i) in run {
                let mine = parts(key, &self.records[i]);
                if let Some(&(_, j)) = run
                    .iter()
                    .find(|&&(_, j)| j != i && parts(key, &self.records[j]) == mine)
                {
                    other.push((i, self.records[j].index));
                }
            }
        }
        if other.is_empty() {
            return;
        }
        other.sort_unstable();
        let mut next = other.iter().peekable();
        let records = std::mem::take(&mut self.records);
        let spans = std::mem::take(&mut self.spans);
        for (i, record) in records.into_iter().enumerate() {
            match next.next_if(|(d, _)| *d == i) {
                None => {
                    self.records.push(record);
                    self.spans.push(spans[i].clone());
                }
                Some(&(_, first)) => {
                    let field = self
                        .schema
                        .key()
                        .iter()
                        .map(|&k| self.schema.columns()[k].name())
                        .collect::<Vec<_>>()
                        .join(",");
                    let error = self.error(
                        record.index,
                        record.line,
                        Some(field),
                        Reason::DuplicateKey { other: first },
                    );
                    self.bad.push(Rejected {
                        record: record.index,
                        line: record.line,
                        raw: self.body[spans[i].clone()].to_vec(),
                        errors: vec![error],
                    });
                }
            }
        }
    }
}

/// A hasher for values that are already hashes (by foldhash, which mixes every bit).
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 hashes are hashed again")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A key field as the merge engine compares it: decimals by value, timestamps by instant.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyPart<'a> {
    Text(&'a str),
    Int(i64),
    Decimal(DecimalRef<'a>),
    Instant(i128),
    Other,
}

impl<'a> KeyPart<'a> {
    fn of(v: &'a Value) -> KeyPart<'a> {
        match v {
            Value::String(s) => KeyPart::Text(s),
            Value::Int64(i) => KeyPart::Int(*i),
            Value::Decimal(d) => KeyPart::Decimal(DecimalRef::parse(d).expect("validated")),
            Value::Timestamp(t) => KeyPart::Instant(t.unix_nanos()),
            Value::Null | Value::Bool(_) => KeyPart::Other,
        }
    }
}

/// A JSON object key, borrowed from the input when it has no escapes.
enum FieldName<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl std::ops::Deref for FieldName<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            FieldName::Borrowed(s) => s,
            FieldName::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<FieldName<'de>, E> {
                Ok(FieldName::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<FieldName<'de>, E> {
                Ok(FieldName::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Walks one JSON object: each known field's raw value into its slot; unknown and repeated
/// fields become reasons.
struct ObjectVisitor<'a, 'de> {
    schema: &'a RecordSchema,
    slots: &'a mut Vec<Option<&'de str>>,
    reasons: &'a mut Vec<(Option<String>, Reason)>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let columns = self.schema.columns();
        while let Some(name) = map.next_key::<FieldName<'de>>()? {
            match columns.iter().position(|c| c.name() == &*name) {
                Some(i) if self.slots[i].is_none() => {
                    self.slots[i] = Some(map.next_value::<&'de RawValue>()?.get());
                }
                Some(_) => {
                    map.next_value::<IgnoredAny>()?;
                    self.reasons
                        .push((Some(name.to_owned()), Reason::DuplicateField));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    if self.schema.extra() == Extra::Error {
                        self.reasons.push((Some(name.to_owned()), Reason::Unknown));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a JSON text that is not an object is.
fn json_found(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Validates one JSON record's text. `checked`: serde_json has already accepted the text as
/// JSON (an element of an array it parsed). Syntax errors become a `Malformed` reason.
fn json_record<'de>(
    c: &mut Collector<'_>,
    slots: &mut Vec<Option<&'de str>>,
    text: &'de str,
    checked: bool,
) -> Vec<Value> {
    slots.clear();
    slots.resize(c.schema.columns().len(), None);
    let schema = c.schema;
    let check = |i: usize, raw: &str, reasons: &mut Vec<Reason>| {
        json_field(&schema.columns()[i], raw, reasons)
    };
    // Well-formed JSON (serde_json says so, once) is split by `json::Fields`; anything else
    // takes the full serde_json parse below, whose error messages are the reasons.
    if text.trim_start().starts_with('{')
        && (checked || serde_json::from_str::<IgnoredAny>(text).is_ok())
    {
        let before = c.reasons.len();
        if split_fields(schema, slots, &mut c.reasons, text) {
            return c.fields(slots, check);
        }
        c.reasons.truncate(before);
        slots.clear();
        slots.resize(schema.columns().len(), None);
    }
    if !text.trim_start().starts_with('{') {
        let reason = match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Reason::NotAnObject {
                found: json_found(text),
            },
            Err(e) => Reason::Malformed(e.to_string()),
        };
        c.reasons.push((None, reason));
        return Vec::new();
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_map(ObjectVisitor {
            schema,
            slots,
            reasons: &mut c.reasons,
        })
        .and_then(|()| de.end());
    if let Err(e) = parsed {
        c.reasons.push((None, Reason::Malformed(e.to_string())));
        return Vec::new();
    }
    c.fields(slots, check)
}

/// What [`ObjectVisitor`] does, on an object serde_json has accepted: each known field's raw
/// value into its slot; unknown and repeated fields become reasons. `false` when a key's
/// escapes do not decode to a string (a lone surrogate), for [`ObjectVisitor`] to report.
fn split_fields<'de>(
    schema: &RecordSchema,
    slots: &mut [Option<&'de str>],
    reasons: &mut Vec<(Option<String>, Reason)>,
    text: &'de str,
) -> bool {
    let columns = schema.columns();
    // Fields usually come in column order: try the column after the last one found first.
    let mut next = 0;
    for (key, value) in json::Fields::of(text) {
        let name: std::borrow::Cow<'_, str> = if key.contains('\\') {
            match serde_json::from_str::<String>(key) {
                Ok(name) => name.into(),
                Err(_) => return false,
            }
        } else {
            key[1..key.len() - 1].into()
        };
        let found = if columns.get(next).is_some_and(|c| c.name() == name) {
            Some(next)
        } else {
            columns.iter().position(|c| c.name() == name)
        };
        match found {
            Some(i) if slots[i].is_none() => {
                slots[i] = Some(value);
                next = i + 1;
            }
            Some(_) => reasons.push((Some(name.into_owned()), Reason::DuplicateField)),
            None => {
                if schema.extra() == Extra::Error {
                    reasons.push((Some(name.into_owned()), Reason::Unknown));
                }
            }
        }
    }
    true
}

/// Calls `each` on every raw element of a JSON array as it is read (those read before a
/// syntax error included).
struct Elements<'a, 'de>(&'a mut dyn FnMut(&'de RawValue));

impl<'de> DeserializeSeed<'de> for Elements<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            (self.0)(v);
        }
        Ok(())
    }
}

fn malformed_at(c: &mut Collector<'_>, e: &serde_json::Error) {
    c.file_error(e.line() as u64, None, Reason::Malformed(e.to_string()));
}

fn read_json<'de>(c: &mut Collector<'_>, body: &'de [u8]) {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            let line = body[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            let reason = Reason::Malformed(format!("not UTF-8 at byte {}", e.valid_up_to()));
            return c.file_error(line as u64, None, reason);
        }
    };
    let mut slots = Vec::new();
    let first = text.trim_start().as_bytes().first().copied();
    if first == Some(b'{') {
        let lead = text.len() - text.trim_start().len();
        let line = 1 + text[..lead].matches('\n').count() as u64;
        let values = json_record(c, &mut slots, text, false);
        return c.finish(1, line, text.trim().as_bytes(), values);
    }
    if first != Some(b'[') {
        let reason = Reason::Malformed("expected a JSON array of records, or one record".into());
        return c.file_error(1, None, reason);
    }
    let (mut offset, mut line, mut index) = (0usize, 1u64, 0u64);
    let mut each = |raw: &'de RawValue| {
        let raw = raw.get();
        let start = raw.as_ptr() as usize - text.as_ptr() as usize;
        line += text.as_bytes()[offset..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        offset = start;
        index += 1;
        let values = json_record(c, &mut slots, raw, true);
        c.finish(index, line, raw.as_bytes(), values);
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Elements(&mut each)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Err(e) = parsed {
        malformed_at(c, &e);
    }
}

fn read_json_lines(c: &mut Collector<'_>, body: &[u8]) {
    let mut slots = Vec::new();
    let mut index = 0;
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        index += 1;
        let number = n as u64 + 1;
        match std::str::from_utf8(line) {
            Ok(text) => {
                let values = json_record(c, &mut slots, text, false);
                c.finish(index, number, line, values);
            }
            Err(e) => {
                let reason = Reason::Malformed(format!("not UTF-8 at byte {}", e.valid_up_to()));
                c.reasons.push((None, reason));
                c.finish(index, number, line, Vec::new());
            }
        }
    }
}

fn read_csv(c: &mut Collector<'_>, body: &[u8]) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    match rdr.read_byte_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return c.file_error(1, None, Reason::Malformed("no header row".into())),
        Err(e) => return c.file_error(1, None, Reason::Malformed(e.to_string())),
    }
    // Which column each header field is (None: ignored).
    let columns = c.schema.columns();
    let mut field_of: Vec<Option<usize>> = vec![None; columns.len()];
    let mut roles = Vec::with_capacity(record.len());
    for (f, name) in record.iter().enumerate() {
        let name = match std::str::from_utf8(name) {
            Ok(name) => name,
            Err(_) => {
                c.file_error(1, None, Reason::InvalidUtf8);
                roles.push(None);
                continue;
            }
        };
        match c.schema.column_index(name) {
            Some(i) if field_of[i].is_some() => {
                c.file_error(1, Some(name.into()), Reason::DuplicateField);
                roles.push(None);
            }
            Some(i) => {
                field_of[i] = Some(f);
                roles.push(Some(i));
            }
            None => {
                if c.schema.extra() == Extra::Error {
                    c.file_error(1, Some(name.into()), Reason::Unknown);
                }
                roles.push(None);
            }
        }
    }
    for (column, f) in columns.iter().zip(&field_of) {
        if f.is_none() && !column.nullable() {
            c.file_error(1, Some(column.name().into()), Reason::Missing);
        }
    }
    if !c.file_errors.is_empty() {
        return;
    }
    let width = record.len();
    let mut index = 0;
    loop {
        let start = rdr.position().byte() as usize;
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return c.file_error(line, None, Reason::Malformed(e.to_string()));
            }
        }
        index += 1;
        let pos = record.position().expect("read records have a position");
        // The reader may place a record at the line end before it (after a CR LF).
        let mut from = (pos.byte() as usize).max(start);
        let mut line = pos.line();
        while let Some(&b) = body.get(from)
            && matches!(b, b'\r' | b'\n')
        {
            line += u64::from(b == b'\n');
            from += 1;
        }
        let end = (rdr.position().byte() as usize).max(from);
        let raw = trim_line_end(&body[from..end]);
        if record.len() != width {
            c.reasons.push((
                None,
                Reason::FieldCount {
                    expected: width,
                    found: record.len(),
                },
            ));
            c.finish(index, line, raw, Vec::new());
            continue;
        }
        let values = csv_fields(c, &record, &field_of);
        c.finish(index, line, raw, values);
    }
}

fn csv_fields(
    c: &mut Collector<'_>,
    record: &csv::ByteRecord,
    field_of: &[Option<usize>],
) -> Vec<Value> {
    let schema = c.schema;
    let columns = schema.columns();
    let mut values = Vec::with_capacity(columns.len());
    let mut reasons = Vec::new();
    for (column, f) in columns.iter().zip(field_of) {
        let value = match f {
            Some(f) => text_field(column, &record[*f], &mut reasons),
            None => null(column, &mut reasons),
        };
        match value {
            Some(v) => values.push(v),
            None => c.reasons.extend(
                reasons
                    .drain(..)
                    .map(|r| (Some(column.name().to_owned()), r)),
            ),
        }
    }
    values
}

fn trim_line_end(mut b: &[u8]) -> &[u8] {
    while let Some(rest) = b.strip_suffix(b"\n").or_else(|| b.strip_suffix(b"\r")) {
        b = rest;
    }
    b
}

/// Writes rejects as JSON lines, one per refused record:
/// `{"errors":[{"field":F|null,"reason":R},...],"line":L,"object":O,"raw":TEXT,"record":N}`,
/// where `raw` is the record's text verbatim (or `raw_base64` when it is not UTF-8).
pub fn write_rejects<'a>(
    object: &str,
    rejects: impl IntoIterator<Item = &'a Rejected>,
    mut out: impl Write,
) -> io::Result<()> {
    use base64::Engine as _;
    let mut buf = Vec::new();
    for reject in rejects {
        let errors: Vec<_> = reject
            .errors
            .iter()
            .map(|e| serde_json::json!({"field": e.field, "reason": e.reason.to_string()}))
            .collect();
        let mut line = serde_json::json!({
            "object": object,
            "record": reject.record,
            "line": reject.line,
            "errors": errors,
        });
        match std::str::from_utf8(&reject.raw) {
            Ok(raw) => line["raw"] = raw.into(),
            Err(_) => {
                line["raw_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(&reject.raw)
                    .into()
            }
        }
        serde_json::to_writer(&mut buf, &line)?;
        buf.push(b'\n');
    }
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `split_fields` (on text serde_json accepted) does what `ObjectVisitor` does: the same
    /// slots and the same reasons, in the same order.
    #[test]
    fn split_fields_agrees_with_the_serde_json_visitor() {
        let schema = RecordSchema::from_toml(
            "name = \"t\"\nkey = [\"a\"]\n[columns.a]\ntype = \"string\"\n\
             [columns.b]\ntype = \"int64\"\nnullable = true\n\
             [columns.c]\ntype = \"decimal\"\nnullable = true\n",
        )
        .expect("schema");
        let texts = [
            r#"{"a": "x", "b": 1, "c": 2.5}"#,
            r#"{"c":2.5,"b":1,"a":"x"}"#,
            r#" { "a" : "x\"}" , "z" : {"a": [1, "]"]}, "b": [ ], "a": 3, "c": null } "#,
            r#"{"a\u0062": 1, "\u0061": "y", "b": -1e3, "q": true, "c": "7"}"#,
            r#"{}"#,
            "{\"a\":\t\"\\\\\",\r\n\"b\":false}",
        ];
        for text in texts {
            serde_json::from_str::<IgnoredAny>(text).expect("well-formed");
            let n = schema.columns().len();
            let (mut fast_slots, mut fast_reasons) = (vec![None; n], Vec::new());
            assert!(split_fields(
                &schema,
                &mut fast_slots,
                &mut fast_reasons,
                text
            ));
            let (mut slots, mut reasons) = (vec![None; n], Vec::new());
            let mut de = serde_json::Deserializer::from_str(text);
            de.deserialize_map(ObjectVisitor {
                schema: &schema,
                slots: &mut slots,
                reasons: &mut reasons,
            })
            .expect("parses");
            assert_eq!(fast_slots, slots, "{text}");
            assert_eq!(fast_reasons, reasons, "{text}");
        }
        // A key whose escape is not a string (a lone surrogate) is left to serde_json.
        let text = r#"{"\ud800": 1}"#;
        let mut slots = vec![None; 3];
        assert!(!split_fields(&schema, &mut slots, &mut Vec::new(), text));
    }
}
