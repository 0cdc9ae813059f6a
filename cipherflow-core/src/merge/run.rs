//! Delta runs: changes to one key partition, stored as CSV so a batch can be written without
//! reading the table (merge-on-read), and a partition compacted into a run of the same form.
//!
//! A run is CSV with the header `_op,_seq,_ts,_cdc,_object,_line,_keep,` then the table's columns;
//! one record per change, sorted by (key, ordering key, record bytes), so the same changes
//! always give the same bytes. `_op` is `I`, `U` or `D`; `_seq`, `_ts`, `_cdc` (`1` for a
//! change, `0` for a full-load row), `_object` and `_line` are the change's [`OrderKey`]
//! (empty `_seq`/`_ts` when absent); `_keep` lists, separated by
//! `;`, the column indices whose cell is [`Cell::Keep`]. Key columns always hold text that
//! parses to the row's key (for a delete or a kept key cell: the key's normal form); other
//! kept columns and a delete's non-key columns are empty. Values are the exact bytes that
//! arrived. `docs/MERGE.md` states the format with the partition function.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{MergeState, RowState, encode_record};
use crate::cdc::{
    CdcError, CdcErrorKind, Cell, Change, Key, KeyValue, Op, OrderKey, Position, TableSchema,
    parse_commit_timestamp, parse_seq,
};

/// The columns a run has before the table's own.
pub const RUN_COLUMNS: [&str; 7] = ["_op", "_seq", "_ts", "_cdc", "_object", "_line", "_keep"];

/// The partition of `key` among `partitions`: the first 8 bytes of
/// `SHA-256(for each key field: its normal text, then 0x00)`, big-endian, modulo `partitions`.
/// Stable across versions, platforms and the bytes a key happened to arrive in.
pub fn partition_of(key: &Key, partitions: u32) -> u32 {
    let mut h = Sha256::new();
    for value in &key.0 {
        h.update(value.to_string().as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % u64::from(partitions.max(1))) as u32
}

/// Encodes `changes` (any order; they are sorted here) as a run of `schema`'s table.
///
/// # Panics
/// If an upsert has a different number of cells than the table has columns.
pub fn encode_run(schema: &TableSchema, changes: &[Change]) -> Vec<u8> {
    let columns = schema.columns().len();
    let mut rows: Vec<(&Key, &OrderKey, Vec<u8>)> = changes
        .iter()
        .map(|change| {
            let mut row = Vec::new();
            encode_change(schema, change, columns, &mut row);
            (&change.key, &change.order, row)
        })
        .collect();
    rows.sort_unstable();
    rows.dedup_by(|a, b| a.2 == b.2);
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.2.len()).sum::<usize>() + 64);
    encode_record(
        RUN_COLUMNS
            .iter()
            .map(|c| c.as_bytes())
            .chain(schema.columns().iter().map(|c| c.as_bytes())),
        &mut out,
    );
    for (_, _, row) in rows {
        out.extend_from_slice(&row);
    }
    out
}

fn encode_change(schema: &TableSchema, change: &Change, columns: usize, out: &mut Vec<u8>) {
    let key_text: Vec<(usize, String)> = schema
        .key()
        .iter()
        .zip(&change.key.0)
        .map(|(&(i, _), v)| (i, v.to_string()))
        .collect();
    let key_field = |i: usize| key_text.iter().find(|(k, _)| *k == i).map(|(_, t)| t);
    let mut keep = String::new();
    let mut fields: Vec<&[u8]> = Vec::with_capacity(columns);
    for i in 0..columns {
        let cell = match change.op {
            Op::Delete => None,
            _ => match &change.cells[i] {
                Cell::Value(bytes) => Some(&bytes[..]),
                Cell::Keep => {
                    if !keep.is_empty() {
                        keep.push(';');
                    }
                    keep.push_str(&i.to_string());
                    None
                }
            },
        };
        fields.push(cell.unwrap_or_else(|| key_field(i).map_or(&b""[..], |t| t.as_bytes())));
    }
    let op: &[u8] = match change.op {
        Op::Insert => b"I",
        Op::Update => b"U",
        Op::Delete => b"D",
    };
    let order = &change.order;
    let seq = order.seq.map(|s| s.to_string()).unwrap_or_default();
    let ts = order.timestamp.map(|t| t.to_string()).unwrap_or_default();
    let line = order.line.to_string();
    encode_record(
        [
            op,
            seq.as_bytes(),
            ts.as_bytes(),
            if order.cdc { b"1" } else { b"0" },
            order.object.as_bytes(),
            line.as_bytes(),
            keep.as_bytes(),
        ]
        .into_iter()
        .chain(fields),
        out,
    );
}

