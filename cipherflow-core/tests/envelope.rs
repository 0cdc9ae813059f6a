//! The envelope from outside: round trips, tampering, truncation, signatures, rewrap, limits.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use cipherflow_core::crypto::{self, Aes256GcmKey, Backend, CryptoError, SignatureAlgorithm};
use cipherflow_core::{
    Error, IntegrityError, KeyError, KeyId, KeyWrapper, Opener, RsaPrivateKey, RsaPublicKey,
    Sealer, SignatureError, SigningKey, VerifyingKey, inspect, rewrap,
};
use proptest::prelude::*;
use zeroize::Zeroizing;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn alice() -> &'static RsaPrivateKey {
    static K: OnceLock<RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| RsaPrivateKey::from_bytes(&fixture("alice.pem")).unwrap())
}

fn bob() -> &'static RsaPrivateKey {
    static K: OnceLock<RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| RsaPrivateKey::from_bytes(&fixture("bob.pem")).unwrap())
}

fn producer() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::from_bytes(&fixture("producer.pem")).unwrap())
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Three chunks of 1 KiB (the last short), for exhaustive tamper tests.
fn three_chunks(signed: bool) -> (Vec<u8>, Vec<u8>) {
    let plaintext = data(2 * 1024 + 300);
    let mut sealer = Sealer::new(&[alice().public_key()])
        .chunk_size(1024)
        .metadata("table", "t");
    if signed {
        sealer = sealer.signer(producer());
    }
    (sealer.seal_bytes(&plaintext).unwrap(), plaintext)
}

fn header_len(envelope: &[u8]) -> usize {
    inspect(envelope).unwrap().header_len as usize
}

#[test]
fn round_trips_with_metadata_and_two_recipients() {
    let plaintext = data(5000);
    let sealed = Sealer::new(&[alice().public_key(), bob().public_key()])
        .chunk_size(1024)
        .metadata("table", "public.customers")
        .metadata("snapshot_id", "7")
        .seal_bytes(&plaintext)
        .unwrap();
    assert_eq!(Opener::new(alice()).open_bytes(&sealed).unwrap(), plaintext);
    assert_eq!(Opener::new(bob()).open_bytes(&sealed).unwrap(), plaintext);
    let info = inspect(&sealed[..]).unwrap();
    assert_eq!(
        info.recipients,
        vec![alice().public_key().key_id(), bob().public_key().key_id()]
    );
    assert_eq!(info.metadata["table"], "public.customers");
    assert_eq!(info.chunk_count, 5);
    assert_eq!(info.plaintext_len, 5000);
    assert_eq!(info.envelope_len, sealed.len() as u64);
    assert_eq!(info.signer, None);
}

