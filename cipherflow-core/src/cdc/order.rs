//! The ordering key of a change: which of two changes to the same row is the later one.

use std::sync::Arc;

use super::error::CdcErrorKind;
use super::schema::Timestamp;

/// Orders changes: by sequence (DMS `AR_H_CHANGE_SEQ`; absent or empty is lowest), then by
/// commit timestamp (absent is lowest), then full-load rows before change rows, then by
/// source object name (bytewise), then by line. The greatest ordering key wins. Two records
/// of one object never tie.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    /// The change sequence number, if the input has one.
    pub seq: Option<u128>,
    /// The commit timestamp, if the input has one.
    pub timestamp: Option<Timestamp>,
    /// Whether the change comes from change capture (`true`) or a full load (`false`): a
    /// full load precedes every change of its task, whatever the files are called.
    pub cdc: bool,
    /// The object the change came from.
    pub object: Arc<str>,
    /// The line where the change's record starts.
    pub line: u64,
}

/// Parses a change sequence: 1 to 38 ASCII digits (DMS writes 35); empty means "lowest".
/// Compared as an integer (leading zeros do not matter), never as a float.
pub fn parse_seq(bytes: &[u8]) -> Result<Option<u128>, CdcErrorKind> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let bad = || CdcErrorKind::BadSequence(String::from_utf8_lossy(bytes).into_owned());
    if bytes.len() > 38 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    Ok(Some(
        bytes
            .iter()
            .fold(0u128, |v, &d| v * 10 + u128::from(d - b'0')),
    ))
}

/// Parses a commit timestamp; empty means "lowest".
pub fn parse_commit_timestamp(bytes: &[u8]) -> Result<Option<Timestamp>, CdcErrorKind> {
    if bytes.is_empty() {
        return Ok(None);
    }
    Timestamp::parse(bytes)
        .map(Some)
        .ok_or_else(|| CdcErrorKind::BadTimestamp(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_35_digit_integers() {
        let a = parse_seq(b"20190627115043000000000000000000012").unwrap();
        let b = parse_seq(b"20190627115043000000000000000000013").unwrap();
        assert!(a < b && a.is_some());
        assert_eq!(parse_seq(b"").unwrap(), None);
        assert!(None < parse_seq(b"0").unwrap());
        assert_eq!(parse_seq(b"0007").unwrap(), Some(7));
        assert!(parse_seq(b"1.5").is_err());
        assert!(parse_seq(&[b'9'; 39]).is_err());
        assert_eq!(parse_seq(&[b'9'; 38]).unwrap(), Some(10u128.pow(38) - 1));
    }

    #[test]
    fn order_key_fields_in_order() {
        let k = |seq, line| OrderKey {
            seq,
            timestamp: None,
            cdc: true,
            object: "b".into(),
            line,
        };
        assert!(k(None, 9) < k(Some(0), 1));
        assert!(k(Some(1), 9) < k(Some(2), 1));
        let mut other = k(Some(1), 1);
        other.object = "c".into();
        assert!(k(Some(1), 9) < other);
        let mut load = k(None, 9);
        load.cdc = false;
        load.object = "z".into();
        assert!(load < k(None, 1), "a full load precedes changes");
    }
}