/// Decodes a run of `schema`'s table; errors name `object` and the line.
///
/// A run written before columns were added to the table (its header holds a prefix of the
/// table's columns, key columns included) is widened: its upserts keep the columns it does
/// not have ([`Cell::Keep`]), as a change file without them does (`docs/MERGE.md` §2.5).
pub fn decode_run(
    object: &str,
    schema: &TableSchema,
    bytes: &[u8],
) -> Result<Vec<Change>, CdcError> {
    let columns = schema.columns().len();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let at = |line: u64| {
        let mut p = Position::object(object);
        p.line = line;
        p
    };
    let err = |line: u64, kind: CdcErrorKind| CdcError::new(at(line), kind);
    let read = |rdr: &mut csv::Reader<&[u8]>, record: &mut csv::ByteRecord| {
        rdr.read_byte_record(record).map_err(|e| {
            err(
                record.position().map_or(0, |p| p.line()),
                CdcErrorKind::Read(e.to_string()),
            )
        })
    };
    if !read(&mut rdr, &mut record)? {
        return Err(err(1, CdcErrorKind::NoHeader));
    }
    let expected: Vec<&[u8]> = RUN_COLUMNS
        .iter()
        .map(|c| c.as_bytes())
        .chain(schema.columns().iter().map(|c| c.as_bytes()))
        .collect();
    // The run's own columns: all of the table's, or (an older run) a prefix of them that
    // holds every key column.
    let held = record.len().saturating_sub(RUN_COLUMNS.len());
    let widened = held < columns
        && schema.key().iter().all(|&(i, _)| i < held)
        && record
            .iter()
            .eq(expected[..RUN_COLUMNS.len() + held].iter().copied());
    if !widened && record.iter().ne(expected.iter().copied()) {
        let text = |v: Vec<&[u8]>| {
            v.iter()
                .map(|b| String::from_utf8_lossy(b))
                .collect::<Vec<_>>()
                .join(",")
        };
        return Err(err(
            1,
            CdcErrorKind::HeaderMismatch {
                expected: text(expected),
                found: text(record.iter().collect()),
            },
        ));
    }
    let width = record.len();
    let mut changes = Vec::new();
    let mut last_object: Option<Arc<str>> = None;
    while read(&mut rdr, &mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != width {
            return Err(err(
                line,
                CdcErrorKind::ColumnCount {
                    expected: width,
                    found: record.len(),
                },
            ));
        }
        let f = |i: usize| &record[i];
        let op = match f(0) {
            b"I" => Op::Insert,
            b"U" => Op::Update,
            b"D" => Op::Delete,
            other => {
                return Err(err(
                    line,
                    CdcErrorKind::UnknownOp(String::from_utf8_lossy(other).into_owned()),
                ));
            }
        };
        let bad = |what: &str, value: &[u8]| {
            let value = String::from_utf8_lossy(value);
            err(
                line,
                CdcErrorKind::Read(format!("bad {what} field {value:?}")),
            )
        };
        let seq = parse_seq(f(1)).map_err(|k| err(line, k))?;
        let timestamp = parse_commit_timestamp(f(2)).map_err(|k| err(line, k))?;
        let cdc = match f(3) {
            b"1" => true,
            b"0" => false,
            other => return Err(bad("_cdc", other)),
        };
        let source = std::str::from_utf8(f(4)).map_err(|_| err(line, CdcErrorKind::InvalidUtf8))?;
        let object_name = match &last_object {
            Some(o) if &**o == source => o.clone(),
            _ => {
                let o: Arc<str> = source.into();
                last_object = Some(o.clone());
                o
            }
        };

        let source_line = std::str::from_utf8(f(5))
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("_line", f(5)))?;
        let mut keep = vec![false; columns];
        keep[held..].fill(true);
        if !f(6).is_empty() {
            for part in f(6).split(|&b| b == b';') {
                let i = std::str::from_utf8(part)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|&i| i < held)
                    .ok_or_else(|| bad("_keep", f(6)))?;
                keep[i] = true;
            }
        }
        let row = |i: usize| &record[RUN_COLUMNS.len() + i];
        let key = schema.parse_key(|i| Some(row(i))).map_err(|(i, kind)| {
            CdcError::new(
                at(line).with_column(RUN_COLUMNS.len() + i, Some(&schema.columns()[i])),
                kind,
            )
        })?;
        let cells = match op {
            Op::Delete => Vec::new(),
            _ => (0..columns)
                .map(|i| {
                    if keep[i] {
                        Cell::Keep
                    } else {
                        Cell::Value(row(i).into())
                    }
                })
                .collect(),
        };
        changes.push(Change {
            op,
            key,
            order: OrderKey {
                seq,
                timestamp,
                cdc,
                object: object_name,
                line: source_line,
            },
            cells,
        });
    }
    Ok(changes)
}

