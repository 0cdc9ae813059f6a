//! A batch of DMS changes packed into one buffer: the changes' cells back to back, so reading
//! a file allocates per file, not per change or per cell. For a merge that reads each change
//! once ([`crate::merge::PackedBatches`]); [`super::ChangeBatch`] is the general form.

use std::io::Read;
use std::sync::Arc;

use super::dms::{ChangeHead, ChangeSink, DmsOptions, Op, Reject, read_dms_into};
use super::error::CdcError;
use super::order::OrderKey;
use super::schema::{Key, TableSchema};

/// The changes of one DMS object, validated and packed; see [`read_dms_packed`].
#[derive(Debug, Clone)]
pub struct PackedBatch {
    /// The object's name (also the tie-breaker in [`OrderKey`]).
    pub object: Arc<str>,
    /// SHA-256 of the object's bytes as stored.
    pub sha256: [u8; 32],
    /// In reject mode, the records that were refused.
    pub rejects: Vec<Reject>,
    /// Columns this object adds to the table, as [`super::ChangeBatch::added_columns`].
    pub added_columns: Vec<String>,
    /// How many cells each change that is not a delete has: the table's columns when it was
    /// read, then the added ones.
    pub width: usize,
    changes: PackedChanges,
}

impl PackedBatch {
    /// The changes, in file order until [`PackedBatch::sort_by_key`].
    pub fn changes(&self) -> &[PackedChange] {
        &self.changes.heads
    }

    /// Sorts the changes by key (the order of one key's changes is unspecified), and lays
    /// their cells out in that order too, so that a merge reads them front to back rather
    /// than a cache miss at every change.
    pub fn sort_by_key(&mut self) {
        let changes = &mut self.changes;
        changes
            .heads
            .sort_unstable_by(|a, b| a.head.key.cmp(&b.head.key));
        let mut cells = Vec::with_capacity(changes.cells.len());
        for change in &mut changes.heads {
            let at = cells.len();
            cells.extend_from_slice(&changes.cells[change.at..change.at + change.len]);
            change.at = at;
        }
        changes.cells = cells;
    }

    /// A change's cells, one per column of [`PackedBatch::width`] (`None`: keep the old value;
    /// none at all for a delete).
    pub fn cells<'a>(&'a self, change: &PackedChange) -> impl Iterator<Item = Option<&'a [u8]>> {
        let width = if change.head.op == Op::Delete {
            0
        } else {
            self.width
        };
        let mut at = change.at;
        let data = &self.changes.cells[..];
        (0..width).map(move |_| {
            let (len, n) = read_len(&data[at..]);
            at += n;
            let len = usize::try_from(len.checked_sub(1)?).expect("a field held in memory");
            let cell = &data[at..at + len];
            at += len;
            Some(cell)
        })
    }
}

/// One packed change: op, key and ordering key; its cells are in its batch
/// ([`PackedBatch::cells`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedChange {
    head: ChangeHead,
    /// Where its cells are in the batch's buffer.
    at: usize,
    len: usize,
}

impl PackedChange {
    /// Insert, update or delete.
    pub fn op(&self) -> Op {
        self.head.op
    }

    /// The row's primary key.
    pub fn key(&self) -> &Key {
        &self.head.key
    }

    /// Where the change sits in the order of all changes.
    pub fn order(&self) -> &OrderKey {
        &self.head.order
    }
}

/// The [`ChangeSink`] behind a [`PackedBatch`]: each change's cells are appended to one
/// buffer, each as a LEB128 length plus one (0: keep the old value), then its bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PackedChanges {
    heads: Vec<PackedChange>,
    cells: Vec<u8>,
}

impl ChangeSink for PackedChanges {
    fn keep<'r>(&mut self, head: ChangeHead, cells: impl Iterator<Item = Option<&'r [u8]>>) {
        let at = self.cells.len();
        if head.op != Op::Delete {
            for cell in cells {
                match cell {
                    None => self.cells.push(0),
                    Some(bytes) => {
                        write_len(bytes.len() as u64 + 1, &mut self.cells);
                        self.cells.extend_from_slice(bytes);
                    }
                }
            }
        }
        let len = self.cells.len() - at;
        self.heads.push(PackedChange { head, at, len });
    }
}

/// Reads one DMS CSV object as [`super::read_dms`] does (same checks, errors and reject
/// mode), into a [`PackedBatch`].
pub fn read_dms_packed(
    object: &str,
    input: impl Read,
    schema: &TableSchema,
    options: &DmsOptions,
) -> Result<PackedBatch, CdcError> {
    let read = read_dms_into::<PackedChanges>(object, input, schema, options)?;
    Ok(PackedBatch {
        object: object.into(),
        sha256: read.sha256,
        rejects: read.rejects,
        added_columns: read.added_columns,
        width: read.width,
        changes: read.changes,
    })
}

/// Appends `n` as LEB128: seven bits a byte, low bits first, the high bit set on all but the
/// last byte.
fn write_len(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 number written by [`write_len`]: the number and how many bytes it took.
fn read_len(bytes: &[u8]) -> (u64, usize) {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (n, i + 1);
        }
    }
    unreachable!("a length written by write_len")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::{KeySpec, read_dms};

    #[test]
    fn lengths_round_trip() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX) + 7,
            u64::MAX,
        ] {
            let mut out = vec![9];
            write_len(n, &mut out);
            assert_eq!(read_len(&out[1..]), (n, out.len() - 1), "{n}");
        }
    }

    #[test]
    fn packed_changes_equal_the_read_changes() {
        let schema = TableSchema::new(
            vec!["id".into(), "v".into(), "w".into()],
            &KeySpec::parse_list("id:int64").unwrap(),
        )
        .unwrap();
        let long = "x".repeat(200);
        let file = format!(
            "Op,id,v,w\nI,3,a,\nU,1,\"q,\"\"\",{long}\nD,2,,\nU,1,KEEP,z\nI,4,\"multi\nline\",NULL\n"
        );
        let options = DmsOptions {
            no_sup_value: Some(b"KEEP".to_vec()),
            ..DmsOptions::default()
        };
        let read = read_dms("c.csv", file.as_bytes(), &schema, &options).unwrap();
        let mut packed = read_dms_packed("c.csv", file.as_bytes(), &schema, &options).unwrap();
        assert_eq!((packed.sha256, packed.width), (read.sha256, 3));
        let unpack = |packed: &PackedBatch| -> Vec<_> {
            packed
                .changes()
                .iter()
                .map(|c| {
                    let cells: Vec<crate::cdc::Cell> = packed
                        .cells(c)
                        .map(|cell| match cell {
                            None => crate::cdc::Cell::Keep,
                            Some(bytes) => crate::cdc::Cell::Value(bytes.into()),
                        })
                        .collect();
                    (c.op(), c.key().clone(), c.order().clone(), cells)
                })
                .collect()
        };
        let expected: Vec<_> = read
            .changes
            .iter()
            .map(|c| (c.op, c.key.clone(), c.order.clone(), c.cells.clone()))
            .collect();
        assert_eq!(unpack(&packed), expected);
        packed.sort_by_key();
        let ids: Vec<_> = packed.changes().iter().map(|c| c.key().clone()).collect();
        assert!(ids.is_sorted());
        assert_eq!(ids.len(), 5);
    }
}
