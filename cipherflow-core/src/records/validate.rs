//! One field against its column: the type (from a JSON value's raw text, or a CSV field's
//! text), then the column's rules. Every failing rule is reported, not just the first.

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
fn json_string(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
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
    let value = match column.ty() {
        ColumnType::String => match json_string(raw) {
            Some(s) => Value::String(s.into_owned()),
            None => return wrong(errors),
        },
        ColumnType::Int64 => {
            if json_kind(raw) != "a number" {
                return wrong(errors);
            }
            match parse_i64(raw) {
                Some(v) => Value::Int64(v),
                None => {
                    errors.push(Reason::BadInt(shown(raw)));
                    return None;
                }
            }
        }
        ColumnType::Decimal => {
            let text = match json_kind(raw) {
                "a number" => std::borrow::Cow::Borrowed(raw),
                "a string" => json_string(raw).expect("a string"),
                _ => return wrong(errors),
            };
            if DecimalRef::parse(&text).is_none() {
                errors.push(Reason::BadDecimal(shown(raw)));
                return None;
            }
            Value::Decimal(text.into())
        }
        ColumnType::Timestamp => match json_string(raw) {
            Some(s) => match Rfc3339::parse(&s) {
                Some(t) => Value::Timestamp(t),
                None => {
                    errors.push(Reason::BadTimestamp(shown(&s)));
                    return None;
                }
            },
            None => return wrong(errors),
        },
        ColumnType::Bool => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return wrong(errors),
        },
    };
    check_rules(column, value, errors)
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
    let value = match column.ty() {
        ColumnType::String => Value::String(text.to_owned()),
        ColumnType::Int64 => match parse_i64(text) {
            Some(v) => Value::Int64(v),
            None => {
                errors.push(Reason::BadInt(shown(text)));
                return None;
            }
        },
        ColumnType::Decimal => match DecimalRef::parse(text) {
            Some(_) => Value::Decimal(text.into()),
            None => {
                errors.push(Reason::BadDecimal(shown(text)));
                return None;
            }
        },
        ColumnType::Timestamp => match Rfc3339::parse(text) {
            Some(t) => Value::Timestamp(t),
            None => {
                errors.push(Reason::BadTimestamp(shown(text)));
                return None;
            }
        },
        ColumnType::Bool => {
            if text.eq_ignore_ascii_case("true") {
                Value::Bool(true)
            } else if text.eq_ignore_ascii_case("false") {
                Value::Bool(false)
            } else {
                errors.push(Reason::BadBool(shown(text)));
                return None;
            }
        }
    };
    check_rules(column, value, errors)
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

fn check_rules(column: &Column, value: Value, errors: &mut Vec<Reason>) -> Option<Value> {
    let before = errors.len();
    match &value {
        Value::String(s) => {
            if let Some(max_length) = column.max_length
                && s.len() > max_length
            {
                let length = s.chars().count();
                if length > max_length {
                    errors.push(Reason::TooLong { length, max_length });
                }
            }
            if let Some(re) = &column.pattern
                && !re.is_match(s)
            {
                errors.push(Reason::Pattern {
                    value: shown(s),
                    pattern: re.as_str().to_owned(),
                });
            }
            if let Some(Allowed::Strings(allowed)) = &column.values
                && !allowed.iter().any(|a| a == s)
            {
                errors.push(Reason::NotAllowed {
                    value: format!("{:?}", shown(s)),
                    allowed: allowed
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Value::Int64(v) => {
            if let Some(Allowed::Ints(allowed)) = &column.values
                && !allowed.contains(v)
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
        }
        Value::Decimal(d) => {
            let d = DecimalRef::parse(d).expect("validated");
            bounds(
                column,
                || value.cell_text().into_owned(),
                |b| match b {
                    Bound::Decimal(b) => d.cmp(&DecimalRef::parse(b).expect("checked at load")),
                    _ => unreachable!("decimal columns have decimal bounds"),
                },
                errors,
            );
        }
        Value::Timestamp(t) => {
            bounds(
                column,
                || t.text().to_owned(),
                |b| match b {
                    Bound::Timestamp(b) => t.unix_nanos().cmp(&b.unix_nanos()),
                    _ => unreachable!("timestamp columns have timestamp bounds"),
                },
                errors,
            );
        }
        Value::Null | Value::Bool(_) => {}
    }
    (errors.len() == before).then_some(value)
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
