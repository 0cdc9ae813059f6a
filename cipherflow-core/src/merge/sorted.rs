//! Streaming sort-merge of a base snapshot (sorted by key) with a [`MergeState`]: memory
//! grows with the batch, never with the table, and unchanged base rows are copied as their
//! raw bytes, never parsed into values and re-encoded.

use std::io::{self, Read, Write};

use super::{MergeState, encode_record};
use crate::cdc::raw::RawReader;
use crate::cdc::{CdcError, CdcErrorKind, Key, Position};

/// What a sort-merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// Base rows copied unchanged, as raw bytes.
    pub copied: u64,
    /// Base rows replaced by a changed version.
    pub updated: u64,
    /// Base rows removed by a delete.
    pub deleted: u64,
    /// Rows written that were not in the base.
    pub inserted: u64,
    /// Rows written in all.
    pub rows: u64,
    /// Bytes written, header included.
    pub bytes: u64,
}

/// Writes `state` applied on top of `base`, a snapshot of the same table sorted by key
/// (as this function and [`MergeState::write_snapshot`] write them), to `out`.
///
/// Base rows no change touches are copied as their raw bytes (line end normalised to LF);
/// every other row is encoded with [`encode_record`]. The base is checked as it streams: its
/// header must be the table's, each record must have every column and a valid key, and keys
/// must strictly increase. On any error `out` holds a partial result: write to a temporary
/// file and rename it on success.
pub fn merge_sorted(
    state: &MergeState,
    base_object: &str,
    base: impl Read,
    mut out: impl Write,
) -> Result<MergeStats, crate::Error> {
    let schema = state.schema();
    let columns = schema.columns();
    let null = schema.null();
    let read_err =
        |pos: Position, e: io::Error| CdcError::new(pos, CdcErrorKind::Read(e.to_string()));
    let mut rdr = RawReader::new(base);
    let mut stats = MergeStats::default();
    let mut buf = Vec::with_capacity(1 << 17);

    if !rdr
        .next()
        .map_err(|e| read_err(Position::object(base_object), e))?
    {
        return Err(CdcError::new(Position::object(base_object), CdcErrorKind::NoHeader).into());
    }
    // A base older than a column the batch added lacks it (and only such columns): its
    // rows get null there.
    let width = rdr.nfields;
    let header_ok = width <= columns.len()
        && width + state.added_columns() >= columns.len()
        && columns
            .iter()
            .take(width)
            .enumerate()
            .all(|(i, c)| rdr.field(i) == c.as_bytes());
    if !header_ok {
        return Err(CdcError::new(
            rdr.position(base_object),
            CdcErrorKind::HeaderMismatch {
                expected: columns.join(","),
                found: String::from_utf8_lossy(&rdr.raw).into_owned(),
            },
        )
        .into());
    }
    encode_record(columns.iter().map(|c| c.as_bytes()), &mut buf);
    // What a copied base row gets appended: a null per column the base lacks.
    let mut padding = Vec::new();
    if width < columns.len() {
        let mut two = Vec::new();
        encode_record([null, null], &mut two); // `E,E\n`: E is the encoded null
        let encoded = &two[..(two.len() - 2) / 2];
        for _ in width..columns.len() {
            padding.push(b',');
            padding.extend_from_slice(encoded);
        }
    }

    let mut pending = state.rows().iter().peekable();
    let mut previous: Option<Key> = None;
    loop {
        let more = rdr
            .next()
            .map_err(|e| read_err(rdr.position(base_object), e))?;
        if !more {
            break;
        }
        let pos = || rdr.position(base_object);
        if rdr.nfields != width {
            let kind = CdcErrorKind::ColumnCount {
                expected: width,
                found: rdr.nfields,
            };
            return Err(CdcError::new(pos(), kind).into());
        }
        let key = schema
            .parse_key(|c| Some(rdr.field(c)))
            .map_err(|(c, kind)| CdcError::new(pos().with_column(c, Some(&columns[c])), kind))?;
        if previous.as_ref().is_some_and(|p| *p >= key) {
            return Err(CdcError::new(pos(), CdcErrorKind::Unsorted).into());
        }
        while let Some((_, row)) = pending.next_if(|(k, _)| **k < key) {
            if let Some(fields) = row.resolve(None, null) {
                encode_record(fields, &mut buf);
                stats.inserted += 1;
            }
        }
        match pending.next_if(|(k, _)| **k == key) {
            Some((_, row)) => {
                let base_fields: Vec<&[u8]> = (0..columns.len())
                    .map(|c| if c < width { rdr.field(c) } else { null })
                    .collect();
                match row.resolve(Some(&base_fields), null) {
                    Some(fields) => {
                        encode_record(fields, &mut buf);
                        stats.updated += 1;
                    }
                    None => stats.deleted += 1,
                }
            }
            None => {
                buf.extend_from_slice(&rdr.raw);
                buf.extend_from_slice(&padding);
                buf.push(b'\n');
                stats.copied += 1;
            }
        }
        previous = Some(key);
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            stats.bytes += buf.len() as u64;
            buf.clear();
        }
    }
    for (_, row) in pending {
        if let Some(fields) = row.resolve(None, null) {
            encode_record(fields, &mut buf);
            stats.inserted += 1;
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    stats.bytes += buf.len() as u64;
    stats.rows = stats.copied + stats.updated + stats.inserted;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::{DmsOptions, KeySpec, TableSchema, read_dms};

    fn state(changes: &[u8]) -> MergeState {
        let schema = TableSchema::new(
            vec!["id".into(), "v".into()],
            &KeySpec::parse_list("id:int64").unwrap(),
        )
        .unwrap();
        let batch = read_dms("c.csv", changes, &schema, &DmsOptions::default()).unwrap();
        let mut state = MergeState::new(schema);
        state.apply(&batch);
        state
    }

    #[test]
    fn raw_rows_keep_their_bytes_and_line_ends_become_lf() {
        let base = b"id,v\r\n1,\"a\r\nb\"\r\n\r\n2,\"x\"\r\n3,c";
        let mut out = Vec::new();
        let stats = merge_sorted(&state(b"Op,id,v\n"), "b.csv", &base[..], &mut out).unwrap();
        assert_eq!(out, b"id,v\n1,\"a\r\nb\"\n2,\"x\"\n3,c\n");
        assert_eq!(stats.copied, 3);

        let changes = b"Op,id,v\nU,2,y\nD,3,\nI,0,\"new,\"\nI,4,\n";
        let mut out = Vec::new();
        let stats = merge_sorted(&state(changes), "b.csv", &base[..], &mut out).unwrap();
        assert_eq!(out, b"id,v\n0,\"new,\"\n1,\"a\r\nb\"\n2,y\n4,\n");
        assert_eq!(
            (
                stats.copied,
                stats.updated,
                stats.deleted,
                stats.inserted,
                stats.rows
            ),
            (1, 1, 1, 2, 4)
        );
    }

    #[test]
    fn base_errors_name_the_line() {
        let base = b"id,v\n1,a\n\n2,\"b\nc\"\n3\n";
        let e = merge_sorted(&state(b"Op,id,v\n"), "b.csv", &base[..], io::sink()).unwrap_err();
        assert_eq!(e.to_string(), "b.csv, line 6: expected 2 fields, found 1");
    }
}
