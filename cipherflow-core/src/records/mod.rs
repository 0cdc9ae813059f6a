//! Records: JSON and CSV records from producers that are not databases (device uploads, HTTP
//! posts), validated against a declared [`RecordSchema`] and turned into merge upserts.
//! The format and rules are specified in `docs/RECORDS.md`.
//!
//! ```
//! use cipherflow_core::records::{Format, ReadOptions, RecordSchema, Value, read_records};
//! let schema = RecordSchema::from_toml(r#"
//!     name = "ProcessedRecords"
//!     key = ["device_id", "timestamp"]
//!     [columns.device_id]
//!     type = "string"
//!     pattern = "^device-[0-9]{3}$"
//!     [columns.timestamp]
//!     type = "timestamp"
//!     [columns.value]
//!     type = "decimal"
//!     max = 1000
//! "#)?;
//! let file = br#"[{"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": 1000.50}]"#;
//! let err = read_records("up.json", file, Format::Json, &schema, &ReadOptions::default())
//!     .unwrap_err();
//! assert_eq!(
//!     err.errors()[0].to_string(),
//!     r#"up.json, record 1 (line 1), field "value": 1000.50 is greater than the maximum 1000"#
//! );
//! # Ok::<(), cipherflow_core::records::RecordsError>(())
//! ```

mod error;
mod ingest;
mod json;
mod read;
mod schema;
mod sink;
mod validate;
mod value;

/// The string type of [`Value::String`] and [`Value::Decimal`].
pub use compact_str::CompactString;
pub use error::{Reason, RecordError, RecordsError};
pub use ingest::{
    Ingest, IngestError, IngestLedger, IngestReport, RecordSink, RejectTarget, SinkError,
    SinkReport, Validated,
};
pub use read::{
    Format, ReadOptions, Record, Records, Rejected, read_records, read_records_from, write_rejects,
};
pub use schema::{Column, ColumnType, Extra, RecordSchema};
pub use sink::{to_changes, version_seq};
pub use value::{Rfc3339, Value};