#[test]
fn every_single_byte_flip_is_refused() {
    for signed in [false, true] {
        let (sealed, _) = three_chunks(signed);
        let verifier = producer().verifying_key();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            let mut opener = Opener::new(alice());
            if signed {
                opener = opener.require_signer(verifier);
            }
            let result = opener.open_bytes(&bad);
            assert!(
                result.is_err(),
                "flip at byte {i} of {} (signed: {signed}) was accepted",
                sealed.len()
            );
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let (sealed, _) = three_chunks(true);
    for len in 0..sealed.len() {
        assert!(
            Opener::new(alice()).open_bytes(&sealed[..len]).is_err(),
            "truncated to {len} accepted"
        );
        let required = Opener::new(alice()).require_signer(producer().verifying_key());
        assert!(
            required.open_bytes(&sealed[..len]).is_err(),
            "truncated to {len} accepted (signer)"
        );
    }
    // Unsigned: cutting whole chunks off is refused at the chunk that became last.
    let (sealed, _) = three_chunks(false);
    let h = header_len(&sealed);
    for chunks in 0..3 {
        let cut = &sealed[..h + chunks * 1040];
        let err = Opener::new(alice()).open_bytes(cut).unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{chunks} chunks: {err}");
    }
}

#[test]
fn appended_bytes_are_refused() {
    let (sealed, _) = three_chunks(false);
    for extra in [1usize, 16, 17, 1040] {
        let mut longer = sealed.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        assert!(
            Opener::new(alice()).open_bytes(&longer).is_err(),
            "{extra} extra bytes accepted"
        );
    }
}

#[test]
fn swapped_duplicated_and_dropped_chunks_are_refused() {
    let (sealed, _) = three_chunks(false);
    let h = header_len(&sealed);
    let chunk = |i: usize| &sealed[h + i * 1040..(h + (i + 1) * 1040).min(sealed.len())];
    let build = |order: &[usize]| {
        let mut v = sealed[..h].to_vec();
        for &i in order {
            v.extend_from_slice(chunk(i));
        }
        v
    };
    assert_eq!(
        Opener::new(alice())
            .open_bytes(&build(&[0, 1, 2]))
            .unwrap()
            .len(),
        2 * 1024 + 300
    );
    for order in [
        &[1, 0, 2][..],
        &[0, 0, 2],
        &[0, 1, 1, 2],
        &[0, 2],
        &[1, 2],
        &[0, 1],
    ] {
        let err = Opener::new(alice()).open_bytes(&build(order)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Integrity(IntegrityError::Chunk(_) | IntegrityError::Length)
            ),
            "{order:?}: {err}"
        );
    }
}

#[test]
fn wrong_key_has_its_own_error() {
    let sealed = Sealer::new(&[alice().public_key()])
        .seal_bytes(b"secret")
        .unwrap();
    let err = Opener::new(bob()).open_bytes(&sealed).unwrap_err();
    match &err {
        Error::WrongKey { key_id, recipients } => {
            assert_eq!(*key_id, bob().public_key().key_id());
            assert!(recipients.contains(&alice().public_key().key_id().to_string()));
        }
        other => panic!("expected WrongKey, got {other}"),
    }
    assert!(err.to_string().starts_with("wrong key"));
}

/// Counts AES-GCM keys made and chunks opened, to prove what happens before the body.
struct Counting {
    keys: AtomicUsize,
}

struct CountingKey(Box<dyn Aes256GcmKey>, &'static Counting);

static CHUNKS_OPENED: AtomicUsize = AtomicUsize::new(0);

impl Aes256GcmKey for CountingKey {
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> [u8; 16] {
        self.0.seal_in_place(nonce, aad, in_out)
    }
    fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), CryptoError> {
        let _ = self.1;
        CHUNKS_OPENED.fetch_add(1, Ordering::SeqCst);
        self.0.open_in_place(nonce, aad, in_out, tag)
    }
}

static COUNTING: Counting = Counting {
    keys: AtomicUsize::new(0),
};

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn aes256gcm(&self, key: &[u8; 32]) -> Box<dyn Aes256GcmKey> {
        self.keys.fetch_add(1, Ordering::SeqCst);
        Box::new(CountingKey(
            crypto::default_backend().aes256gcm(key),
            &COUNTING,
        ))
    }
    fn rsa_oaep_encrypt(&self, spki: &[u8], pt: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crypto::default_backend().rsa_oaep_encrypt(spki, pt)
    }
    fn rsa_oaep_decrypt(&self, der: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        crypto::default_backend().rsa_oaep_decrypt(der, ct)
    }
    fn sign(&self, a: SignatureAlgorithm, der: &[u8], m: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crypto::default_backend().sign(a, der, m)
    }
    fn verify(
        &self,
        a: SignatureAlgorithm,
        spki: &[u8],
        m: &[u8],
        s: &[u8],
    ) -> Result<(), CryptoError> {
        crypto::default_backend().verify(a, spki, m, s)
    }
    fn generate_rsa(&self, bits: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        crypto::default_backend().generate_rsa(bits)
    }
    fn generate_p256(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        crypto::default_backend().generate_p256()
    }
}

