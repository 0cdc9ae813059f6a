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
    /// Columns this object adds to the table (schema change mid-stream, in the order they
    /// appear): each change's cells are the table's columns, then these. Empty unless
    /// [`DmsOptions::added_columns`] is set. Apply with [`crate::merge::MergeState::apply`],
    /// which appends them to the table.
    pub added_columns: Vec<String>,
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
    /// Accept columns added to the table mid-stream: names that are not table columns,
    /// after all the table's columns (which then must all be present, in order). They are
    /// returned in [`ChangeBatch::added_columns`]. Without a header ([`DmsOptions::columns`]),
    /// an object's records may then also lack trailing non-key columns (a file written
    /// before they were added): the first record fixes the object's field count, and the
    /// missing columns are [`Cell::Keep`]. Off by default: such a column is then an
    /// [`CdcErrorKind::AddedColumn`] error.
    pub added_columns: bool,
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
            added_columns: false,
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
pub(crate) enum Role {
    /// The Op column.
    Op,
    /// The sequence column.
    Seq,
    /// The commit-timestamp column.
    Timestamp,
    /// A table column, by index.
    Table(usize),
    /// A column added mid-stream, by index among the object's added columns.
    Added(usize),
    /// A field the change does not use (the table and schema names of a transaction file).
    Other,
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
    let read = read_dms_into::<Vec<Change>>(object, input, schema, options)?;
    Ok(ChangeBatch {
        object: object.into(),
        sha256: read.sha256,
        changes: read.changes,
        rejects: read.rejects,
        added_columns: read.added_columns,
    })
}

/// Where a reader keeps the changes it validates: as [`Change`]s, each owning its cells, or
/// packed into one buffer (`packed::PackedChanges`).
pub(crate) trait ChangeSink: Default {
    /// Keeps a validated change; `cells` gives each column's value (`None`: keep the old one).
    /// A delete's cells are not used.
    fn keep<'r>(&mut self, head: ChangeHead, cells: impl Iterator<Item = Option<&'r [u8]>>);
}

impl ChangeSink for Vec<Change> {
    fn keep<'r>(&mut self, head: ChangeHead, cells: impl Iterator<Item = Option<&'r [u8]>>) {
        let cells = if head.op == Op::Delete {
            Vec::new()
        } else {
            cells
                .map(|cell| cell.map_or(Cell::Keep, |bytes| Cell::Value(bytes.into())))
                .collect()
        };
        self.push(Change {
            op: head.op,
            key: head.key,
            order: head.order,
            cells,
        });
    }
}

/// A change without its cells: what the reader validates before the sink stores the cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeHead {
    pub(crate) op: Op,
    pub(crate) key: Key,
    pub(crate) order: OrderKey,
}

/// What [`read_dms_into`] read from one object.
pub(crate) struct DmsRead<S> {
    pub(crate) sha256: [u8; 32],
    pub(crate) changes: S,
    pub(crate) rejects: Vec<Reject>,
    pub(crate) added_columns: Vec<String>,
    /// The cells of each change: the table's columns, then the added ones.
    pub(crate) width: usize,
}

/// [`read_dms`], keeping the changes in any [`ChangeSink`].
pub(crate) fn read_dms_into<S: ChangeSink>(
    object: &str,
    input: impl Read,
    schema: &TableSchema,
    options: &DmsOptions,
) -> Result<DmsRead<S>, CdcError> {
    let (read, sha256) = read_object(object, input, |decoded| {
        let mut rdr = RawReader::new(decoded);
        // The header: from the file, or from the caller.
        let names: Vec<String> = match &options.columns {
            Some(names) => names.clone(),
            None => {
                if !next_record(&mut rdr, object)? {
                    return Err(CdcError::new(
                        Position::object(object),
                        CdcErrorKind::NoHeader,
                    ));
                }
                header_names(
                    (0..rdr.nfields).map(|i| rdr.field(i)),
                    &rdr.position(object),
                )?
            }
        };
        let header_pos = if options.columns.is_some() {
            Position::object(object)
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
        let added: Vec<String> = roles
            .iter()
            .zip(&names)
            .filter(|(r, _)| matches!(r, Role::Added(_)))
            .map(|(_, n)| n.clone())
            .collect();
        let width = schema.columns().len() + added.len();
        let mut layout = Layout::new(names, &roles, width);
        if options.columns.is_some() && options.added_columns {
            layout.allow_short_records(&roles, schema);
        }
        let object_name: Arc<str> = object.into();
        let sentinel = options.no_sup_value.as_deref();
        let mut changes = S::default();
        let mut rejects = Vec::new();
        let mut fields = None;
        while next_record(&mut rdr, object)? {
            // Short records (header-less, older than an added column): one width per object.
            let fields = *fields.get_or_insert(rdr.nfields);
            let kept = if rdr.nfields != fields && layout.min_fields < layout.names.len() {
                Err(CdcError::new(
                    rdr.position(object),
                    CdcErrorKind::ColumnCount {
                        expected: fields,
                        found: rdr.nfields,
                    },
                ))
            } else {
                layout.keep(&rdr, &object_name, schema, sentinel, &mut changes)
            };
            or_reject(kept, &rdr, options.reject, &mut rejects)?;
        }
        Ok((changes, rejects, added, width))
    })?;
    let (changes, rejects, added_columns, width) = read;
    Ok(DmsRead {
        sha256,
        changes,
        rejects,
        added_columns,
        width,
    })
}

/// Opens an object for a reader: gunzips it when it starts with the gzip magic, hands the
/// decoded bytes to `body`, and returns what `body` returns with the SHA-256 of every stored
/// byte (including any the decoder did not need), so every reader hashes the same way.
pub(crate) fn read_object<T>(
    object: &str,
    input: impl Read,
    body: impl FnOnce(&mut dyn Read) -> Result<T, CdcError>,
) -> Result<(T, [u8; 32]), CdcError> {
    let whole = || Position::object(object);
    let mut hashing = BufReader::with_capacity(
        1 << 16,
        HashingReader {
            inner: input,
            hasher: Sha256::new(),
        },
    );
    let gzip = hashing
        .fill_buf()
        .map_err(|e| read_error(whole(), &e))?
        .starts_with(&[0x1f, 0x8b]);
    let out = if gzip {
        body(&mut flate2::bufread::MultiGzDecoder::new(&mut hashing))?
    } else {
        body(&mut hashing)?
    };
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| read_error(whole(), &e))?;
    Ok((out, hashing.into_inner().hasher.finalize().into()))
}

