//! AWS DMS transaction files (`CDC_TXN-*.csv`, S3 target with `PreserveTransactions`): the
//! changes of several tables in commit order, one file, split here into one batch per table.

use std::io::Read;
use std::sync::Arc;

use super::dms::{Change, ChangeBatch, Layout, Reject, Role, next_record, or_reject, read_object};
use super::error::{CdcError, CdcErrorKind, Position};
use super::raw::RawReader;
use super::schema::TableSchema;

/// One table a transaction file may hold: its source schema and table names (as DMS writes
/// them in each row) and its columns.
#[derive(Debug, Clone, Copy)]
pub struct TxnTable<'a> {
    /// The source schema name (third field of each row).
    pub schema_name: &'a str,
    /// The source table name (second field of each row).
    pub table_name: &'a str,
    /// The table; each row's values are its columns, in order.
    pub schema: &'a TableSchema,
}

/// How to read transaction files.
#[derive(Debug, Clone)]
pub struct TxnOptions {
    /// The name of the first column in a header row (DMS `AddColumnName`): a first record
    /// whose first field is this is the header and is skipped. Default `Op`.
    pub op_column: String,
    /// The "no supplemental value" sentinel (DMS `CsvNoSupValue`): keep the old value.
    pub no_sup_value: Option<Vec<u8>>,
    /// Reject mode: bad records go to the rejects instead of refusing the object.
    pub reject: bool,
    /// Skip rows of tables not among those given (counted in [`TxnBatches::skipped`])
    /// instead of refusing the object (or, in reject mode, rejecting the row).
    pub skip_unknown_tables: bool,
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions {
            op_column: "Op".into(),
            no_sup_value: None,
            reject: false,
            skip_unknown_tables: false,
        }
    }
}

/// A transaction file split by table.
#[derive(Debug, Clone)]
pub struct TxnBatches {
    /// One batch per table given, in the same order (a table with no rows has an empty
    /// batch). Every batch has the file's object name and SHA-256; a record that names a
    /// table but is bad is in that table's [`ChangeBatch::rejects`].
    pub batches: Vec<ChangeBatch>,
    /// In reject mode, records that name no known table (or have too few fields to name one).
    pub rejects: Vec<Reject>,
    /// Rows of unknown tables skipped with [`TxnOptions::skip_unknown_tables`].
    pub skipped: u64,
}