#[test]
fn a_bad_commitment_is_refused_before_any_chunk_is_decrypted() {
    let (sealed, _) = three_chunks(false);
    let mut bad = sealed.clone();
    bad[48] ^= 1; // first byte of the commitment (FORMAT.md 1.1)
    let before = (
        COUNTING.keys.load(Ordering::SeqCst),
        CHUNKS_OPENED.load(Ordering::SeqCst),
    );
    let err = Opener::new(alice())
        .backend(&COUNTING)
        .open_bytes(&bad)
        .unwrap_err();
    assert!(
        matches!(err, Error::Integrity(IntegrityError::Header)),
        "{err}"
    );
    assert_eq!(
        (
            COUNTING.keys.load(Ordering::SeqCst),
            CHUNKS_OPENED.load(Ordering::SeqCst)
        ),
        before
    );
    // The same opener does decrypt chunks of the intact envelope.
    Opener::new(alice())
        .backend(&COUNTING)
        .open_bytes(&sealed)
        .unwrap();
    assert!(CHUNKS_OPENED.load(Ordering::SeqCst) >= before.1 + 3);
}

#[test]
fn a_stanza_moved_into_another_envelope_is_refused() {
    let a = Sealer::new(&[alice().public_key()])
        .seal_bytes(b"first")
        .unwrap();
    let b = Sealer::new(&[alice().public_key()])
        .seal_bytes(b"second")
        .unwrap();
    // Both headers have the same layout; the stanza's wrapped key sits just before the MAC.
    let (ha, hb) = (header_len(&a), header_len(&b));
    assert_eq!(ha, hb);
    let wrapped = ha - 32 - 256..ha - 32;
    let mut forged = b.clone();
    forged[wrapped.clone()].copy_from_slice(&a[wrapped]);
    let err = Opener::new(alice()).open_bytes(&forged).unwrap_err();
    assert!(
        matches!(err, Error::Integrity(IntegrityError::Header)),
        "{err}"
    );
}

#[test]
fn signatures_are_required_checked_and_bound() {
    let plaintext = data(3000);
    let signed = Sealer::new(&[alice().public_key()])
        .chunk_size(1024)
        .signer(producer())
        .seal_bytes(&plaintext)
        .unwrap();
    let unsigned = Sealer::new(&[alice().public_key()])
        .chunk_size(1024)
        .seal_bytes(&plaintext)
        .unwrap();
    let verifier = producer().verifying_key();
    let open =
        |env: &[u8], v: &VerifyingKey| Opener::new(alice()).require_signer(v).open_bytes(env);

    assert_eq!(open(&signed, verifier).unwrap(), plaintext);
    assert_eq!(Opener::new(alice()).open_bytes(&signed).unwrap(), plaintext);
    assert!(matches!(
        open(&unsigned, verifier).unwrap_err(),
        Error::Signature(SignatureError::Missing)
    ));

    let other = SigningKey::generate_p256().unwrap();
    let by_other = Sealer::new(&[alice().public_key()])
        .signer(&other)
        .seal_bytes(&plaintext)
        .unwrap();
    assert!(matches!(
        open(&by_other, verifier).unwrap_err(),
        Error::Signature(SignatureError::UnknownSigner { .. })
    ));

    let mut altered = signed.clone();
    let n = altered.len();
    altered[n - 10] ^= 1;
    assert!(matches!(
        open(&altered, verifier).unwrap_err(),
        Error::Signature(SignatureError::Invalid)
    ));

    // RSA-PSS producers work the same way.
    let rsa_producer = SigningKey::from_bytes(&fixture("producer-rsa.pem")).unwrap();
    let pss = Sealer::new(&[alice().public_key()])
        .signer(&rsa_producer)
        .seal_bytes(&plaintext)
        .unwrap();
    assert_eq!(open(&pss, rsa_producer.verifying_key()).unwrap(), plaintext);
    assert_eq!(
        inspect(&pss[..]).unwrap().signer,
        Some((SignatureAlgorithm::RsaPssSha256, rsa_producer.key_id()))
    );
}

