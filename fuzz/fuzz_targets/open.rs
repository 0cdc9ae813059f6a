//! Opening arbitrary bytes with a fixed RSA-2048 key (seeded with real envelopes sealed to it,
//! `seeds/open/`, so mutations reach the body). Never panics; and anything that opens must be
//! one of the seeds' plaintexts, which are all `pattern(len)`: nothing forged gets through.
#![no_main]

use std::io::Cursor;
use std::sync::OnceLock;

use cipherflow_core::{Opener, RsaPrivateKey};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::from_bytes(include_bytes!("../keys/fuzz-rsa2048.pem")).unwrap())
}

/// The plaintext every seed envelope holds (same function in `examples/make_seeds.rs`).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) + 7) as u8).collect()
}

fuzz_target!(|data: &[u8]| {
    let opener = Opener::new(key());
    if let Ok(plaintext) = opener.open_bytes(data) {
        assert_eq!(plaintext, pattern(plaintext.len()), "opened to a plaintext never sealed");
    }
    if let Ok(mut chunks) = opener.random_access(Cursor::new(data)) {
        let n = chunks.chunk_count();
        for index in [0, 1, n.saturating_sub(1), n] {
            if let Ok(chunk) = chunks.read_chunk(index) {
                let start = index as usize * chunks.chunk_size();
                let want = pattern(start + chunk.len());
                assert_eq!(chunk, want[start..], "chunk {index} opened to bytes never sealed");
            }
        }
    }
});