/// An unreadable (or undecompressable, or malformed) input at `pos`.
pub(crate) fn read_error(pos: Position, e: &dyn std::fmt::Display) -> CdcError {
    CdcError::new(pos, CdcErrorKind::Read(e.to_string()))
}

/// The next record; a read error (bad gzip data, say) is placed after the last record read.
pub(crate) fn next_record<R: Read>(rdr: &mut RawReader<R>, object: &str) -> Result<bool, CdcError> {
    rdr.next().map_err(|e| read_error(rdr.position(object), &e))
}

/// Files the result of keeping a record: nothing more to do, a reject (in reject mode), or
/// the error that refuses the object.
pub(crate) fn or_reject<R: Read>(
    kept: Result<(), CdcError>,
    rdr: &RawReader<R>,
    reject: bool,
    rejects: &mut Vec<Reject>,
) -> Result<(), CdcError> {
    match kept {
        Ok(()) => Ok(()),
        Err(error) if reject => {
            rejects.push(Reject {
                error,
                fields: (0..rdr.nfields).map(|i| rdr.field(i).to_vec()).collect(),
            });
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Where a record's fields go: the record's column names, and which field holds the Op, the
/// sequence, the timestamp and each table column. Shared by the per-table files and the
/// transaction files, whose records are laid out differently.
pub(crate) struct Layout {
    names: Vec<String>,
    /// The fewest fields a record may have (fewer than `names` only for header-less objects
    /// older than an added column; the missing fields are kept).
    min_fields: usize,
    field_of: Vec<Option<usize>>,
    op_field: Option<usize>,
    seq_field: Option<usize>,
    ts_field: Option<usize>,
}

impl Layout {
    /// `roles[f]` is what field `f` (named `names[f]`) holds; `columns` is the width of the
    /// changes: the table's columns, then the object's added columns.
    pub(crate) fn new(names: Vec<String>, roles: &[Role], columns: usize) -> Layout {
        let table = columns - roles.iter().filter(|r| matches!(r, Role::Added(_))).count();
        let mut layout = Layout {
            min_fields: names.len(),
            names,
            field_of: vec![None; columns],
            op_field: None,
            seq_field: None,
            ts_field: None,
        };
        for (f, role) in roles.iter().enumerate() {
            match role {
                Role::Op => layout.op_field = Some(f),
                Role::Seq => layout.seq_field = Some(f),
                Role::Timestamp => layout.ts_field = Some(f),
                Role::Table(c) => layout.field_of[*c] = Some(f),
                Role::Added(k) => layout.field_of[table + k] = Some(f),
                Role::Other => {}
            }
        }
        layout
    }

    /// Lets records end early: trailing fields that are non-key table columns or added
    /// columns may be missing (and are then kept).
    fn allow_short_records(&mut self, roles: &[Role], schema: &TableSchema) {
        let droppable = |r: &Role| match r {
            Role::Added(_) => true,
            Role::Table(c) => !schema.key().iter().any(|(k, _)| k == c),
            _ => false,
        };
        self.min_fields = roles
            .iter()
            .rposition(|r| !droppable(r))
            .map_or(0, |f| f + 1);
    }

    /// Validates the reader's current record and keeps its change in `sink` (`sentinel`:
    /// DMS `CsvNoSupValue`).
    pub(crate) fn keep<R: Read>(
        &self,
        rdr: &RawReader<R>,
        object_name: &Arc<str>,
        schema: &TableSchema,
        sentinel: Option<&[u8]>,
        sink: &mut impl ChangeSink,
    ) -> Result<(), CdcError> {
        let head = self.head(rdr, object_name, schema, sentinel)?;
        let record = |f: usize| rdr.field(f);
        let cells = self.field_of.iter().map(|f| match f {
            Some(f) if *f < rdr.nfields && Some(record(*f)) != sentinel => Some(record(*f)),
            _ => None,
        });
        sink.keep(head, cells);
        Ok(())
    }

    /// The reader's current record's op, key and ordering key, validated.
    fn head<R: Read>(
        &self,
        rdr: &RawReader<R>,
        object_name: &Arc<str>,
        schema: &TableSchema,
        sentinel: Option<&[u8]>,
    ) -> Result<ChangeHead, CdcError> {
        let names = &self.names;
        let object: &str = object_name;
        let pos = || rdr.position(object);
        let record = |f: usize| rdr.field(f);
        if rdr.nfields < self.min_fields || rdr.nfields > names.len() {
            return Err(CdcError::new(
                pos(),
                CdcErrorKind::ColumnCount {
                    expected: names.len(),
                    found: rdr.nfields,
                },
            ));
        }
        let at = |f: usize, kind| CdcError::new(pos().with_column(f, Some(&names[f])), kind);
        let op = match self.op_field {
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
        let seq = match self.seq_field {
            Some(f) if !is_null(record(f)) => parse_seq(record(f)).map_err(|k| at(f, k))?,
            _ => None,
        };
        let timestamp = match self.ts_field {
            Some(f) if !is_null(record(f)) => {
                parse_commit_timestamp(record(f)).map_err(|k| at(f, k))?
            }
            _ => None,
        };
        let field_of = &self.field_of;
        let key = schema
            .parse_key(|c| field_of[c].map(record).filter(|b| Some(*b) != sentinel))
            .map_err(|(c, kind)| match field_of[c] {
                Some(f) => at(f, kind),
                None => CdcError::new(pos(), kind),
            })?;
        Ok(ChangeHead {
            op,
            key,
            order: OrderKey {
                seq,
                timestamp,
                cdc: self.op_field.is_some(),
                object: object_name.clone(),
                line: rdr.line,
            },
        })
    }
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
            Role::Added(roles.iter().filter(|r| matches!(r, Role::Added(_))).count())
        };
        roles.push(role);
    }
    check_added_columns(names, &roles, schema, options.added_columns)?;
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

/// Checks the columns that are not the table's (schema change mid-stream): accepted only
/// when every table column comes first, in the table's order, and `accept` is set. Without
/// `accept`, a misplaced unknown name is an [`CdcErrorKind::UnknownColumn`] (a misspelling,
/// most likely) and a well-placed one an [`CdcErrorKind::AddedColumn`].
fn check_added_columns(
    names: &[String],
    roles: &[Role],
    schema: &TableSchema,
    accept: bool,
) -> Result<(), (Option<usize>, CdcErrorKind)> {
    let Some(first_new) = roles.iter().position(|r| matches!(r, Role::Added(_))) else {
        return Ok(());
    };
    let table: Vec<(usize, usize)> = roles
        .iter()
        .enumerate()
        .filter_map(|(f, r)| match r {
            Role::Table(c) => Some((f, *c)),
            _ => None,
        })
        .collect();
    let columns = schema.columns();
    let new = &names[first_new];
    let problem = if let Some(&(f, c)) = table.iter().find(|(f, _)| *f > first_new) {
        Some((
            f,
            format!(
                "table column {:?} comes after the new column {new:?}",
                columns[c]
            ),
        ))
    } else if let Some((pos, &(f, c))) = table.iter().enumerate().find(|(i, (_, c))| i != c) {
        Some(
            if pos < columns.len() && table.iter().any(|&(_, d)| d == pos) {
                (f, format!("table column {:?} is out of order", columns[c]))
            } else {
                (
                    first_new,
                    format!(
                        "new column {new:?} while table column {:?} is missing (dropped or \
                     renamed?)",
                        columns[pos]
                    ),
                )
            },
        )
    } else if table.len() < columns.len() {
        Some((
            first_new,
            format!(
                "new column {new:?} while table column {:?} is missing (dropped or renamed?)",
                columns[table.len()]
            ),
        ))
    } else {
        None
    };
    match problem {
        None if accept => Ok(()),
        None => Err((Some(first_new), CdcErrorKind::AddedColumn(new.clone()))),
        Some((f, why)) if accept => Err((Some(f), CdcErrorKind::SchemaChange(why))),
        Some(_) => Err((Some(first_new), CdcErrorKind::UnknownColumn(new.clone()))),
    }
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
