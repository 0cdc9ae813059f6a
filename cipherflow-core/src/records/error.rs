//! Errors of record reading: every field error names the object, the record, its line, the
//! field and the reason, and a refused file carries all of them (an HTTP caller gets every
//! problem in one answer, not one per round trip).

use std::fmt;
use std::sync::Arc;

/// Why a record or a file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// The schema file is malformed or inconsistent.
    #[error("record schema: {0}")]
    Schema(String),
    /// The input is larger than [`ReadOptions::max_bytes`](super::ReadOptions::max_bytes)
    /// (an HTTP handler answers 413).
    #[error("{object}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// The object.
        object: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The input could not be read at all (an I/O error).
    #[error("{object}: cannot read: {reason}")]
    Read {
        /// The object.
        object: String,
        /// The I/O error.
        reason: String,
    },
    /// The file was refused: every error found, in input order (an HTTP handler answers 400
    /// with all of them).
    #[error("{object}: refused, {} error(s); first: {}", errors.len(), errors[0])]
    Invalid {
        /// The object.
        object: String,
        /// Every error, never empty.
        errors: Vec<RecordError>,
    },
}

impl RecordsError {
    /// The record errors of a refused file (empty for the other kinds).
    pub fn errors(&self) -> &[RecordError] {
        match self {
            RecordsError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// One problem in one record (or, with `record` 0, in the file as a whole: a JSON syntax
/// error that stops the parse, a CSV header problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The object, as the caller named it.
    pub object: Arc<str>,
    /// 1-based index of the record in the file; 0 for the file as a whole.
    pub record: u64,
    /// 1-based line where the record (or the problem) starts.
    pub line: u64,
    /// The field to blame, when there is one.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: Reason,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object)?;
        if self.record > 0 {
            write!(f, ", record {} (line {})", self.record, self.line)?;
        } else {
            write!(f, ", line {}", self.line)?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field {field:?}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for RecordError {}

/// What is wrong with a field, a record or a file. Values are quoted as they arrived
/// (shortened past 64 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The JSON value is of another type than the column's.
    WrongType {
        /// The column's type.
        expected: &'static str,
        /// What was found (`a number`, `a string`, ...).
        found: &'static str,
    },
    /// A string does not match the column's pattern.
    Pattern {
        /// The value.
        value: String,
        /// The pattern.
        pattern: String,
    },
    /// Less than `min`.
    BelowMin {
        /// The value.
        value: String,
        /// The bound.
        min: String,
    },
    /// Greater than `max`.
    AboveMax {
        /// The value.
        value: String,
        /// The bound.
        max: String,
    },
    /// Not one of `values`.
    NotAllowed {
        /// The value.
        value: String,
        /// The allowed values, comma-separated.
        allowed: String,
    },
    /// Longer than `max_length` characters.
    TooLong {
        /// Its length in characters.
        length: usize,
        /// The limit.
        max_length: usize,
    },
    /// A required field is absent.
    Missing,
    /// A field of a column that is not nullable is null (or, in CSV, empty).
    Null,
    /// A field the schema does not name (with `extra = "error"`).
    Unknown,
    /// Not an RFC 3339 timestamp with offset.
    BadTimestamp(String),
    /// Not a plain decimal number.
    BadDecimal(String),
    /// Not a 64-bit integer.
    BadInt(String),
    /// Not `true` or `false`.
    BadBool(String),
    /// A CSV field that is not UTF-8.
    InvalidUtf8,
    /// The same field twice in one JSON object, or the same column twice in a CSV header.
    DuplicateField,
    /// Another record of the file has the same primary key.
    DuplicateKey {
        /// The other record's index.
        other: u64,
    },
    /// A JSON record that is not an object.
    NotAnObject {
        /// What it is.
        found: &'static str,
    },
    /// A CSV record with another number of fields than the header.
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the record.
        found: usize,
    },
    /// Not well-formed JSON or CSV (the parser's message).
    Malformed(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::WrongType { expected, found } => {
                write!(f, "expected type {expected}, found {found}")
            }
            Reason::Pattern { value, pattern } => {
                write!(f, "{value:?} does not match the pattern {pattern:?}")
            }
            Reason::BelowMin { value, min } => write!(f, "{value} is less than the minimum {min}"),
            Reason::AboveMax { value, max } => {
                write!(f, "{value} is greater than the maximum {max}")
            }
            Reason::NotAllowed { value, allowed } => {
                write!(f, "{value} is not one of the allowed values ({allowed})")
            }
            Reason::TooLong { length, max_length } => {
                write!(f, "{length} characters, more than max_length {max_length}")
            }
            Reason::Missing => f.write_str("required field is missing"),
            Reason::Null => f.write_str("null, but the column is not nullable"),
            Reason::Unknown => f.write_str("unknown field (the schema has extra = \"error\")"),
            Reason::BadTimestamp(v) => write!(
                f,
                "{v:?} is not an RFC 3339 timestamp with offset (like 2026-02-01T10:00:00Z)"
            ),
            Reason::BadDecimal(v) => write!(
                f,
                "{v} is not a decimal number (digits, optional sign and point, no exponent)"
            ),
            Reason::BadInt(v) => write!(f, "{v} is not a 64-bit integer"),
            Reason::BadBool(v) => write!(f, "{v:?} is not a boolean (true or false)"),
            Reason::InvalidUtf8 => f.write_str("not valid UTF-8"),
            Reason::DuplicateField => f.write_str("appears twice"),
            Reason::DuplicateKey { other } => {
                write!(f, "same primary key as record {other}")
            }
            Reason::NotAnObject { found } => {
                write!(f, "a record must be a JSON object, found {found}")
            }
            Reason::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            Reason::Malformed(m) => write!(f, "malformed input: {m}"),
        }
    }
}

/// A value as shown in a message: at most 64 characters.
pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(64) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}