#[test]
fn streaming_with_a_signer_holds_the_last_batch_until_the_signature_verifies() {
    let plaintext = data(2000);
    let mut signed = Sealer::new(&[alice().public_key()])
        .chunk_size(1024)
        .signer(producer())
        .seal_bytes(&plaintext)
        .unwrap();
    let n = signed.len();
    signed[n - 1] ^= 1;
    let mut reader = Opener::new(alice())
        .require_signer(producer().verifying_key())
        .open_reader(&signed[..])
        .unwrap();
    let mut out = Vec::new();
    assert!(reader.read_to_end(&mut out).is_err());
    assert!(
        out.is_empty(),
        "released {} bytes before the signature verified",
        out.len()
    );
}

#[test]
fn rewrap_keeps_the_body_and_the_signature() {
    let plaintext = data(4000);
    let sealed = Sealer::new(&[alice().public_key()])
        .chunk_size(1024)
        .signer(producer())
        .seal_bytes(&plaintext)
        .unwrap();
    let mut rewrapped = Vec::new();
    let bob_pub: &dyn KeyWrapper = bob().public_key();
    let recipients = rewrap(
        &sealed[..],
        &mut rewrapped,
        alice(),
        &[bob_pub],
        &[alice().public_key().key_id()],
    )
    .unwrap();
    assert_eq!(recipients, vec![bob().public_key().key_id()]);
    let (h1, h2) = (header_len(&sealed), header_len(&rewrapped));
    assert_eq!(
        &sealed[h1..],
        &rewrapped[h2..],
        "body and signature bytes must be identical"
    );
    let verifier = producer().verifying_key();
    assert_eq!(
        Opener::new(bob())
            .require_signer(verifier)
            .open_bytes(&rewrapped)
            .unwrap(),
        plaintext
    );
    assert!(matches!(
        Opener::new(alice()).open_bytes(&rewrapped).unwrap_err(),
        Error::WrongKey { .. }
    ));
    // Someone who is not a recipient cannot rewrap.
    let mut out = Vec::new();
    assert!(matches!(
        rewrap(&sealed[..], &mut out, bob(), &[], &[]).unwrap_err(),
        Error::WrongKey { .. }
    ));
    // Removing the last recipient, or a key that is not there, is refused.
    let alice_id = alice().public_key().key_id();
    assert!(rewrap(&sealed[..], &mut Vec::new(), alice(), &[], &[alice_id]).is_err());
    assert!(
        rewrap(
            &sealed[..],
            &mut Vec::new(),
            alice(),
            &[],
            &[KeyId([7; 32])]
        )
        .is_err()
    );
    let alice_pub: &dyn KeyWrapper = alice().public_key();
    assert!(rewrap(&sealed[..], &mut Vec::new(), alice(), &[alice_pub], &[]).is_err());
}

#[test]
fn random_access_opens_any_chunk_alone() {
    let plaintext = data(10 * 1024 + 17);
    let sealed = Sealer::new(&[alice().public_key()])
        .chunk_size(1024)
        .seal_bytes(&plaintext)
        .unwrap();
    let mut ra = Opener::new(alice())
        .random_access(Cursor::new(&sealed))
        .unwrap();
    assert_eq!(ra.chunk_count(), 11);
    assert_eq!(ra.plaintext_len(), plaintext.len() as u64);
    for i in (0..11).rev() {
        let start = i as usize * 1024;
        let end = (start + 1024).min(plaintext.len());
        assert_eq!(ra.read_chunk(i).unwrap(), &plaintext[start..end]);
    }
    assert!(ra.read_chunk(11).is_err());
    let mut bad = sealed.clone();
    let h = header_len(&sealed);
    bad[h + 3 * 1040 + 1] ^= 1;
    let mut ra = Opener::new(alice())
        .random_access(Cursor::new(&bad))
        .unwrap();
    assert!(ra.read_chunk(2).is_ok());
    assert!(matches!(
        ra.read_chunk(3).unwrap_err(),
        Error::Integrity(IntegrityError::Chunk(3))
    ));
}

