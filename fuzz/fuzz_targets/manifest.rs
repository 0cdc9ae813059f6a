//! The share's pointer and manifest parsers (docs/PIPELINE.md) on arbitrary bytes: errors are
//! fine, panics are not; an accepted manifest re-encodes to exactly the bytes it was read from
//! when those were canonical.
#![no_main]

use cipherflow_core::pipeline::{Manifest, Pointer};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let _ = Pointer::decode("fuzz", data);
    let hash = hex::encode(Sha256::digest(data));
    if let Ok(manifest) = Manifest::decode("fuzz", data, &hash) {
        let (bytes, again) = manifest.encode();
        let reread = Manifest::decode("fuzz", &bytes, &again).expect("re-encoded manifest");
        assert_eq!(reread, manifest);
    }
});
