//! Typed field values: exact numbers (kept as the text that arrived), RFC 3339 timestamps
//! (kept as text, ordered as UTC instants), and the borrowed decimal comparison that min/max
//! and key equality use, so that validation never allocates to compare.

use std::cmp::Ordering;
use std::fmt;

use compact_str::CompactString;

use crate::cdc::{self, KeyValue};

/// One validated field of a record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Absent or null (only in nullable columns).
    Null,
    /// Text (held inline up to 24 bytes: most ids and names cost no allocation).
    String(CompactString),
    /// A 64-bit integer.
    Int64(i64),
    /// An exact decimal, as the text that arrived (`1000.50` stays `1000.50`).
    Decimal(CompactString),
    /// An RFC 3339 timestamp.
    Timestamp(Rfc3339),
    /// A boolean.
    Bool(bool),
}

impl Value {
    /// The text this value is stored as in a merge snapshot cell (null is the empty field).
    /// Timestamps keep their original text here; key columns use [`Value::key_value`].
    pub fn cell_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Null => "".into(),
            Value::String(s) => s.as_str().into(),
            Value::Int64(v) => v.to_string().into(),
            Value::Decimal(d) => (&**d).into(),
            Value::Timestamp(t) => t.text().into(),
            Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        }
    }

    /// The merge engine's typed key value for this value; `None` for null and booleans,
    /// which cannot be key fields.
    pub fn key_value(&self) -> Option<KeyValue> {
        match self {
            Value::Null | Value::Bool(_) => None,
            Value::String(s) => Some(KeyValue::String(s.as_bytes().into())),
            Value::Int64(v) => Some(KeyValue::Int64(*v)),
            Value::Decimal(d) => cdc::Decimal::parse(d.as_bytes()).map(KeyValue::Decimal),
            Value::Timestamp(t) => {
                cdc::Timestamp::parse(t.utc_text().as_bytes()).map(KeyValue::Timestamp)
            }
        }
    }
}

/// An RFC 3339 timestamp with its offset: the original text, and the instant it names
/// (seconds since 1970-01-01T00:00:00Z and nanoseconds), by which it orders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc3339 {
    /// Inline up to 24 bytes, as `2026-02-01T10:00:00.123Z` is.
    text: CompactString,
    seconds: i64,
    nanos: u32,
}

impl Rfc3339 {
    /// Parses `yyyy-MM-ddTHH:mm:ss[.f{1,9}](Z|±HH:mm)`; `t`, a space, and `z` are accepted as
    /// RFC 3339 allows. A leap second (`:60`) counts as the next minute's first second. The
    /// instant must fall within years 0000 to 9999 in UTC.
    pub fn parse(text: &str) -> Option<Rfc3339> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let year = digits(&b[0..4])? as i64;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        let hour = digits(&b[11..13])?;
        let minute = digits(&b[14..16])?;
        let second = digits(&b[17..19])?;
        let mut rest = &b[19..];
        let mut nanos = 0u32;
        if let Some(frac) = rest.strip_prefix(b".") {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            nanos = digits(&frac[..n])? * 10u32.pow(9 - n as u32);
            rest = &frac[n..];
        }
        let offset_minutes: i64 = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = digits(&[*h1, *h2])?;
                let m = digits(&[*m1, *m2])?;
                if h > 23 || m > 59 {
                    return None;
                }
                let v = i64::from(h * 60 + m);
                if *sign == b'-' { -v } else { v }
            }
            _ => return None,
        };
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let seconds =
            days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
        // 0000-01-01T00:00:00Z up to, not including, 10000-01-01T00:00:00Z
        let (lo, hi) = (
            days_from_civil(0, 1, 1) * 86_400,
            days_from_civil(10_000, 1, 1) * 86_400,
        );
        if seconds < lo || seconds >= hi {
            return None;
        }
        Some(Rfc3339 {
            text: text.into(),
            seconds,
            nanos,
        })
    }

    /// The text as it arrived.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Nanoseconds since 1970-01-01T00:00:00Z.
    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The instant in UTC as `yyyy-MM-ddTHH:mm:ss[.fffffffff]` without a zone designator (the
    /// form the merge engine's [`cdc::Timestamp`] reads; trailing fraction zeros trimmed).
    pub fn utc_text(&self) -> String {
        let (secs, nanos) = (self.seconds, self.nanos);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        );
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out
    }
}

impl PartialOrd for Rfc3339 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rfc3339 {
    /// By instant; the same instant written differently orders by its text.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.seconds, self.nanos)
            .cmp(&(other.seconds, other.nanos))
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |v, &d| v * 10 + u32::from(d - b'0')))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A decimal in normal form, borrowed from its text: sign, integer digits without leading
/// zeros, fraction digits without trailing zeros; zero is never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DecimalRef<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> DecimalRef<'a> {
    /// Parses `[+-]digits[.digits]` (either side of the point may be empty, not both) — the
    /// same language as [`cdc::Decimal::parse`], so every accepted value is a valid key.
    pub(crate) fn parse(text: &'a str) -> Option<DecimalRef<'a>> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        // One pass: digits, and at most one point.
        let mut point = None;
        for (i, b) in rest.bytes().enumerate() {
            if b == b'.' && point.is_none() {
                point = Some(i);
            } else if !b.is_ascii_digit() {
                return None;
            }
        }
        let (int, frac) = match point {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => (rest, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        Some(DecimalRef {
            negative: negative && !(int.is_empty() && frac.is_empty()),
            int,
            frac,
        })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl Ord for DecimalRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for DecimalRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_instants() {
        let t = |s: &str| Rfc3339::parse(s).unwrap_or_else(|| panic!("{s} parses"));
        assert_eq!(t("1970-01-01T00:00:00Z").unix_nanos(), 0);
        assert_eq!(
            t("2026-02-01T11:00:00+01:00").unix_nanos(),
            t("2026-02-01T10:00:00Z").unix_nanos()
        );
        assert_eq!(t("1969-12-31T23:59:59.5Z").unix_nanos(), -500_000_000);
        assert_eq!(
            t("2026-02-01t10:00:00.120z").utc_text(),
            "2026-02-01T10:00:00.12"
        );
        assert_eq!(
            t("2024-02-29T23:30:00-01:00").utc_text(),
            "2024-03-01T00:30:00"
        );
        assert_eq!(t("0000-01-01T00:00:00Z").utc_text(), "0000-01-01T00:00:00");
        for bad in [
            "2026-02-01T10:00:00",
            "2026-02-01",
            "2026-02-30T10:00:00Z",
            "2025-02-29T10:00:00Z",
            "2026-02-01T24:00:00Z",
            "2026-02-01T10:00:00.Z",
            "2026-02-01T10:00:00.1234567890Z",
            "2026-02-01T10:00:00+24:00",
            "2026-02-01T10:00:00+0100",
            "0000-01-01T00:00:00+00:01",
            "2026-02-01X10:00:00Z",
        ] {
            assert!(Rfc3339::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn decimal_refs_compare_like_cdc_decimals() {
        let d = |s| DecimalRef::parse(s).unwrap();
        assert_eq!(d("007.50"), d("7.5"));
        assert_eq!(d("-0.0"), d("0"));
        assert!(d("-1") < d("-0.5") && d("-0.5") < d(".25") && d("9") < d("10"));
        assert!(DecimalRef::parse("1e3").is_none() && DecimalRef::parse(".").is_none());
    }
}