impl RowState {
    /// The fewest changes that rebuild this row's state when applied to an empty one: one
    /// per distinct ordering key among live cells (cells older than the latest delete can
    /// never show again and are dropped), the latest delete, and the latest change if none
    /// of those carries it. Applying them gives a state that resolves exactly as this one.
    fn to_changes(&self, schema: &TableSchema, key: &Key, out: &mut Vec<Change>) {
        let columns = schema.columns().len();
        let live = |order: &OrderKey| self.deleted.as_ref().is_none_or(|d| order > &**d);
        let mut orders: Vec<&Arc<OrderKey>> = self
            .cells
            .iter()
            .flatten()
            .map(|(o, _)| o)
            .filter(|o| live(o))
            .collect();
        orders.sort_unstable();
        orders.dedup();
        let mut last_emitted = false;
        for order in orders {
            let cells = self
                .cells
                .iter()
                .map(|c| match c {
                    Some((o, bytes)) if o == order => Cell::Value(bytes.clone()),
                    _ => Cell::Keep,
                })
                .collect();
            last_emitted |= **order == *self.last.0 && !self.last.1;
            out.push(Change {
                op: Op::Update,
                key: key.clone(),
                order: (**order).clone(),
                cells,
            });
        }
        if let Some(deleted) = &self.deleted {
            last_emitted |= self.last.1;
            out.push(Change {
                op: Op::Delete,
                key: key.clone(),
                order: (**deleted).clone(),
                cells: Vec::new(),
            });
        }
        if !last_emitted {
            out.push(Change {
                op: Op::Update,
                key: key.clone(),
                order: (*self.last.0).clone(),
                cells: vec![Cell::Keep; columns],
            });
        }
    }
}

impl MergeState {
    /// The state as changes (see [`encode_run`]): what a compacted partition stores. Applying
    /// them to an empty state of the same table writes the same snapshot as this state.
    pub fn to_changes(&self) -> Vec<Change> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (key, row) in &self.rows {
            row.to_changes(&self.schema, key, &mut out);
        }
        out
    }
}

