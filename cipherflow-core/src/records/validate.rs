//! One field against its column: the type (from a JSON value's raw text, or a CSV field's
//! text), then the column's rules. Every failing rule is reported, not just the first.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::error::{Reason, shown};
use super::schema::{Allowed, Bound, Column, ColumnType};
use super::value::{DecimalRef, Rfc3339, Value};

/// What a raw JSON value is, for "expected X, found Y".
fn json_kind(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        _ => "a number",
    }
}

/// The content of a raw JSON string (with quotes), unescaped only when it has escapes.
fn json_string(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    if !raw.contains('\\') {
        return Some(raw[1..raw.len() - 1].into());
    }
    serde_json::from_str::<String>(raw).ok().map(Into::into)
}

/// Validates the raw text of a JSON value (serde_json has checked it is well-formed JSON).
pub(crate) fn json_field(column: &Column, raw: &str, errors: &mut Vec<Reason>) -> Option<Value> {
    let wrong = |errors: &mut Vec<Reason>| {
        errors.push(Reason::WrongType {
            expected: column.ty().name(),
            found: json_kind(raw),
        });
        None
    };
    if raw == "null" {
        return null(column, errors);
    }
    match column.ty() {
        ColumnType::String => match json_string(raw) {
            Some(s) => string(column, s, errors),
            None => wrong(errors),
        },
        ColumnType::Int64 => {
            if json_kind(raw) != "a number" {
                return wrong(errors);
            }
            int64(column, raw, errors)
        }
        ColumnType::Decimal => match json_kind(raw) {
            "a number" => decimal(column, raw.into(), raw, errors),
            "a string" => decimal(column, json_string(raw).expect("a string"), raw, errors),
            _ => wrong(errors),
        },
        ColumnType::Timestamp => match json_string(raw) {
            Some(s) => timestamp(column, &s, errors),
            None => wrong(errors),
        },
        ColumnType::Bool => match raw {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => wrong(errors),
        },
    }
}

/// Validates a CSV field. The empty field is null.
pub(crate) fn text_field(column: &Column, bytes: &[u8], errors: &mut Vec<Reason>) -> Option<Value> {
    if bytes.is_empty() {
        return null(column, errors);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        errors.push(Reason::InvalidUtf8);
        return None;
    };
    match column.ty() {
        ColumnType::String => string(column, text.into(), errors),
        ColumnType::Int64 => int64(column, text, errors),
        ColumnType::Decimal => decimal(column, text.into(), text, errors),
        ColumnType::Timestamp => timestamp(column, text, errors),
        ColumnType::Bool => {
            if text.eq_ignore_ascii_case("true") {
                Some(Value::Bool(true))
            } else if text.eq_ignore_ascii_case("false") {
                Some(Value::Bool(false))
            } else {
                errors.push(Reason::BadBool(shown(text)));
                None
            }
        }
    }
}

/// A null (or absent) field.
pub(crate) fn null(column: &Column, errors: &mut Vec<Reason>) -> Option<Value> {
    if column.nullable() {
        Some(Value::Null)
    } else {
        errors.push(Reason::Null);
        None
    }
}

/// `[+-]digits` without leading-sign-only or overflow.
fn parse_i64(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.strip_prefix('+').unwrap_or(text).parse().ok()
}

// The checks below work on the borrowed text and own it only once every rule has passed:
// a valid field is copied once, a bad one never.

/// A string field: max_length, pattern and allowed values.
fn string(column: &Column, s: Cow<'_, str>, errors: &mut Vec<Reason>) -> Option<Value> {
    let before = errors.len();
    if let Some(max_length) = column.max_length
        && s.len() > max_length
    {
        let length = s.chars().count();
        if length > max_length {
            errors.push(Reason::TooLong { length, max_length });
        }
    }
    if let Some(re) = &column.pattern
        && !re.is_match(&s)
    {
        errors.push(Reason::Pattern {
            value: shown(&s),
            pattern: re.as_str().to_owned(),
        });
    }
    if let Some(Allowed::Strings(allowed)) = &column.values
        && !allowed.iter().any(|a| *a == *s)
    {
        errors.push(Reason::NotAllowed {
            value: format!("{:?}", shown(&s)),
            allowed: allowed
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    (errors.len() == before).then(|| Value::String(s.as_ref().into()))
}

/// An int64 field (`text` is a JSON number or a CSV field): allowed values, min and max.
fn int64(column: &Column, text: &str, errors: &mut Vec<Reason>) -> Option<Value> {
    let Some(v) = parse_i64(text) else {
        errors.push(Reason::BadInt(shown(text)));
        return None;
    };
    let before = errors.len();
    if let Some(Allowed::Ints(allowed)) = &column.values
        && !allowed.contains(&v)
    {
        errors.push(Reason::NotAllowed {
            value: v.to_string(),
            allowed: allowed
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    bounds(
        column,
        || v.to_string(),
        |b| match b {
            Bound::Int(b) => v.cmp(b),
            _ => unreachable!("int64 columns have integer bounds"),
        },
        errors,
    );
    (errors.len() == before).then_some(Value::Int64(v))
}

/// A decimal field: `text` is the number's text (a JSON string's content, unescaped), `raw`
/// the field as written (for the message when it is not a decimal).
fn decimal(
    column: &Column,
    text: Cow<'_, str>,
    raw: &str,
    errors: &mut Vec<Reason>,
) -> Option<Value> {
    let Some(d) = DecimalRef::parse(&text) else {
        errors.push(Reason::BadDecimal(shown(raw)));
        return None;
    };
    let before = errors.len();
    bounds(
        column,
        || text.to_string(),
        |b| match b {
            Bound::Decimal(b) => d.cmp(&DecimalRef::parse(b).expect("checked at load")),
            _ => unreachable!("decimal columns have decimal bounds"),
        },
        errors,
    );
    (errors.len() == before).then(|| Value::Decimal(text.as_ref().into()))
}

/// A timestamp field: RFC 3339, min and max.
fn timestamp(column: &Column, text: &str, errors: &mut Vec<Reason>) -> Option<Value> {
    let Some(t) = Rfc3339::parse(text) else {
        errors.push(Reason::BadTimestamp(shown(text)));
        return None;
    };
    let before = errors.len();
    bounds(
        column,
        || t.text().to_owned(),
        |b| match b {
            Bound::Timestamp(b) => t.unix_nanos().cmp(&b.unix_nanos()),
            _ => unreachable!("timestamp columns have timestamp bounds"),
        },
        errors,
    );
    (errors.len() == before).then_some(Value::Timestamp(t))
}

/// Checks min and max; `cmp(bound)` orders the value against a bound.
fn bounds(
    column: &Column,
    shown_value: impl Fn() -> String,
    cmp: impl Fn(&Bound) -> Ordering,
    errors: &mut Vec<Reason>,
) {
    if let Some(min) = &column.min
        && cmp(min) == Ordering::Less
    {
        errors.push(Reason::BelowMin {
            value: shown(&shown_value()),
            min: min.to_string(),
        });
    }
    if let Some(max) = &column.max
        && cmp(max) == Ordering::Greater
    {
        errors.push(Reason::AboveMax {
            value: shown(&shown_value()),
            max: max.to_string(),
        });
    }
}
