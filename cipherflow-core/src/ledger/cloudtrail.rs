//! Reading AWS's own record of S3 events: CloudTrail log files (`{"Records":[...]}`, usually
//! gzipped) with S3 data events, and S3 event notifications, normalised to [`S3Event`]s.
//!
//! CloudTrail gives object keys raw; S3 event notifications give them form-URL-encoded (`+`
//! is a space, `%2B` a plus), so keys are decoded here and compared as raw strings. Both
//! sources deliver at least once, so events are deduplicated by `eventID` (notifications
//! have none: their request id and sequencer stand in).

use std::collections::BTreeSet;
use std::io::Read;

use serde::Serialize;
use serde_json::Value;

use super::LedgerError;
use super::time::parse_rfc3339;
use crate::Error;

/// Largest decompressed log file accepted.
pub const MAX_LOG_LEN: u64 = 1 << 30;

/// What an event did to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Wrote the object (PutObject, CopyObject destination, multipart completion, created).
    Write,
    /// Read it (GetObject).
    Read,
    /// Deleted it.
    Delete,
    /// Anything else on an object (HeadObject, tagging, ACLs, ...).
    Other,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A CloudTrail S3 data event.
    CloudTrail,
    /// An S3 event notification.
    Notification,
}

/// One S3 object event, from either source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Event {
    /// CloudTrail's `eventID`, or `notification:<request id>:<sequencer>`.
    pub event_id: String,
    /// Where it came from.
    pub source: Source,
    /// `eventTime` in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `eventName` as given (`PutObject`, `ObjectCreated:Put`, ...).
    pub name: String,
    /// What it did.
    pub action: Action,
    /// The bucket.
    pub bucket: String,
    /// The raw object key.
    pub key: String,
    /// The object version, when the event names one.
    pub version_id: Option<String>,
    /// Bytes written or read, when the event says.
    pub size: Option<u64>,
    /// The caller's ARN (CloudTrail) or principal id (notifications).
    pub principal: Option<String>,
    /// For a role session, the role that issued it.
    pub issuer: Option<String>,
    /// Source IP address.
    pub source_ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
}

/// Decodes a form-URL-encoded key: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn form_url_decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn bad(reason: impl Into<String>) -> Error {
    LedgerError::CloudTrail(reason.into()).into()
}

/// Reads the S3 object events in one log file (gzipped or not) or notification message;
/// other events (management events, other services) are skipped.
pub fn read_events(bytes: &[u8]) -> Result<Vec<S3Event>, Error> {
    let mut text = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_LOG_LEN + 1)
            .read_to_end(&mut text)
            .map_err(|e| bad(format!("gzip: {e}")))?;
        if text.len() as u64 > MAX_LOG_LEN {
            return Err(bad("log file decompresses to more than 1 GiB"));
        }
    } else {
        text.extend_from_slice(bytes);
    }
    let doc: Value = serde_json::from_slice(&text).map_err(|e| bad(format!("JSON: {e}")))?;
    let records = doc
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"Records\" array"))?;
    let mut out = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let event = match record.get("eventSource").and_then(Value::as_str) {
            Some("s3.amazonaws.com") => from_cloudtrail(record),
            Some("aws:s3") => from_notification(record),
            _ => continue,
        }
        .map_err(|reason| bad(format!("record {i}: {reason}")))?;
        out.extend(event);
    }
    Ok(out)
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A byte count: CloudTrail writes `bytesTransferredIn` as a JSON number, sometimes `3.0`.
fn count(v: &Value, path: &[&str]) -> Option<u64> {
    let n = path.iter().try_fold(v, |v, k| v.get(k))?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    })
}

fn time_of(record: &Value) -> Result<u64, String> {
    let t = text(record, &["eventTime"]).ok_or("no eventTime")?;
    parse_rfc3339(&t).ok_or_else(|| format!("eventTime {t:?} is not an RFC 3339 UTC time"))
}

fn from_cloudtrail(record: &Value) -> Result<Option<S3Event>, String> {
    let name = text(record, &["eventName"]).ok_or("no eventName")?;
    let (Some(bucket), Some(key)) = (
        text(record, &["requestParameters", "bucketName"]),
        text(record, &["requestParameters", "key"]),
    ) else {
        return Ok(None); // a bucket-level event
    };
    let action = match name.as_str() {
        "PutObject" | "CopyObject" | "CompleteMultipartUpload" => Action::Write,
        "GetObject" => Action::Read,
        "DeleteObject" | "DeleteObjects" => Action::Delete,
        _ => Action::Other,
    };
    let size = match action {
        Action::Write => count(record, &["additionalEventData", "bytesTransferredIn"]),
        Action::Read => count(record, &["additionalEventData", "bytesTransferredOut"]),
        _ => None,
    }
    .filter(|&n| n > 0 || name == "PutObject");
    Ok(Some(S3Event {
        event_id: text(record, &["eventID"]).ok_or("no eventID")?,
        source: Source::CloudTrail,
        time_ms: time_of(record)?,
        action,
        bucket,
        key,
        version_id: text(record, &["responseElements", "x-amz-version-id"])
            .or_else(|| text(record, &["requestParameters", "versionId"])),
        size,
        principal: text(record, &["userIdentity", "arn"]),
        issuer: text(
            record,
            &["userIdentity", "sessionContext", "sessionIssuer", "arn"],
        ),
        source_ip: text(record, &["sourceIPAddress"]),
        user_agent: text(record, &["userAgent"]),
        name,
    }))
}

fn from_notification(record: &Value) -> Result<Option<S3Event>, String> {
    let name = text(record, &["eventName"]).ok_or("no eventName")?;
    let bucket = text(record, &["s3", "bucket", "name"]).ok_or("no s3.bucket.name")?;
    let raw_key = text(record, &["s3", "object", "key"]).ok_or("no s3.object.key")?;
    let key = form_url_decode(&raw_key)
        .ok_or_else(|| format!("object key {raw_key:?} is not form-URL-encoded UTF-8"))?;
    let action = if name.starts_with("ObjectCreated:") {
        Action::Write
    } else if name.starts_with("ObjectRemoved:") {
        Action::Delete
    } else {
        Action::Other
    };
    let request = text(record, &["responseElements", "x-amz-request-id"]).unwrap_or_default();
    let sequencer = text(record, &["s3", "object", "sequencer"]).unwrap_or_default();
    Ok(Some(S3Event {
        event_id: format!("notification:{request}:{sequencer}"),
        source: Source::Notification,
        time_ms: time_of(record)?,
        action,
        bucket,
        key,
        version_id: text(record, &["s3", "object", "versionId"]),
        size: count(record, &["s3", "object", "size"]),
        principal: text(record, &["userIdentity", "principalId"]),
        issuer: None,
        source_ip: text(record, &["requestParameters", "sourceIPAddress"]),
        user_agent: None,
        name,
    }))
}

/// Drops repeated events (same `event_id`, first kept) and sorts by time, then id.
pub fn dedupe_and_sort(events: Vec<S3Event>) -> Vec<S3Event> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<S3Event> = events
        .into_iter()
        .filter(|e| seen.insert(e.event_id.clone()))
        .collect();
    out.sort_by(|a, b| (a.time_ms, &a.event_id).cmp(&(b.time_ms, &b.event_id)));
    out
}