/// The text of a key, for messages: its fields' normal text joined by `,`.
pub fn key_text(key: &Key) -> String {
    key.0
        .iter()
        .map(KeyValue::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::{DmsOptions, KeySpec, read_dms};

    fn schema() -> TableSchema {
        TableSchema::new(
            vec!["id".into(), "amount".into(), "note".into()],
            &KeySpec::parse_list("id:decimal").unwrap(),
        )
        .unwrap()
    }

    fn snapshot(state: &MergeState) -> Vec<u8> {
        let mut out = Vec::new();
        state.write_snapshot(&mut out).unwrap();
        out
    }

    #[test]
    fn runs_round_trip_and_rebuild_the_state() {
        let schema = schema();
        let options = DmsOptions {
            no_sup_value: Some(b"~".to_vec()),
            ..DmsOptions::default()
        };
        let file = b"Op,id,amount,note\nI,7308.00,1,\"a,\"\"b\"\"\nc\"\nU,7308,~,x\nI,2,5,y\nD,2,,\nI,2,6,~\nU,3,~,~\n";
        let batch = read_dms("20141029-1134010000.csv", &file[..], &schema, &options).unwrap();
        let run = encode_run(&schema, &batch.changes);
        let decoded = decode_run("run.csv", &schema, &run).unwrap();
        assert_eq!(encode_run(&schema, &decoded), run, "encoding is canonical");
        let mut direct = MergeState::new(schema.clone());
        direct.apply(&batch);
        let mut from_run = MergeState::new(schema.clone());
        decoded.iter().for_each(|c| from_run.apply_change(c));
        assert_eq!(snapshot(&direct), snapshot(&from_run));
        // Compaction: the state's own changes rebuild it.
        let compact = direct.to_changes();
        let mut rebuilt = MergeState::new(schema.clone());
        compact.iter().for_each(|c| rebuilt.apply_change(c));
        assert_eq!(snapshot(&rebuilt), snapshot(&direct));
        // A later older insert still cannot resurrect key 2 in the compacted state.
        let late = b"Op,id,amount,note\nI,2,1,late\n";
        let late = read_dms("00000000-0000000000.csv", &late[..], &schema, &options).unwrap();
        direct.apply(&late);
        late.changes.iter().for_each(|c| rebuilt.apply_change(c));
        assert_eq!(snapshot(&rebuilt), snapshot(&direct));
        assert_eq!(snapshot(&direct), b"id,amount,note\n2,6,\n3,,\n7308,1,x\n");
    }

    #[test]
    fn bad_runs_name_the_line() {
        let schema = schema();
        let header = "_op,_seq,_ts,_cdc,_object,_line,_keep,id,amount,note\n";
        for (body, line) in [
            ("X,,,1,o,1,,1,2,3\n", 2),
            ("I,,,1,o,1,,1,2\n", 2),
            ("I,,,1,o,1,,1,2,3\nI,,,1,o,x,,1,2,3\n", 3),
            ("I,,,1,o,1,9,1,2,3\n", 2),
            ("I,,,1,o,1,,abc,2,3\n", 2),
            ("I,12a,,1,o,1,,1,2,3\n", 2),
            ("I,,,2,o,1,,1,2,3\n", 2),
        ] {
            let e = decode_run("r", &schema, format!("{header}{body}").as_bytes()).unwrap_err();
            assert_eq!(e.position().line, line, "{body}: {e}");
            assert_eq!(e.position().object, "r");
        }
        assert!(decode_run("r", &schema, b"").is_err());
        assert!(decode_run("r", &schema, b"_op,id\n").is_err());
    }

    #[test]
    fn a_run_older_than_an_added_column_is_widened_with_the_column_kept() {
        let schema = schema();
        let narrow =
            b"_op,_seq,_ts,_cdc,_object,_line,_keep,id,amount\nI,,,1,o,1,,1,2\nD,,,1,o,2,,3,\n";
        let changes = decode_run("r", &schema, narrow).unwrap();
        assert_eq!(changes[0].cells.len(), 3);
        assert!(matches!(changes[0].cells[2], Cell::Keep));
        assert!(matches!(&changes[0].cells[1], Cell::Value(v) if &v[..] == b"2"));
        assert!(changes[1].cells.is_empty());
        // Anything but a prefix is still a header mismatch; a keep index past the run's own
        // columns is refused.
        for (header, body) in [
            (
                "_op,_seq,_ts,_cdc,_object,_line,_keep,id,note",
                "I,,,1,o,1,,1,2",
            ),
            (
                "_op,_seq,_ts,_cdc,_object,_line,_keep,amount,id",
                "I,,,1,o,1,,2,1",
            ),
            (
                "_op,_seq,_ts,_cdc,_object,_line,_keep,id,amount",
                "I,,,1,o,1,2,1,2",
            ),
        ] {
            let run = format!("{header}\n{body}\n");
            assert!(decode_run("r", &schema, run.as_bytes()).is_err(), "{run}");
        }
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        let key = |s: &str| {
            Key(vec![KeyValue::Decimal(
                crate::cdc::Decimal::parse(s.as_bytes()).unwrap(),
            )]
            .into())
        };
        assert_eq!(
            partition_of(&key("7308.00"), 8),
            partition_of(&key("7308"), 8)
        );
        let mut seen = [0u32; 8];
        for i in 0..800 {
            seen[partition_of(&key(&i.to_string()), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(partition_of(&key("1"), 1), 0);
    }
}
