//! AWS DMS CSV change files (and full-load files) read into a [`ChangeBatch`].

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::error::{CdcError, CdcErrorKind, Position};
use super::order::{OrderKey, parse_commit_timestamp, parse_seq};
use super::raw::RawReader;
use super::schema::{Key, TableSchema};

/// The sequence column DMS adds, used (when present) unless another one is named.
pub const DMS_SEQ_COLUMN: &str = "AR_H_CHANGE_SEQ";

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `I`: the row, in full (also every row of a full-load file without an `Op` column).
    Insert,
    /// `U`: the after image, possibly partial (fields to keep are [`Cell::Keep`]).
    Update,
    /// `D`: the row is gone (only the key is used).
    Delete,
}

/// One field of a change, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cell {
    /// No value in this change (the `CsvNoSupValue` sentinel, or a column absent from the
    /// file): the row keeps its previous value.
    Keep,
    /// The field's bytes, unquoted, exactly as they arrived (a null is the null value's bytes).
    Value(Box<[u8]>),
}

/// One change to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Insert, update or delete.
    pub op: Op,
    /// The row's primary key.
    pub key: Key,
    /// Where the change sits in the order of all changes.
    pub order: OrderKey,
    /// One cell per table column (empty for a delete).
    pub cells: Vec<Cell>,
}

/// A record refused in reject mode, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The error, with its position.
    pub error: CdcError,
    /// The record's fields as read.
    pub fields: Vec<Vec<u8>>,
}

/// The changes of one object, validated.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The object's name (also the tie-breaker in [`OrderKey`]).
    pub object: Arc<str>,
    /// SHA-256 of the object's bytes as stored (compressed, if it was).
    pub sha256: [u8; 32],
    /// The changes, in file order.
    pub changes: Vec<Change>,
    /// In reject mode, the records that were refused.
    pub rejects: Vec<Reject>,
}

/// How to read DMS files.
#[derive(Debug, Clone)]
pub struct DmsOptions {
    /// The column names when the files have no header row (DMS `AddColumnName=false`).
    pub columns: Option<Vec<String>>,
    /// The Op column's name. A file without it is a full load: every row is an insert.
    pub op_column: String,
    /// The sequence column's name (default [`DMS_SEQ_COLUMN`]). Used where present: a file
    /// without it (a full load, say) has no sequence, which orders lowest.
    pub seq_column: Option<String>,
    /// The commit-timestamp column (DMS `TimestampColumnName`), used where present like the
    /// sequence column. A column of the file that is not a table column, not `Op` and not one
    /// of these two is an error, so a misspelt name does not go unnoticed.
    pub timestamp_column: Option<String>,
    /// The "no supplemental value" sentinel (DMS `CsvNoSupValue`): keep the old value.
    pub no_sup_value: Option<Vec<u8>>,
    /// Reject mode: bad records go to [`ChangeBatch::rejects`] instead of refusing the batch.
    pub reject: bool,
}

