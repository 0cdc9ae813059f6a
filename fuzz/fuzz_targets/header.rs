//! Header parsing and `inspect` on arbitrary bytes: errors are fine, panics are not.
#![no_main]

use cipherflow_core::envelope::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    if let Ok(header) = Header::read(&mut rest) {
        // It consumed exactly its own bytes.
        assert_eq!(header.encoded_len(), data.len() - rest.len());
        let _ = header.signature_len();
    }
    if let Ok(info) = cipherflow_core::inspect(data) {
        assert_eq!(info.envelope_len, data.len() as u64);
        assert!(info.header_len + info.plaintext_len <= info.envelope_len);
    }
});