#[test]
fn open_file_leaves_nothing_behind_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (sealed, plaintext) = three_chunks(false);
    let good = dir.path().join("good.cf");
    std::fs::write(&good, &sealed).unwrap();
    let out = dir.path().join("out.csv");
    Opener::new(alice()).open_file(&good, &out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), plaintext);

    let mut tampered = sealed.clone();
    let n = tampered.len();
    tampered[n - 5] ^= 1; // the last chunk: earlier chunks were already written to the temp file
    let bad = dir.path().join("bad.cf");
    std::fs::write(&bad, &tampered).unwrap();
    let out2 = dir.path().join("out2.csv");
    assert!(Opener::new(alice()).open_file(&bad, &out2).is_err());
    assert!(!out2.exists());
    // An existing destination is left exactly as it was.
    assert!(Opener::new(alice()).open_file(&bad, &out).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), plaintext);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "stray files: {names:?}");
}

/// `open_file` writes one batch (8 MiB) on a second thread while it opens the next: check it
/// over several batches, signed, with the lookahead carried between recycled buffers, and
/// that a bad chunk in a later batch or a failing write leaves nothing behind.
#[test]
fn open_file_over_several_batches_writes_behind_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let plaintext = data((8 << 20) * 3 + 12_345);
    let sealed = Sealer::new(&[alice().public_key()])
        .chunk_size(4096)
        .signer(producer())
        .seal_bytes(&plaintext)
        .unwrap();
    let opener = Opener::new(alice()).require_signer(producer().verifying_key());
    let good = dir.path().join("good.cf");
    std::fs::write(&good, &sealed).unwrap();
    let out = dir.path().join("out.bin");
    assert_eq!(
        opener.open_file(&good, &out).unwrap(),
        plaintext.len() as u64
    );
    assert!(std::fs::read(&out).unwrap() == plaintext);

    // A chunk of the third batch, and the signature's last byte.
    let h = header_len(&sealed);
    for at in [h + (4096 + 16) * 4300, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 1;
        let src = dir.path().join("bad.cf");
        std::fs::write(&src, &bad).unwrap();
        let dst = dir.path().join("bad.bin");
        assert!(opener.open_file(&src, &dst).is_err(), "byte {at}");
        assert!(!dst.exists(), "byte {at}");
    }
    // A device that refuses writes: the write error is reported, not swallowed.
    let full = std::path::Path::new("/dev/full");
    if full.exists() {
        let err = opener.open_file(&good, full).unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err:?}");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "stray files: {names:?}");
}

#[test]
fn key_files_load_in_every_encoding_with_one_key_id() {
    let ids: Vec<KeyId> = ["alice.pem", "alice.pkcs1.pem", "alice.der"]
        .iter()
        .map(|f| {
            RsaPrivateKey::from_bytes(&fixture(f))
                .unwrap()
                .public_key()
                .key_id()
        })
        .chain(
            ["alice.pub.pem", "alice.pkcs1.pub.pem", "alice.pub.der"]
                .iter()
                .map(|f| RsaPublicKey::from_bytes(&fixture(f)).unwrap().key_id()),
        )
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let sec1 = SigningKey::from_bytes(&fixture("producer.sec1.pem")).unwrap();
    assert_eq!(sec1.key_id(), producer().key_id());
    assert_eq!(
        VerifyingKey::from_bytes(&fixture("producer.pub.pem"))
            .unwrap()
            .key_id(),
        producer().key_id()
    );
    // Debug never shows key material.
    let debug = format!("{:?} {:?}", alice(), producer());
    assert!(debug.contains(&alice().public_key().key_id().to_string()) && !debug.contains("BEGIN"));
    // A private key is refused where a public one is expected, and the reverse.
    assert!(matches!(
        RsaPublicKey::from_bytes(&fixture("alice.pem")).unwrap_err(),
        Error::Key(KeyError::Unsupported(_))
    ));
    assert!(matches!(
        RsaPrivateKey::from_bytes(&fixture("alice.pub.pem")).unwrap_err(),
        Error::Key(KeyError::Unsupported(_))
    ));
    assert!(matches!(
        RsaPublicKey::from_bytes(b"not a key").unwrap_err(),
        Error::Key(KeyError::Malformed(_))
    ));
}

