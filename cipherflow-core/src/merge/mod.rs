//! The delta-merge engine: last-writer-wins by [`OrderKey`] per primary key, deterministic
//! snapshots, and a streaming sort-merge of a sorted base snapshot with a batch. The
//! semantics are specified in `docs/MERGE.md`.
//!
//! [`MergeState`] holds, per key, the greatest ordering key seen, the greatest delete (a
//! tombstone) and, per column, the latest value written with its ordering key. Folding a
//! change in is a per-field maximum, so the state — and every snapshot written from it — does
//! not depend on the order in which changes or batches arrive, nor on duplicates.
//!
//! ```
//! use cipherflow_core::cdc::{DmsOptions, KeySpec, TableSchema, read_dms};
//! use cipherflow_core::merge::MergeState;
//! let schema = TableSchema::new(
//!     vec!["id".into(), "amount".into()],
//!     &KeySpec::parse_list("id:int64").unwrap(),
//! )
//! .unwrap();
//! let options = DmsOptions::default();
//! let b1 = read_dms("b1.csv", &b"Op,id,amount\nI,2,7308.00\nI,10,1\n"[..], &schema, &options)?;
//! let b2 = read_dms("b2.csv", &b"Op,id,amount\nD,10,\n"[..], &schema, &options)?;
//! let mut state = MergeState::new(schema);
//! state.apply(&b2);
//! state.apply(&b1); // older: the delete still wins
//! let mut out = Vec::new();
//! state.write_snapshot(&mut out)?;
//! assert_eq!(out, b"id,amount\n2,7308.00\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod folder;
mod packed;
mod run;
mod sorted;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::iter::Peekable;
use std::sync::Arc;
use std::vec;

use crate::cdc::{Cell, Change, ChangeBatch, Key, Op, OrderKey, Reject, TableSchema};

pub use folder::{STATE_MANIFEST, StateFolder};
pub use packed::{KeyChanges, PackedBatches};
pub use run::{RUN_COLUMNS, decode_run, encode_run, key_text, partition_of};
pub use sorted::{Delta, MergeStats, Resolve, merge_sorted};

/// What is known about one primary key: enough to resolve its row, whatever order the
/// changes arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowState {
    /// The greatest ordering key of any change to this key, and whether that change was a
    /// delete (a tombstone, when so).
    last: (Arc<OrderKey>, bool),
    /// The greatest ordering key of any delete.
    deleted: Option<Arc<OrderKey>>,
    /// Per column, the latest value written and its ordering key (shared by the cells one
    /// change wrote).
    cells: Vec<Option<Written>>,
}

/// Changes of a batch in key order, as [`MergeState::apply`] folds them.
type Group<'a> = Peekable<vec::IntoIter<&'a Change>>;

/// A value written to a column, with the ordering key of the change that wrote it.
type Written = (Arc<OrderKey>, Box<[u8]>);

impl RowState {
    fn new(columns: usize, change: &Change) -> RowState {
        let order = Arc::new(change.order.clone());
        let mut row = RowState {
            last: (order.clone(), change.op == Op::Delete),
            deleted: None,
            cells: vec![None; columns],
        };
        row.apply(change, Some(order));
        row
    }

    /// Folds a change in. Every field is a maximum, so this commutes and is idempotent.
    /// `shared` is the change's ordering key if the caller has already shared it; otherwise
    /// it is shared (allocated) only when the change wins something.
    fn apply(&mut self, change: &Change, mut shared: Option<Arc<OrderKey>>) {
        if self.apply_order(change.op, &change.order, &mut shared) {
            return;
        }
        for (slot, cell) in self.cells.iter_mut().zip(&change.cells) {
            let Cell::Value(bytes) = cell else { continue };
            if newer(slot, &change.order, bytes) {
                let order = share(&mut shared, &change.order);
                match slot {
                    // The same length (a flag, a date, a number often): no allocation.
                    Some((old_order, old)) if old.len() == bytes.len() => {
                        *old_order = order;
                        old.copy_from_slice(bytes);
                    }
                    _ => *slot = Some((order, bytes.clone())),
                }
            }
        }
    }

