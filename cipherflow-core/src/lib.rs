//! CipherFlow core: share changing database tables with outside parties, encrypted so that
//! even the pipeline that produced the data cannot read it back.
//!
//! This crate has no network, no AWS SDK and needs no async runtime. Which API for which job:
//!
//! - Seal a snapshot for consumers: [`Sealer`] with their [`RsaPublicKey`]s (any
//!   [`KeyWrapper`]), optionally signed by a producer [`SigningKey`] (any [`Signer`]).
//! - Open one as a consumer: [`Opener`] with an [`RsaPrivateKey`] (any [`KeyUnwrapper`]),
//!   optionally requiring a producer's [`VerifyingKey`].
//! - Look at one without a key: [`inspect`]. Share it with someone else: [`rewrap`].
//!
//! ```
//! use cipherflow_core::{Opener, RsaPrivateKey, Sealer};
//! # fn main() -> Result<(), cipherflow_core::Error> {
//! let consumer = RsaPrivateKey::generate(2048)?;
//! let sealed = Sealer::new(&[consumer.public_key()])
//!     .metadata("table", "customers")
//!     .seal_bytes(b"id,name\n1,Ada\n")?;
//! assert_eq!(Opener::new(&consumer).open_bytes(&sealed)?, b"id,name\n1,Ada\n");
//! # Ok(())
//! # }
//! ```
//!
//! The envelope's bytes are specified in `docs/FORMAT.md`; module [`envelope`] follows it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cdc;
pub mod crypto;
pub mod envelope;
mod error;
mod keys;
pub mod ledger;
pub mod merge;
pub mod pipeline;
pub mod records;
mod sign;
pub mod store;

pub use crypto::SignatureAlgorithm;
pub use envelope::{
    Info, OpenReader, Opener, RandomAccess, SealWriter, Sealer, inspect, inspect_file, rewrap,
};
pub use error::{Error, FormatError, IntegrityError, KeyError, SignatureError};
pub use keys::{
    KeyId, KeyUnwrapper, KeyWrapper, MAX_RSA_BITS, MIN_RSA_BITS, RsaPrivateKey, RsaPublicKey,
    WrapAlgorithm,
};
pub use sign::{Signer, SigningKey, Verifier, VerifierClone, VerifyingKey};
