//! Errors of the CDC readers and the merge engine: every one names the object, the line and,
//! where there is one, the column.

use std::fmt;

/// Where in an input something went wrong (compare BurntSushi's `csv::Position`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// The object (file, or object-store key) as the caller named it.
    pub object: String,
    /// 1-based line where the record starts (0 when the object as a whole is meant).
    pub line: u64,
    /// 1-based index of the record (the header, when there is one, is record 1).
    pub record: u64,
    /// Byte offset of the record in the (uncompressed) object.
    pub byte: u64,
    /// The column, when one is to blame.
    pub column: Option<ColumnRef>,
}

/// A column of an input, by 1-based index and (when known) name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    /// 1-based index of the field in the record; 0 when the input has no field positions
    /// (a JSON event: the name is then the field's path, `after.balance`).
    pub index: usize,
    /// The column's name, when the input has one.
    pub name: Option<String>,
}

impl Position {
    /// The object as a whole.
    pub fn object(object: impl Into<String>) -> Position {
        Position {
            object: object.into(),
            ..Position::default()
        }
    }

    /// The same place, narrowed to a column (`index` is 0-based here).
    pub fn with_column(&self, index: usize, name: Option<&str>) -> Position {
        Position {
            column: Some(ColumnRef {
                index: index + 1,
                name: name.map(str::to_owned),
            }),
            ..self.clone()
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object)?;
        if self.line > 0 {
            write!(f, ", line {}", self.line)?;
        }
        match &self.column {
            Some(ColumnRef { index: 0, name }) => {
                write!(f, ", field {}", name.as_deref().unwrap_or("?"))?;
            }
            Some(c) => {
                write!(f, ", column {}", c.index)?;
                if let Some(name) = &c.name {
                    write!(f, " ({name})")?;
                }
            }
            None => {}
        }
        Ok(())
    }
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CdcErrorKind {
    /// Reading (or decompressing) the object failed, or its CSV is malformed.
    Read(String),
    /// The object is empty where a header row was expected.
    NoHeader,
    /// A header names the same column twice.
    DuplicateColumn(String),
    /// A column the table or the options need is not in the input.
    MissingColumn(String),
    /// A change file has a column that is not a table column (nor Op, timestamp or sequence).
    UnknownColumn(String),
    /// A record has a different number of fields than the header.
    ColumnCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in this record.
        found: usize,
    },
    /// The `Op` field is not `I`, `U` or `D`.
    UnknownOp(String),
    /// A key field is null (or the keep-old-value sentinel).
    NullKey,
    /// A key field does not parse as its declared type.
    BadKey {
        /// The declared type.
        ty: &'static str,
        /// The field, lossily decoded.
        value: String,
    },
    /// Bytes that must be text (string keys, header names) are not UTF-8.
    InvalidUtf8,
    /// The sequence field is not 1 to 38 decimal digits.
    BadSequence(String),
    /// The commit-timestamp field is not `yyyy-MM-dd HH:mm:ss[.f...]`.
    BadTimestamp(String),
    /// A sorted input (a base snapshot) is out of key order, or repeats a key.
    Unsorted,
    /// A base snapshot's header is not the table's header.
    HeaderMismatch {
        /// The table's columns, comma-separated.
        expected: String,
        /// The header found.
        found: String,
    },
    /// Writing the output failed.
    Write(String),
    /// A transaction file has a row of a table the caller did not name (`schema.table`).
    UnknownTable(String),
    /// The caller named the same table twice (`schema.table`).
    DuplicateTable(String),
    /// A JSON change event is not of the expected shape (the reason says how).
    BadEvent(String),
    /// A change file's header has a column that is not a table column, placed where a
    /// column added mid-stream would be (after all the table's columns), but the reader was
    /// not asked to accept added columns ([`super::DmsOptions::added_columns`]).
    AddedColumn(String),
    /// A change file's header changes the table in a way other than appending columns: a
    /// table column is missing (dropped or renamed) or out of order while a new column is
    /// present, or a new column comes before a table column. The text says which.
    SchemaChange(String),
}

impl fmt::Display for CdcErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CdcErrorKind::Read(e) => write!(f, "cannot read: {e}"),
            CdcErrorKind::NoHeader => write!(f, "empty input, expected a header row"),
            CdcErrorKind::DuplicateColumn(c) => write!(f, "column {c:?} appears twice"),
            CdcErrorKind::MissingColumn(c) => write!(f, "column {c:?} is missing"),
            CdcErrorKind::UnknownColumn(c) => write!(f, "column {c:?} is not a table column"),
            CdcErrorKind::ColumnCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            CdcErrorKind::UnknownOp(op) => write!(f, "unknown Op {op:?} (expected I, U or D)"),
            CdcErrorKind::NullKey => write!(f, "key field is null"),
            CdcErrorKind::BadKey { ty, value } => write!(f, "key {value:?} is not a valid {ty}"),
            CdcErrorKind::InvalidUtf8 => write!(f, "invalid UTF-8 where text is required"),
            CdcErrorKind::BadSequence(s) => {
                write!(f, "sequence {s:?} is not 1 to 38 decimal digits")
            }
            CdcErrorKind::BadTimestamp(s) => {
                write!(f, "timestamp {s:?} is not yyyy-MM-dd HH:mm:ss[.ffffff]")
            }
            CdcErrorKind::Unsorted => write!(f, "key is not greater than the previous row's key"),
            CdcErrorKind::HeaderMismatch { expected, found } => {
                write!(f, "header is {found:?}, expected {expected:?}")
            }
            CdcErrorKind::Write(e) => write!(f, "cannot write: {e}"),
            CdcErrorKind::UnknownTable(t) => {
                write!(f, "table {t:?} is not one of the tables given")
            }
            CdcErrorKind::DuplicateTable(t) => write!(f, "table {t:?} is given twice"),
            CdcErrorKind::BadEvent(e) => write!(f, "bad change event: {e}"),
            CdcErrorKind::AddedColumn(c) => write!(
                f,
                "column {c:?} was added to the table mid-stream, which is not supported here"
            ),
            CdcErrorKind::SchemaChange(why) => write!(
                f,
                "unsupported schema change: {why} (only columns appended after all the \
                 table's columns are accepted)"
            ),
        }
    }
}

/// A CDC or merge error: what went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdcError(Box<(Position, CdcErrorKind)>);

impl CdcError {
    /// An error at `position`.
    pub fn new(position: Position, kind: CdcErrorKind) -> CdcError {
        CdcError(Box::new((position, kind)))
    }

    /// Where.
    pub fn position(&self) -> &Position {
        &self.0.0
    }

    /// What.
    pub fn kind(&self) -> &CdcErrorKind {
        &self.0.1
    }
}

impl fmt::Display for CdcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position(), self.kind())
    }
}

impl std::error::Error for CdcError {}