    /// Folds in `first` and the changes after it to the same key.
    fn fold_group<'a>(&mut self, first: &'a Change, rest: &mut Group<'a>) {
        self.apply(first, None);
        while let Some(change) = rest.next_if(|c| c.key == first.key) {
            self.apply(change, None);
        }
    }

    /// The row of a key the state does not hold yet: `first` and the changes after it to the
    /// same key, folded.
    fn from_group<'a>(columns: usize, first: &'a Change, rest: &mut Group<'a>) -> (Key, RowState) {
        let mut row = RowState::new(columns, first);
        while let Some(change) = rest.next_if(|c| c.key == first.key) {
            row.apply(change, None);
        }
        (first.key.clone(), row)
    }

    /// Folds in a change's ordering key; `true` for a delete (which writes no cells).
    fn apply_order(
        &mut self,
        op: Op,
        order: &OrderKey,
        shared: &mut Option<Arc<OrderKey>>,
    ) -> bool {
        let is_delete = op == Op::Delete;
        if (order, is_delete) > (&*self.last.0, self.last.1) {
            self.last = (share(shared, order), is_delete);
        }
        if is_delete && self.deleted.as_ref().is_none_or(|d| *order > **d) {
            self.deleted = Some(share(shared, order));
        }
        is_delete
    }

    /// Whether the row is deleted (its latest change is a delete).
    pub fn is_tombstone(&self) -> bool {
        self.last.1
    }

    /// The greatest ordering key of any change to this key.
    pub fn last_order(&self) -> &OrderKey {
        &self.last.0
    }

    /// The row as it stands after these changes, applied on top of `base` (the row's fields
    /// before any of them, if it existed); `None` if it is deleted. A column no surviving
    /// change wrote keeps the base's value if no delete intervened, else is `null`.
    pub fn resolve<'a>(
        &'a self,
        base: Option<&[&'a [u8]]>,
        null: &'a [u8],
    ) -> Option<Vec<&'a [u8]>> {
        if self.last.1 {
            return None;
        }
        let row = self
            .cells
            .iter()
            .enumerate()
            .map(|(c, cell)| match cell {
                Some((order, bytes)) if self.deleted.as_ref().is_none_or(|d| order > d) => {
                    &bytes[..]
                }
                _ => match (&self.deleted, base) {
                    (None, Some(base)) => base[c],
                    _ => null,
                },
            })
            .collect();
        Some(row)
    }
}

/// Whether `(order, bytes)` beats what a column holds.
fn newer(slot: &Option<Written>, order: &OrderKey, bytes: &[u8]) -> bool {
    match slot {
        None => true,
        Some((old_order, old)) => (order, bytes) > (&**old_order, &old[..]),
    }
}

/// The ordering key shared by the cells one change writes, allocated on first use.
fn share(shared: &mut Option<Arc<OrderKey>>, order: &OrderKey) -> Arc<OrderKey> {
    shared
        .get_or_insert_with(|| Arc::new(order.clone()))
        .clone()
}

/// The merge state of one table: every key's [`RowState`], tombstones included, and the
/// batches applied so far (by object name and SHA-256).
#[derive(Debug, Clone)]
pub struct MergeState {
    schema: TableSchema,
    rows: BTreeMap<Key, RowState>,
    applied: BTreeSet<(Arc<str>, [u8; 32])>,
    /// How many of the schema's columns [`MergeState::add_columns`] appended: a base
    /// snapshot may lack those (it predates them), and no others.
    added: usize,
}

impl MergeState {
    /// An empty table.
    pub fn new(schema: TableSchema) -> MergeState {
        MergeState {
            schema,
            rows: BTreeMap::new(),
            applied: BTreeSet::new(),
            added: 0,
        }
    }

    /// The table's schema.
    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// Every key, in key order, tombstones included.
    pub fn rows(&self) -> &BTreeMap<Key, RowState> {
        &self.rows
    }

