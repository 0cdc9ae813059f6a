//! Records into the merge engine: each record an upsert (all cells), ordered by the schema's
//! version field, so replaying a file, or an older version arriving after a newer one,
//! changes nothing.

use std::sync::Arc;

use super::read::Record;
use super::schema::RecordSchema;
use super::value::Value;
use crate::cdc::{Cell, Change, Key, Op, OrderKey};

/// The [`OrderKey::seq`] of a version value: the value as an integer (an int64 as itself; a
/// timestamp as nanoseconds since 1970-01-01T00:00:00Z, within ±2^69) plus 2^100, which maps
/// signed order onto unsigned order exactly and stays below the 38 decimal digits that a
/// delta run's `_seq` holds. `None` for other values.
pub fn version_seq(value: &Value) -> Option<u128> {
    let v: i128 = match value {
        Value::Int64(v) => i128::from(*v),
        Value::Timestamp(t) => t.unix_nanos(),
        _ => return None,
    };
    Some((v + (1 << 100)) as u128)
}

/// One [`Op::Insert`] per record with every cell, for `schema`'s
/// [`table_schema`](RecordSchema::table_schema). The ordering key is
/// `(seq = version_seq(version field), timestamp = None, object, line = record index)`;
/// without a version field `seq` is `None`, so changes order by (object, index) like DMS
/// files without a sequence. Cells hold [`Value::cell_text`], except key timestamps, which
/// hold the UTC instant ([`super::Rfc3339::utc_text`]) so that the snapshot's key text
/// parses back to the same key.
///
/// # Panics
/// If a record was not read with `schema`.
pub fn to_changes(records: &[Record], schema: &RecordSchema, object: &str) -> Vec<Change> {
    let object: Arc<str> = object.into();
    let key_cols = schema.key();
    records
        .iter()
        .map(|record| {
            assert_eq!(
                record.values.len(),
                schema.columns().len(),
                "record read with another schema"
            );
            let key = Key(key_cols
                .iter()
                .map(|&i| {
                    record.values[i]
                        .key_value()
                        .expect("key fields are validated non-null keys")
                })
                .collect());
            let cells = record
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let text = match v {
                        Value::Timestamp(t) if key_cols.contains(&i) => t.utc_text(),
                        other => other.cell_text().into_owned(),
                    };
                    Cell::Value(text.into_bytes().into_boxed_slice())
                })
                .collect();
            Change {
                op: Op::Insert,
                key,
                order: OrderKey {
                    seq: schema
                        .version()
                        .and_then(|i| version_seq(&record.values[i])),
                    timestamp: None,
                    cdc: true,
                    object: object.clone(),
                    line: record.index,
                },
                cells,
            }
        })
        .collect()
}