/// Reads one `CDC_TXN-*.csv` object (plain or gzip). Each record is
/// `Op,table,schema,values...`: the Op (`I`, `U`, `D`), the source table and schema names,
/// then one value per column of that table, in the table's column order. There is no
/// sequence or timestamp column: the order of changes is the file's (the commit order DMS
/// preserves), so the ordering key is (object, line), and file names (`CDC_TXN-` plus the
/// time) order files.
///
/// Quoting, nulls, the no-supplemental-value sentinel, positions and reject mode are those
/// of [`super::read_dms`]. Rows of a table not in `tables` refuse the object unless
/// [`TxnOptions::skip_unknown_tables`].
pub fn read_dms_txn(
    object: &str,
    input: impl Read,
    tables: &[TxnTable<'_>],
    options: &TxnOptions,
) -> Result<TxnBatches, CdcError> {
    for (i, t) in tables.iter().enumerate() {
        if tables[..i]
            .iter()
            .any(|u| (u.schema_name, u.table_name) == (t.schema_name, t.table_name))
        {
            return Err(CdcError::new(
                Position::object(object),
                CdcErrorKind::DuplicateTable(format!("{}.{}", t.schema_name, t.table_name)),
            ));
        }
    }
    let layouts: Vec<Layout> = tables.iter().map(|t| txn_layout(t.schema)).collect();
    let object_name: Arc<str> = object.into();
    let sentinel = options.no_sup_value.as_deref();
    let (per_table, sha256) = read_object(object, input, |decoded| {
        let mut rdr = RawReader::new(decoded);
        let mut per_table: Vec<(Vec<Change>, Vec<_>)> =
            tables.iter().map(|_| (Vec::new(), Vec::new())).collect();
        let mut orphans = Vec::new();
        let mut skipped = 0;
        let mut first = true;
        while next_record(&mut rdr, object)? {
            // A header row (a UTF-8 byte-order mark before it is ignored, as in read_dms).
            if std::mem::take(&mut first) {
                let f = rdr.field(0);
                if f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f) == options.op_column.as_bytes() {
                    continue;
                }
            }
            let pos = || rdr.position(object);
            let table = if rdr.nfields < 3 {
                Err(CdcError::new(
                    pos(),
                    CdcErrorKind::ColumnCount {
                        expected: 3,
                        found: rdr.nfields,
                    },
                ))
            } else {
                let (name, schema) = (rdr.field(1), rdr.field(2));
                match tables.iter().position(|t| {
                    t.table_name.as_bytes() == name && t.schema_name.as_bytes() == schema
                }) {
                    Some(i) => Ok(i),
                    None if options.skip_unknown_tables => {
                        skipped += 1;
                        continue;
                    }
                    None => Err(CdcError::new(
                        pos().with_column(1, Some("table")),
                        CdcErrorKind::UnknownTable(format!(
                            "{}.{}",
                            String::from_utf8_lossy(schema),
                            String::from_utf8_lossy(name)
                        )),
                    )),
                }
            };
            match table {
                Ok(i) => {
                    let (changes, rejects) = &mut per_table[i];
                    let kept =
                        layouts[i].keep(&rdr, &object_name, tables[i].schema, sentinel, changes);
                    or_reject(kept, &rdr, options.reject, rejects)?;
                }
                Err(error) => or_reject(Err(error), &rdr, options.reject, &mut orphans)?,
            }
        }
        Ok((per_table, orphans, skipped))
    })?;
    let (per_table, rejects, skipped) = per_table;
    Ok(TxnBatches {
        batches: per_table
            .into_iter()
            .map(|(changes, rejects)| ChangeBatch {
                object: object_name.clone(),
                sha256,
                changes,
                rejects,
                added_columns: Vec::new(),
            })
            .collect(),
        rejects,
        skipped,
    })
}

/// The record layout of one table's rows: `Op`, `table`, `schema`, then the columns.
fn txn_layout(schema: &TableSchema) -> Layout {
    let mut names = vec!["Op".to_owned(), "table".to_owned(), "schema".to_owned()];
    names.extend(schema.columns().iter().cloned());
    let mut roles = vec![Role::Op, Role::Other, Role::Other];
    roles.extend((0..schema.columns().len()).map(Role::Table));
    Layout::new(names, &roles, schema.columns().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::{KeySpec, Op};

    fn schema(columns: &[&str], key: &str) -> TableSchema {
        TableSchema::new(
            columns.iter().map(|c| c.to_string()).collect(),
            &KeySpec::parse_list(key).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn rows_split_by_table_with_file_lines() {
        let (a, b) = (schema(&["id", "v"], "id:int64"), schema(&["k"], "k"));
        let tables = [
            TxnTable {
                schema_name: "public",
                table_name: "a",
                schema: &a,
            },
            TxnTable {
                schema_name: "public",
                table_name: "b",
                schema: &b,
            },
        ];
        let file = b"\xEF\xBB\xBFOp,table,schema\nI,a,public,1,x\nI,b,public,q\nD,a,public,1,\n";
        let got =
            read_dms_txn("CDC_TXN-1.csv", &file[..], &tables, &TxnOptions::default()).unwrap();
        let lines = |i: usize| -> Vec<(Op, u64)> {
            got.batches[i]
                .changes
                .iter()
                .map(|c| (c.op, c.order.line))
                .collect()
        };
        assert_eq!(lines(0), [(Op::Insert, 2), (Op::Delete, 4)]);
        assert_eq!(lines(1), [(Op::Insert, 3)]);
        assert_eq!(got.batches[0].sha256, got.batches[1].sha256);

        let err = read_dms_txn(
            "t.csv",
            &b"I,c,public,1\n"[..],
            &tables,
            &TxnOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv, line 1, column 2 (table): table \"public.c\" is not one of the tables given"
        );
        let skip = TxnOptions {
            skip_unknown_tables: true,
            ..TxnOptions::default()
        };
        let got = read_dms_txn("t.csv", &b"I,c,public,1\n"[..], &tables, &skip).unwrap();
        assert_eq!((got.skipped, got.batches[0].changes.len()), (1, 0));
    }
}
