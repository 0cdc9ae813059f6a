//! A one-off merge's changes: the batches kept packed as they were read, each key's row
//! resolved only when the sort-merge reaches it. No per-key state is built, so a batch costs
//! its packed bytes, not an allocation per row and per cell.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;

use smallvec::SmallVec;

use super::sorted::{Delta, Resolve};
use crate::cdc::{Key, Op, OrderKey, PackedBatch, PackedChange, TableSchema};

/// Batches to merge onto a base with [`super::merge_sorted`], resolved by the same rule as
/// [`super::MergeState`] (the result is byte for byte the same), in one pass.
#[derive(Debug, Clone)]
pub struct PackedBatches {
    schema: TableSchema,
    batches: Vec<PackedBatch>,
    applied: BTreeSet<(Arc<str>, [u8; 32])>,
    added: usize,
}

impl PackedBatches {
    /// No batches yet, for a table of `schema`.
    pub fn new(schema: TableSchema) -> PackedBatches {
        PackedBatches {
            schema,
            batches: Vec::new(),
            applied: BTreeSet::new(),
            added: 0,
        }
    }

    /// The table's schema, widened by the columns the batches added.
    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// Adds a batch read with [`PackedBatches::schema`] and sorted by key
    /// ([`PackedBatch::sort_by_key`]); returns `false` (and keeps nothing) if a batch with the
    /// same object name and SHA-256 was added before. Columns the batch adds are appended to
    /// the table, as [`super::MergeState::apply`] does.
    ///
    /// # Panics
    /// If the batch was read with another schema, or is not sorted.
    pub fn push(&mut self, batch: PackedBatch) -> bool {
        if !self.applied.insert((batch.object.clone(), batch.sha256)) {
            return false;
        }
        let before = self.schema.columns().len();
        self.schema = self.schema.clone().with_added_columns(&batch.added_columns);
        self.added += self.schema.columns().len() - before;
        assert_eq!(
            batch.width,
            self.schema.columns().len(),
            "batch read with another schema"
        );
        assert!(
            batch.changes().is_sorted_by(|a, b| a.key() <= b.key()),
            "batch not sorted by key"
        );
        self.batches.push(batch);
        true
    }
}

impl Delta for PackedBatches {
    type Row<'a> = KeyChanges<'a>;

    fn schema(&self) -> &TableSchema {
        &self.schema
    }

    fn added_columns(&self) -> usize {
        self.added
    }

    fn rows(&self) -> impl Iterator<Item = (&Key, KeyChanges<'_>)> {
        let mut heads = BinaryHeap::new();
        for (b, batch) in self.batches.iter().enumerate() {
            if let Some(first) = batch.changes().first() {
                heads.push(Reverse((first.key(), b)));
            }
        }
        ByKey {
            batches: &self.batches,
            next: vec![0; self.batches.len()],
            heads,
            columns: self.schema.columns().len(),
        }
    }
}

/// The keys of sorted batches in key order, each with its changes from every batch: a merge
/// of the batches, with the next key of each in a heap.
struct ByKey<'a> {
    batches: &'a [PackedBatch],
    /// Per batch, its next change.
    next: Vec<usize>,
    heads: BinaryHeap<Reverse<(&'a Key, usize)>>,
    columns: usize,
}

impl<'a> Iterator for ByKey<'a> {
    type Item = (&'a Key, KeyChanges<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((key, first)) = self.heads.pop()?;
        let mut found = KeyChanges {
            columns: self.columns,
            changes: SmallVec::new(),
        };
        let mut b = first;
        loop {
            let batch = &self.batches[b];
            let changes = batch.changes();
            let at = &mut self.next[b];
            while let Some(change) = changes.get(*at).filter(|c| c.key() == key) {
                found.changes.push((batch, change));
                *at += 1;
            }
            if let Some(change) = changes.get(*at) {
                self.heads.push(Reverse((change.key(), b)));
            }
            match self.heads.peek() {
                Some(Reverse((k, _))) if *k == key => b = self.heads.pop()?.0.1,
                _ => return Some((key, found)),
            }
        }
    }
}

/// The latest value written to a column so far, with the ordering key of its change.
type Written<'a> = Option<(&'a OrderKey, &'a [u8])>;

/// One key's changes, from every batch.
pub struct KeyChanges<'a> {
    columns: usize,
    changes: SmallVec<[(&'a PackedBatch, &'a PackedChange); 4]>,
}

impl Resolve for KeyChanges<'_> {
    /// As [`super::RowState::resolve`] on the row these changes fold into: the latest change
    /// (a delete before anything else of the same order) decides whether the row lives; each
    /// column takes the latest value written to it, unless a delete came after that value.
    fn resolve<'a>(&'a self, base: Option<&[&'a [u8]]>, null: &'a [u8]) -> Option<Vec<&'a [u8]>> {
        let is_delete = |c: &PackedChange| c.op() == Op::Delete;
        let (_, last) = self
            .changes
            .iter()
            .max_by(|(_, a), (_, b)| (a.order(), is_delete(a)).cmp(&(b.order(), is_delete(b))))?;
        if is_delete(last) {
            return None;
        }
        let deleted: Option<&OrderKey> = self
            .changes
            .iter()
            .filter(|(_, c)| is_delete(c))
            .map(|(_, c)| c.order())
            .max();
        let mut latest: SmallVec<[Written<'_>; 16]> = SmallVec::from_elem(None, self.columns);
        for (batch, change) in &self.changes {
            for (slot, cell) in latest.iter_mut().zip(batch.cells(change)) {
                let Some(bytes) = cell else { continue };
                if slot.is_none_or(|old| (change.order(), bytes) > old) {
                    *slot = Some((change.order(), bytes));
                }
            }
        }
        let row = latest
            .iter()
            .enumerate()
            .map(|(c, cell)| match cell {
                Some((order, bytes)) if deleted.is_none_or(|d| *order > d) => *bytes,
                _ => match (deleted, base) {
                    (None, Some(base)) => base[c],
                    _ => null,
                },
            })
            .collect();
        Some(row)
    }
}