#[test]
fn small_rsa_keys_are_refused() {
    let err = RsaPublicKey::from_bytes(&fixture("weak-1024.pub.pem")).unwrap_err();
    assert!(
        matches!(&err, Error::Key(KeyError::Unsupported(m)) if m.contains("1024 bits")),
        "{err}"
    );
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let k = alice().public_key();
    assert!(matches!(
        Sealer::new(&[k])
            .chunk_size(1000)
            .seal_bytes(b"x")
            .unwrap_err(),
        Error::Misuse(_)
    ));
    assert!(matches!(
        Sealer::new(&[]).seal_bytes(b"x").unwrap_err(),
        Error::Misuse(_)
    ));
    assert!(matches!(
        Sealer::new(&[k, k]).seal_bytes(b"x").unwrap_err(),
        Error::Misuse(_)
    ));
    let big = "v".repeat(70_000);
    let err = Sealer::new(&[k])
        .metadata("k", big)
        .seal_bytes(b"x")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                what: "metadata value length",
                ..
            }
        ),
        "{err}"
    );
    let mut sealer = Sealer::new(&[k]);
    for i in 0..1025 {
        sealer = sealer.metadata(format!("k{i:04}"), "");
    }
    assert!(matches!(
        sealer.seal_bytes(b"x").unwrap_err(),
        Error::Limit {
            what: "metadata entry count",
            ..
        }
    ));
}

#[test]
fn malformed_headers_name_the_offset() {
    let (sealed, _) = three_chunks(false);
    let err = Opener::new(alice())
        .open_bytes(b"PK\x03\x04 a zip file")
        .unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    for cut in [0usize, 5, 9, 11, 15, 40, 80, 83, 90] {
        let err = inspect(&sealed[..cut]).unwrap_err();
        match err {
            Error::Format(f) => assert_eq!(f.offset as usize, cut, "{f}"),
            other => panic!("cut {cut}: {other}"),
        }
    }
    let mut bad_chunk = sealed.clone();
    bad_chunk[12..16].copy_from_slice(&100u32.to_be_bytes());
    let err = inspect(&bad_chunk[..]).unwrap_err();
    assert!(
        err.to_string().contains("at byte 12") && err.to_string().contains("chunk size"),
        "{err}"
    );
    let mut suite = sealed.clone();
    suite[11] = 9;
    assert!(matches!(
        inspect(&suite[..]).unwrap_err(),
        Error::Unsupported {
            what: "algorithm suite",
            value: 9
        }
    ));
}

#[test]
fn writer_and_reader_stream_across_batches() {
    // More than one 8 MiB batch with small writes and reads of odd sizes.
    let plaintext = data(9 * 1024 * 1024 + 12345);
    let mut sealed = Vec::new();
    let sealer = Sealer::new(&[alice().public_key()]).chunk_size(64 * 1024);
    let mut w = sealer.seal_writer(&mut sealed).unwrap();
    for piece in plaintext.chunks(777_777) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap();
    let mut r = Opener::new(alice()).open_reader(&sealed[..]).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 99_991];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert!(out == plaintext);
}