    /// Applies a validated batch; returns `false` (and changes nothing) if a batch with the
    /// same object name and SHA-256 was applied before. Cannot fail: the batch was validated
    /// whole when it was read, so a bad batch never reaches the state. Columns the batch
    /// adds ([`ChangeBatch::added_columns`]) are appended to the table first (see
    /// [`MergeState::add_columns`]).
    ///
    /// # Panics
    /// If a change has a different number of cells than the table has columns (it was read
    /// with another schema than this state's current one).
    pub fn apply(&mut self, batch: &ChangeBatch) -> bool {
        if !self.applied.insert((batch.object.clone(), batch.sha256)) {
            return false;
        }
        self.add_columns(&batch.added_columns);
        let columns = self.schema.columns().len();
        batch.changes.iter().for_each(|c| check_width(c, columns));
        // In key order (the caller may have sorted the batch already, on another thread), so
        // that the changes to one key are folded into its row at once, the rows are found by
        // walking the map alongside (or by look-ups that stay in one part of it), and a new
        // row's values are allocated next to its neighbours' (the snapshot reads them in key
        // order). Folding commutes, so the order does not change the result.
        let mut changes: Vec<&Change> = batch.changes.iter().collect();
        if !changes.is_sorted_by(|a, b| a.key <= b.key) {
            changes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        let walk = self.rows.len() / 8 <= changes.len();
        let mut changes = changes.into_iter().peekable();
        if walk {
            let mut fresh = Vec::new();
            let mut rows = self.rows.iter_mut().peekable();
            while let Some(change) = changes.next() {
                while rows.next_if(|(k, _)| **k < change.key).is_some() {}
                match rows.next_if(|(k, _)| **k == change.key) {
                    Some((_, row)) => row.fold_group(change, &mut changes),
                    None => fresh.push(RowState::from_group(columns, change, &mut changes)),
                }
            }
            if !fresh.is_empty() {
                // Sorted: both are built and merged in linear time.
                let mut fresh: BTreeMap<Key, RowState> = fresh.into_iter().collect();
                self.rows.append(&mut fresh);
            }
        } else {
            while let Some(change) = changes.next() {
                match self.rows.get_mut(&change.key) {
                    Some(row) => row.fold_group(change, &mut changes),
                    None => {
                        let (key, row) = RowState::from_group(columns, change, &mut changes);
                        self.rows.insert(key, row);
                    }
                }
            }
        }
        true
    }

    /// Appends columns to the table (a schema change mid-stream). Every existing row gets no
    /// value for them, so it resolves to null there until a change writes one. Names the
    /// table already has are skipped.
    pub fn add_columns(&mut self, names: &[String]) {
        let before = self.schema.columns().len();
        self.schema = self.schema.clone().with_added_columns(names);
        let after = self.schema.columns().len();
        self.added += after - before;
        if after > before {
            for row in self.rows.values_mut() {
                row.cells.resize(after, None);
            }
        }
    }

    /// How many trailing columns were added by [`MergeState::add_columns`] (since
    /// [`MergeState::new`]).
    pub fn added_columns(&self) -> usize {
        self.added
    }

    /// The batches applied so far: (object name, SHA-256 of its stored bytes).
    pub fn applied(&self) -> &BTreeSet<(Arc<str>, [u8; 32])> {
        &self.applied
    }

    /// Records a batch as applied without applying it: for a state rebuilt from stored
    /// changes ([`MergeState::to_changes`]) whose batch list is stored beside them.
    pub fn mark_applied(&mut self, object: Arc<str>, sha256: [u8; 32]) {
        self.applied.insert((object, sha256));
    }

    /// Folds in one change (no batch bookkeeping).
    pub fn apply_change(&mut self, change: &Change) {
        let columns = self.schema.columns().len();
        check_width(change, columns);
        match self.rows.get_mut(&change.key) {
            Some(row) => row.apply(change, None),
            None => {
                self.rows
                    .insert(change.key.clone(), RowState::new(columns, change));
            }
        }
    }

    /// Forgets tombstones whose delete is older than `before` (tombstone retention). After
    /// this, a change older than `before` to such a key could resurrect it: only purge past
    /// the point where such late changes can still arrive.
    pub fn purge_tombstones(&mut self, before: &OrderKey) -> usize {
        let n = self.rows.len();
        self.rows
            .retain(|_, row| !(row.is_tombstone() && *row.last.0 < *before));
        n - self.rows.len()
    }

    /// Writes the snapshot: the header, then each live row in key order (see
    /// [`encode_record`]).
    pub fn write_snapshot(&self, mut out: impl Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 16);
        encode_record(self.schema.columns().iter().map(|c| c.as_bytes()), &mut buf);
        for row in self.rows.values() {
            if let Some(fields) = row.resolve(None, self.schema.null()) {
                encode_record(fields, &mut buf);
            }
            if buf.len() >= 1 << 16 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        out.write_all(&buf)
    }
}

impl Delta for MergeState {
    type Row<'a> = &'a RowState;

    fn schema(&self) -> &TableSchema {
        &self.schema
    }

    fn added_columns(&self) -> usize {
        self.added
    }

    fn rows(&self) -> impl Iterator<Item = (&Key, &RowState)> {
        self.rows.iter()
    }
}

impl Resolve for &RowState {
    fn resolve<'a>(&'a self, base: Option<&[&'a [u8]]>, null: &'a [u8]) -> Option<Vec<&'a [u8]>> {
        RowState::resolve(self, base, null)
    }
}

/// A change must have a cell per column (a delete has none).
fn check_width(change: &Change, columns: usize) {
    assert!(
        change.op == Op::Delete || change.cells.len() == columns,
        "change read with another schema"
    );
}

/// Appends one CSV record: fields separated by `,`, a field quoted (with `"` doubled) when it
/// contains `,`, `"`, CR or LF, or when it is the only field and empty; ended by LF.
pub fn encode_record<'a>(fields: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let start = out.len();
    let mut count = 0;
    for field in fields {
        if count > 0 {
            out.push(b',');
        }
        count += 1;
        if field
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        {
            out.push(b'"');
            for &b in field {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(field);
        }
    }
    if count == 1 && out.len() == start {
        out.extend_from_slice(b"\"\"");
    }
    out.push(b'\n');
}

/// Writes reject-mode rejects as CSV: `object,line,column,reason,record`, where `record` is
/// the refused record re-encoded as one CSV line (without its line end).
pub fn write_rejects<'a>(
    rejects: impl IntoIterator<Item = &'a Reject>,
    mut out: impl Write,
) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_record(
        ["object", "line", "column", "reason", "record"].map(str::as_bytes),
        &mut buf,
    );
    for reject in rejects {
        let pos = reject.error.position();
        let mut record = Vec::new();
        encode_record(reject.fields.iter().map(Vec::as_slice), &mut record);
        record.pop();
        let column = pos.column.as_ref().map(|c| match &c.name {
            Some(name) => format!("{} ({name})", c.index),
            None => c.index.to_string(),
        });
        encode_record(
            [
                pos.object.as_bytes(),
                pos.line.to_string().as_bytes(),
                column.unwrap_or_default().as_bytes(),
                reject.error.kind().to_string().as_bytes(),
                &record,
            ],
            &mut buf,
        );
    }
    out.write_all(&buf)
}