impl Default for DmsOptions {
    fn default() -> Self {
        DmsOptions {
            columns: None,
            op_column: "Op".into(),
            seq_column: None,
            timestamp_column: None,
            no_sup_value: None,
            reject: false,
        }
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What each input column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Op,
    Seq,
    Timestamp,
    Table(usize),
}

/// Reads one DMS CSV object (plain or gzip, detected by its magic bytes) of `schema`'s table.
///
/// By default the first bad record refuses the whole object; with [`DmsOptions::reject`]
/// bad records are collected with their reasons and the rest is returned. Errors in the
/// object as a whole (unreadable, bad header) always refuse it.
pub fn read_dms(
    object: &str,
    input: impl Read,
    schema: &TableSchema,
    options: &DmsOptions,
) -> Result<ChangeBatch, CdcError> {
    let whole = || Position::object(object);
    let read_err = |pos: Position, e: &dyn std::fmt::Display| {
        CdcError::new(pos, CdcErrorKind::Read(e.to_string()))
    };
    let mut hashing = BufReader::with_capacity(
        1 << 16,
        HashingReader {
            inner: input,
            hasher: Sha256::new(),
        },
    );
    let gzip = hashing
        .fill_buf()
        .map_err(|e| read_err(whole(), &e))?
        .starts_with(&[0x1f, 0x8b]);
    let decoded: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(&mut hashing))
    } else {
        Box::new(&mut hashing)
    };
    let mut rdr = RawReader::new(decoded);
    // A read error (bad gzip data, say) is placed after the last record read.
    let next = |rdr: &mut RawReader<_>| match rdr.next() {
        Ok(more) => Ok(more),
        Err(e) => Err(read_err(rdr.position(object), &e)),
    };

    // The header: from the file, or from the caller.
    let names: Vec<String> = match &options.columns {
        Some(names) => names.clone(),
        None => {
            if !next(&mut rdr)? {
                return Err(CdcError::new(whole(), CdcErrorKind::NoHeader));
            }
            header_names(
                (0..rdr.nfields).map(|i| rdr.field(i)),
                &rdr.position(object),
            )?
        }
    };
    let header_pos = if options.columns.is_some() {
        whole()
    } else {
        rdr.position(object)
    };
    let roles = assign_roles(&names, schema, options).map_err(|(i, kind)| {
        CdcError::new(
            match i {
                Some(i) => header_pos.with_column(i, Some(&names[i])),
                None => header_pos.clone(),
            },
            kind,
        )
    })?;
    let mut field_of = vec![None; schema.columns().len()];
    let mut op_field = None;
    let mut seq_field = None;
    let mut ts_field = None;
    for (f, role) in roles.iter().enumerate() {
        match role {
            Role::Op => op_field = Some(f),
            Role::Seq => seq_field = Some(f),
            Role::Timestamp => ts_field = Some(f),
            Role::Table(c) => field_of[*c] = Some(f),
        }
    }

    let object_name: Arc<str> = object.into();
    let mut changes = Vec::new();
    let mut rejects = Vec::new();
    let sentinel = options.no_sup_value.as_deref();
    while next(&mut rdr)? {
        let pos = || rdr.position(object);
        let line = rdr.line;
        let record = |f: usize| rdr.field(f);
        let parsed = (|| {
            if rdr.nfields != names.len() {
                return Err(CdcError::new(
                    pos(),
                    CdcErrorKind::ColumnCount {
                        expected: names.len(),
                        found: rdr.nfields,
                    },
                ));
            }
            let at = |f: usize, kind| CdcError::new(pos().with_column(f, Some(&names[f])), kind);
            let op = match op_field {
                None => Op::Insert,
                Some(f) => match record(f) {
                    b"I" => Op::Insert,
                    b"U" => Op::Update,
                    b"D" => Op::Delete,
                    other => {
                        let op = String::from_utf8_lossy(other).into_owned();
                        return Err(at(f, CdcErrorKind::UnknownOp(op)));
                    }
                },
            };
            let is_null = |b: &[u8]| b == schema.null() || Some(b) == sentinel;
            let seq = match seq_field {
                Some(f) if !is_null(record(f)) => parse_seq(record(f)).map_err(|k| at(f, k))?,
                _ => None,
            };
            let timestamp = match ts_field {
                Some(f) if !is_null(record(f)) => {
                    parse_commit_timestamp(record(f)).map_err(|k| at(f, k))?
                }
                _ => None,
            };
            let key = schema
                .parse_key(|c| field_of[c].map(record).filter(|b| Some(*b) != sentinel))
                .map_err(|(c, kind)| match field_of[c] {
                    Some(f) => at(f, kind),
                    None => CdcError::new(pos(), kind),
                })?;
            let cells = if op == Op::Delete {
                Vec::new()
            } else {
                field_of
                    .iter()
                    .map(|f| match f {
                        Some(f) if Some(record(*f)) != sentinel => Cell::Value(record(*f).into()),
                        _ => Cell::Keep,
                    })
                    .collect()
            };
            Ok(Change {
                op,
                key,
                order: OrderKey {
                    seq,
                    timestamp,
                    cdc: op_field.is_some(),
                    object: object_name.clone(),
                    line,
                },
                cells,
            })
        })();
        match parsed {
            Ok(change) => changes.push(change),
            Err(error) if options.reject => rejects.push(Reject {
                error,
                fields: (0..rdr.nfields).map(|i| rdr.field(i).to_vec()).collect(),
            }),
            Err(error) => return Err(error),
        }
    }
    drop(rdr);
    // Hash every stored byte, including any the decoder did not need.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| read_err(whole(), &e))?;
    let sha256 = hashing.into_inner().hasher.finalize().into();
    Ok(ChangeBatch {
        object: object_name,
        sha256,
        changes,
        rejects,
    })
}

fn assign_roles(
    names: &[String],
    schema: &TableSchema,
    options: &DmsOptions,
) -> Result<Vec<Role>, (Option<usize>, CdcErrorKind)> {
    let mut roles = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err((Some(i), CdcErrorKind::DuplicateColumn(name.clone())));
        }
        let seq_name = options.seq_column.as_deref().unwrap_or(DMS_SEQ_COLUMN);
        let role = if *name == options.op_column {
            Role::Op
        } else if name == seq_name {
            Role::Seq
        } else if options.timestamp_column.as_ref() == Some(name) {
            Role::Timestamp
        } else if let Some(c) = schema.column_index(name) {
            Role::Table(c)
        } else {
            return Err((Some(i), CdcErrorKind::UnknownColumn(name.clone())));
        };
        roles.push(role);
    }
    for &(c, _) in schema.key() {
        if !roles.contains(&Role::Table(c)) {
            return Err((
                None,
                CdcErrorKind::MissingColumn(schema.columns()[c].clone()),
            ));
        }
    }
    Ok(roles)
}

/// Reads the header row of a CSV object (a base snapshot, say): the column names, which
/// must be UTF-8. A leading UTF-8 byte-order mark is ignored.
pub fn read_csv_header(object: &str, input: impl Read) -> Result<Vec<String>, CdcError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut header = csv::ByteRecord::new();
    let pos = Position {
        line: 1,
        record: 1,
        ..Position::object(object)
    };
    let found = rdr
        .read_byte_record(&mut header)
        .map_err(|e| CdcError::new(pos.clone(), CdcErrorKind::Read(e.to_string())))?;
    if !found {
        return Err(CdcError::new(
            Position::object(object),
            CdcErrorKind::NoHeader,
        ));
    }
    header_names(header.iter(), &pos)
}

/// A header record's names: UTF-8, with a leading byte-order mark ignored.
fn header_names<'a>(
    header: impl Iterator<Item = &'a [u8]>,
    pos: &Position,
) -> Result<Vec<String>, CdcError> {
    header
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 {
                f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
            } else {
                f
            };
            String::from_utf8(f.to_vec())
                .map_err(|_| CdcError::new(pos.with_column(i, None), CdcErrorKind::InvalidUtf8))
        })
        .collect()
}