#[test]
fn each_backend_opens_what_the_other_sealed() {
    let plaintext = data(50_000);
    for sealer_backend in crypto::all_backends() {
        for opener_backend in crypto::all_backends() {
            let recipient = alice().public_key().clone().with_backend(sealer_backend);
            let signer = SigningKey::from_bytes(&fixture("producer.pem"))
                .unwrap()
                .with_backend(sealer_backend);
            let sealed = Sealer::new(&[&recipient])
                .chunk_size(4096)
                .signer(&signer)
                .backend(sealer_backend)
                .seal_bytes(&plaintext)
                .unwrap();
            let key = RsaPrivateKey::from_bytes(&fixture("alice.pem"))
                .unwrap()
                .with_backend(opener_backend);
            let verifier = signer.verifying_key().clone().with_backend(opener_backend);
            let opened = Opener::new(&key)
                .require_signer(&verifier)
                .backend(opener_backend)
                .open_bytes(&sealed)
                .unwrap();
            assert_eq!(
                opened,
                plaintext,
                "{} -> {}",
                sealer_backend.name(),
                opener_backend.name()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn round_trip_any_size_and_chunk_size(len in 0usize..20_000, chunk_kib in 1usize..6, write_size in 1usize..5000, seed: u8) {
        let plaintext: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
        let sealer = Sealer::new(&[alice().public_key()]).chunk_size(chunk_kib * 1024);
        let mut sealed = Vec::new();
        let mut w = sealer.seal_writer(&mut sealed).unwrap();
        for piece in plaintext.chunks(write_size) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        let info = inspect(&sealed[..]).unwrap();
        prop_assert_eq!(info.plaintext_len, len as u64);
        prop_assert_eq!(info.chunk_count, (len.div_ceil(chunk_kib * 1024)).max(1) as u64);
        prop_assert_eq!(Opener::new(alice()).open_bytes(&sealed).unwrap(), plaintext);
    }
}

#[test]
fn in_memory_fast_paths_reuse_buffers_and_release_nothing_on_failure() {
    let plaintext = data(3 * 1024 * 1024 + 5);
    let sealer = Sealer::new(&[alice().public_key()]).signer(producer());
    let mut sealed = Vec::new();
    sealer.seal_to_vec(&plaintext, &mut sealed).unwrap();
    let first = sealed.clone();
    // A shorter envelope into the same buffer: nothing of the old one survives.
    sealer.seal_to_vec(&data(10), &mut sealed).unwrap();
    assert_eq!(
        inspect(&sealed[..]).unwrap().envelope_len,
        sealed.len() as u64
    );
    assert_eq!(Opener::new(alice()).open_bytes(&sealed).unwrap(), data(10));

    let opener = Opener::new(alice()).require_signer(producer().verifying_key());
    let mut out = vec![1u8; 50];
    opener.open_to_vec(&first, &mut out).unwrap();
    assert!(out == plaintext);
    let n = first.len();
    let mut bad_chunk = first.clone();
    bad_chunk[n / 2] ^= 1;
    assert!(matches!(
        opener.open_to_vec(&bad_chunk, &mut out).unwrap_err(),
        Error::Integrity(IntegrityError::Chunk(1))
    ));
    assert!(out.is_empty());
    let mut bad_signature = first.clone();
    bad_signature[n - 1] ^= 1;
    out = vec![1u8; 5];
    assert!(matches!(
        opener.open_to_vec(&bad_signature, &mut out).unwrap_err(),
        Error::Signature(SignatureError::Invalid)
    ));
    assert!(out.is_empty());
    out = vec![1u8; 5];
    assert!(opener.open_to_vec(&first[..100], &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn opening_into_a_device_writes_through_it_and_leaves_it_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let (sealed, plaintext) = three_chunks(false);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.cf");
    std::fs::write(&src, &sealed).unwrap();
    let n = Opener::new(alice())
        .open_file(&src, std::path::Path::new("/dev/null"))
        .unwrap();
    assert_eq!(n, plaintext.len() as u64);
    let kind = std::fs::metadata("/dev/null").unwrap().file_type();
    assert!(kind.is_char_device(), "/dev/null was replaced: {kind:?}");
}
