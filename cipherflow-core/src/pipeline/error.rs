//! What can go wrong in a pipeline step or a consumer pull, beyond the envelope, CDC and store
//! errors those fold in.

/// A pipeline or pull failure; each names the object or setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The configuration is invalid.
    #[error("configuration {source_name}: {reason}")]
    Config {
        /// The file (or `builder`).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A landed object cannot be read as the pipeline's input (a records input with a name
    /// whose extension says no format).
    #[error("{object}: {reason}")]
    Input {
        /// The object.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// A manifest or pointer is malformed.
    #[error("{object}: {reason}")]
    Manifest {
        /// The object.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// An object's plaintext does not hash to what the signed manifest says.
    #[error("{object}: content hashes to {found}, the manifest names {expected}")]
    Mismatch {
        /// The object.
        object: String,
        /// The hash the manifest gives.
        expected: String,
        /// The hash found.
        found: String,
    },
    /// The share went back to an older generation than this consumer already pulled.
    #[error(
        "the share is at generation {found}, older than generation {seen} already pulled (rollback refused)"
    )]
    Rollback {
        /// The generation already pulled.
        seen: u64,
        /// The generation found.
        found: u64,
    },
    /// A partition number outside the table's partitions.
    #[error("table {table} has partitions 0 to {last}, not {partition}")]
    NoPartition {
        /// The table.
        table: String,
        /// The partition asked for.
        partition: u32,
        /// The table's last partition.
        last: u32,
    },
    /// Concurrent runs kept winning the manifest swap.
    #[error("gave up after {attempts} attempts: other runs kept publishing first")]
    Contended {
        /// Attempts made.
        attempts: u32,
    },
}
