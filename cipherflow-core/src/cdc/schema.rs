//! Table schema: the columns, the (composite, typed) primary key, and typed key values that
//! compare exactly, without any float round trip.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use smallvec::SmallVec;

use super::error::CdcErrorKind;

/// The type of a key column, which decides how keys compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// UTF-8 text, compared byte by byte (which is code-point order).
    #[default]
    String,
    /// A signed 64-bit integer in decimal (`-12`, `+7`, `007`).
    Int64,
    /// An exact decimal number (`-12.50`); compared as a number, so `7308.00` = `7308`.
    Decimal,
    /// `yyyy-MM-dd[ HH:mm:ss[.f...]]` (or `T` between date and time), up to nanoseconds.
    Timestamp,
}

impl KeyType {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Int64 => "int64",
            KeyType::Decimal => "decimal",
            KeyType::Timestamp => "timestamp",
        }
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "string" => Ok(KeyType::String),
            "int64" => Ok(KeyType::Int64),
            "decimal" => Ok(KeyType::Decimal),
            "timestamp" => Ok(KeyType::Timestamp),
            _ => Err(format!(
                "unknown key type {s:?} (expected string, int64, decimal or timestamp)"
            )),
        }
    }
}

/// A key column as the caller names it: `COL` or `COL:TYPE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Column name.
    pub name: String,
    /// Its type.
    pub ty: KeyType,
}

impl KeySpec {
    /// Parses `COL[:TYPE][,COL[:TYPE]...]`.
    pub fn parse_list(s: &str) -> Result<Vec<KeySpec>, String> {
        let specs = s
            .split(',')
            .map(|part| {
                let (name, ty) = match part.rsplit_once(':') {
                    Some((name, ty)) => (name, ty.parse()?),
                    None => (part, KeyType::String),
                };
                if name.is_empty() {
                    return Err(format!("empty key column name in {s:?}"));
                }
                Ok(KeySpec {
                    name: name.to_owned(),
                    ty,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(specs)
    }

    /// `COL:TYPE,...`, every type written out: what [`KeySpec::parse_list`] reads back.
    pub fn list_text(specs: &[KeySpec]) -> String {
        specs
            .iter()
            .map(|k| format!("{}:{}", k.name, k.ty.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A table: its columns in order, its primary key, and how a null is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    columns: Vec<String>,
    key: Vec<(usize, KeyType)>,
    null: Vec<u8>,
}

impl TableSchema {
    /// A table with these columns and key. Null is the empty field (see [`TableSchema::null`]).
    pub fn new(columns: Vec<String>, key: &[KeySpec]) -> Result<TableSchema, CdcErrorKind> {
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(CdcErrorKind::DuplicateColumn(c.clone()));
            }
        }
        if key.is_empty() {
            return Err(CdcErrorKind::MissingColumn("(no key column given)".into()));
        }
        let mut idx = Vec::with_capacity(key.len());
        for spec in key {
            let i = columns
                .iter()
                .position(|c| *c == spec.name)
                .ok_or_else(|| CdcErrorKind::MissingColumn(spec.name.clone()))?;
            if idx.iter().any(|&(j, _)| j == i) {
                return Err(CdcErrorKind::DuplicateColumn(spec.name.clone()));
            }
            idx.push((i, spec.ty));
        }
        Ok(TableSchema {
            columns,
            key: idx,
            null: Vec::new(),
        })
    }

    /// Sets the bytes that mean null (DMS `CsvNullValue`; empty by default). A key field may
    /// not be null, and a column with no value (after a delete, or never written) is written
    /// as this.
    pub fn with_null(mut self, null: impl Into<Vec<u8>>) -> TableSchema {
        self.null = null.into();
        self
    }

    /// The same table with `names` appended as new columns (a schema change mid-stream);
    /// names it already has are skipped, so adding twice changes nothing.
    pub fn with_added_columns(mut self, names: &[String]) -> TableSchema {
        for name in names {
            if !self.columns.contains(name) {
                self.columns.push(name.clone());
            }
        }
        self
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The key columns: (index into [`TableSchema::columns`], type), in key order.
    pub fn key(&self) -> &[(usize, KeyType)] {
        &self.key
    }

    /// The key columns by name and type, in key order.
    pub fn key_specs(&self) -> Vec<KeySpec> {
        self.key
            .iter()
            .map(|&(i, ty)| KeySpec {
                name: self.columns[i].clone(),
                ty,
            })
            .collect()
    }

    /// The null value.
    pub fn null(&self) -> &[u8] {
        &self.null
    }

    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Parses the key of a row; `field(i)` is the field of table column `i`. On error, returns
    /// the table column index to blame with the reason.
    pub fn parse_key<'a>(
        &self,
        mut field: impl FnMut(usize) -> Option<&'a [u8]>,
    ) -> Result<Key, (usize, CdcErrorKind)> {
        let mut values = SmallVec::with_capacity(self.key.len());
        for &(i, ty) in &self.key {
            let bytes = field(i).ok_or((i, CdcErrorKind::NullKey))?;
            if bytes == self.null.as_slice() {
                return Err((i, CdcErrorKind::NullKey));
            }
            values.push(KeyValue::parse(ty, bytes).map_err(|k| (i, k))?);
        }
        Ok(Key(values))
    }
}

/// A primary key value: one typed value per key column. Orders as the typed tuple.
///
/// A one-column key is held inline (no allocation of its own), so comparing keys, which a
/// merge does millions of times, reads no memory beyond the key itself for an integer key.
#[derive(Debug, Clone, Eq)]
pub struct Key(pub SmallVec<[KeyValue; 1]>);

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for Key {
    /// As the derived equality would be, with the same shortcut as [`Key::cmp`].
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self.0.as_slice(), other.0.as_slice()) {
            ([KeyValue::Int64(a)], [KeyValue::Int64(b)]) => a == b,
            (a, b) => a == b,
        }
    }
}

impl Ord for Key {
    /// Lexicographic, as the derived order would be; a one-column key (the usual case,
    /// compared millions of times by a merge) skips the generic slice comparison.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.0.as_slice(), other.0.as_slice()) {
            ([KeyValue::Int64(a)], [KeyValue::Int64(b)]) => a.cmp(b),
            ([a], [b]) => a.cmp(b),
            (a, b) => a.cmp(b),
        }
    }
}

impl PartialOrd for Key {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One typed key field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    /// Text (validated UTF-8), compared bytewise.
    String(Box<[u8]>),
    /// An integer.
    Int64(i64),
    /// An exact decimal.
    Decimal(Decimal),
    /// A timestamp.
    Timestamp(Timestamp),
}

impl KeyValue {
    /// Parses `bytes` as a `ty`.
    pub fn parse(ty: KeyType, bytes: &[u8]) -> Result<KeyValue, CdcErrorKind> {
        let bad = || CdcErrorKind::BadKey {
            ty: ty.name(),
            value: String::from_utf8_lossy(bytes).into_owned(),
        };
        match ty {
            KeyType::String => {
                std::str::from_utf8(bytes).map_err(|_| CdcErrorKind::InvalidUtf8)?;
                Ok(KeyValue::String(bytes.into()))
            }
            KeyType::Int64 => parse_i64(bytes).map(KeyValue::Int64).ok_or_else(bad),
            KeyType::Decimal => Decimal::parse(bytes).map(KeyValue::Decimal).ok_or_else(bad),
            KeyType::Timestamp => Timestamp::parse(bytes)
                .map(KeyValue::Timestamp)
                .ok_or_else(bad),
        }
    }
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let (neg, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return None;
    }
    if digits.len() <= 18 {
        // Below 10^18: cannot overflow, one pass.
        let mut v: i64 = 0;
        for &d in digits {
            let d = d.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + i64::from(d);
        }
        return Some(if neg { -v } else { v });
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        v = v.checked_mul(10).and_then(|v| {
            if neg {
                v.checked_sub(d)
            } else {
                v.checked_add(d)
            }
        })?;
    }
    Some(v)
}

/// An exact decimal number, normalised: no leading zeros in the integer part, no trailing
/// zeros in the fraction, and zero is never negative.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    negative: bool,
    int: Box<[u8]>,
    frac: Box<[u8]>,
}

