//! Change data capture inputs: the table schema (typed, possibly composite keys), the ordering
//! key of a change, and the readers: AWS DMS CSV (per table, and transaction files) and
//! Debezium JSON. The merge itself is in [`crate::merge`];
//! the semantics are specified in `docs/MERGE.md`.
//!
//! ```
//! use cipherflow_core::cdc::{DmsOptions, KeySpec, Op, TableSchema, read_dms};
//! let schema = TableSchema::new(
//!     vec!["id".into(), "name".into()],
//!     &KeySpec::parse_list("id:int64").unwrap(),
//! )
//! .unwrap();
//! let file = b"Op,id,name\nI,1,Ada\nD,1,\n";
//! let batch = read_dms("20141029-1134010000.csv", &file[..], &schema, &DmsOptions::default())?;
//! assert_eq!(batch.changes[1].op, Op::Delete);
//! # Ok::<(), cipherflow_core::cdc::CdcError>(())
//! ```

mod debezium;
mod dms;
mod error;
mod order;
mod packed;
pub(crate) mod raw;
mod schema;
mod txn;

pub use debezium::{DEBEZIUM_ORDER_SHIFT, DebeziumOptions, read_debezium};
pub use dms::{
    Cell, Change, ChangeBatch, DMS_SEQ_COLUMN, DmsOptions, Op, Reject, read_csv_header, read_dms,
};
pub use error::{CdcError, CdcErrorKind, ColumnRef, Position};
pub use order::{OrderKey, parse_commit_timestamp, parse_seq};
pub use packed::{PackedBatch, PackedChange, read_dms_packed};
pub use schema::{Decimal, Key, KeySpec, KeyType, KeyValue, TableSchema, Timestamp};
pub use txn::{TxnBatches, TxnOptions, TxnTable, read_dms_txn};