impl Decimal {
    /// Parses `[+-]digits[.digits]` (either side of the point may be empty, not both).
    pub fn parse(bytes: &[u8]) -> Option<Decimal> {
        let (negative, rest) = match bytes.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, bytes),
        };
        let (int, frac) = match rest.iter().position(|&b| b == b'.') {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => (rest, &[][..]),
        };
        if int.is_empty() && frac.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
            return None;
        }
        let int_start = int.iter().position(|&b| b != b'0').unwrap_or(int.len());
        let frac_end = frac.iter().rposition(|&b| b != b'0').map_or(0, |p| p + 1);
        let int = &int[int_start..];
        let frac = &frac[..frac_end];
        Some(Decimal {
            negative: negative && !(int.is_empty() && frac.is_empty()),
            int: int.into(),
            frac: frac.into(),
        })
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = if self.int.is_empty() {
            b"0" as &[u8]
        } else {
            &self.int
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&text(int))?;
        if !self.frac.is_empty() {
            write!(f, ".{}", text(&self.frac))?;
        }
        Ok(())
    }
}

/// A calendar timestamp without time zone, to the nanosecond; orders chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    nanos: u32,
}

impl fmt::Display for Timestamp {
    /// `yyyy-MM-dd HH:mm:ss.fffffffff`: every field, so that [`Timestamp::parse`] reads back
    /// the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.nanos
        )
    }
}

impl fmt::Display for KeyValue {
    /// Text that [`KeyValue::parse`] reads back as the same value (a decimal or timestamp in
    /// its normal form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::String(b) => f.write_str(&String::from_utf8_lossy(b)),
            KeyValue::Int64(v) => write!(f, "{v}"),
            KeyValue::Decimal(d) => write!(f, "{d}"),
            KeyValue::Timestamp(t) => write!(f, "{t}"),
        }
    }
}

impl Timestamp {
    /// Parses `yyyy-MM-dd`, optionally followed by ` HH:mm:ss` (or `T`), optionally by `.`
    /// and 1 to 9 fraction digits (DMS writes `yyyy-MM-dd HH:mm:ss.SSSSSS`).
    pub fn parse(b: &[u8]) -> Option<Timestamp> {
        fn num(b: &[u8]) -> Option<u32> {
            if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(b.iter().fold(0, |v, &d| v * 10 + u32::from(d - b'0')))
        }
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let year = num(&b[..4])?;
        let month = num(&b[5..7])?;
        let day = num(&b[8..10])?;
        let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0);
        let rest = &b[10..];
        if !rest.is_empty() {
            if rest.len() < 9
                || !matches!(rest[0], b' ' | b'T')
                || rest[3] != b':'
                || rest[6] != b':'
            {
                return None;
            }
            hour = num(&rest[1..3])?;
            minute = num(&rest[4..6])?;
            second = num(&rest[7..9])?;
            let frac = &rest[9..];
            if !frac.is_empty() {
                let digits = frac.strip_prefix(b".")?;
                if digits.len() > 9 {
                    return None;
                }
                nanos = num(digits)? * 10u32.pow(9 - digits.len() as u32);
            }
        }
        let valid = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour < 24
            && minute < 60
            && second <= 60;
        valid.then_some(Timestamp {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            nanos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s.as_bytes()).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(dec("7308.00"), dec("7308"));
        assert_eq!(dec("-0.0"), dec("0"));
        assert_eq!(dec("+007.50"), dec("7.5"));
        let sorted = [
            "-100",
            "-99.99",
            "-1",
            "-0.5",
            "0",
            ".25",
            "0.3",
            "1",
            "1.000000000000000000001",
            "9",
            "10",
            "99999999999999999999999999",
        ];
        for w in sorted.windows(2) {
            assert!(dec(w[0]) < dec(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(dec("-0012.3400").to_string(), "-12.34");
        for bad in ["", ".", "-", "1e5", "1.2.3", "NaN", " 1"] {
            assert!(Decimal::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn ints_and_timestamps() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+007"), Some(7));
        assert_eq!(parse_i64(b"1.0"), None);
        // Either side of the one-pass limit (18 digits).
        assert_eq!(
            parse_i64(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(
            parse_i64(b"-999999999999999999"),
            Some(-999_999_999_999_999_999)
        );
        assert_eq!(
            parse_i64(b"1000000000000000000"),
            Some(1_000_000_000_000_000_000)
        );
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"00000000000000000000001"), Some(1));
        for bad in [
            &b"-"[..],
            b"+",
            b"",
            b"12a",
            b"1 ",
            b"/",
            b":",
            b"--1",
            b"99999999999999999x",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
        let t = |s: &str| Timestamp::parse(s.as_bytes());
        assert!(t("2014-10-29 11:34:01.123456") < t("2014-10-29 11:34:01.1234561"));
        assert_eq!(t("2014-10-29 11:34:01.5"), t("2014-10-29T11:34:01.500000"));
        assert!(t("2014-10-29") < t("2014-10-29 00:00:00.000001"));
        let ts = t("2014-10-29 11:34:01.123456").unwrap();
        assert_eq!(ts.to_string(), "2014-10-29 11:34:01.123456000");
        assert_eq!(t(&ts.to_string()), Some(ts));
        for bad in [
            "2014-13-01",
            "2014-10-29 25:00:00",
            "2014-10-29 11:34",
            "20141029",
        ] {
            assert!(t(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn key_specs_and_schema() {
        let specs = KeySpec::parse_list("id:int64,name,ts:timestamp").unwrap();
        assert_eq!(specs[0].ty, KeyType::Int64);
        assert_eq!(specs[1].ty, KeyType::String);
        assert!(KeySpec::parse_list("id:float").is_err());
        assert!(KeySpec::parse_list("a,,b").is_err());
        let cols = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let schema = TableSchema::new(cols(&["id", "name", "ts"]), &specs).unwrap();
        assert_eq!(
            schema.key(),
            &[
                (0, KeyType::Int64),
                (1, KeyType::String),
                (2, KeyType::Timestamp)
            ]
        );
        assert_eq!(
            TableSchema::new(cols(&["id"]), &specs),
            Err(CdcErrorKind::MissingColumn("name".into()))
        );
        assert!(TableSchema::new(cols(&["id", "id"]), &specs[..1]).is_err());
        let fields: [&[u8]; 3] = [b"", b"x", b"2014-10-29"];
        assert_eq!(
            schema.parse_key(|i| Some(fields[i])),
            Err((0, CdcErrorKind::NullKey))
        );
    }
}
