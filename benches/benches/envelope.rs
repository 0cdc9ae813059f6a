//! Envelope throughput against its peer, raw aws-lc-rs AES-256-GCM.
//!
//! Groups (throughput in bytes, so criterion prints GiB/s):
//! - `seal_256MiB`: raw `LessSafeKey::seal_in_place_separate_tag` over 1 MiB pieces, single
//!   threaded (the peer), the same on both cores with rayon (the ceiling), and
//!   `Sealer::seal_bytes` (default chunk size, one RSA-2048 recipient).
//! - `open_256MiB`: the same for `open_in_place_separate_tag` and `Opener::open_bytes`.
//! - Both also have `reference_copy_to_new_vec` (the cost of returning a fresh 256 MiB buffer)
//!   and the envelope writing into / reading into a reused buffer, to split the overhead.
//! - `chunk_size_256MiB`: `seal_bytes` / `open_bytes` at 64 KiB, 256 KiB, 1 MiB and 4 MiB
//!   chunks (FORMAT.md section 6).
//!
//! Run: `cargo bench -p cipherflow-benches` (see README.md). Smoke test, every bench once:
//! `cargo bench -p cipherflow-benches -- --test`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use cipherflow_core::envelope::DEFAULT_CHUNK_SIZE;
use cipherflow_core::{KeyWrapper, Opener, RsaPrivateKey, Sealer};
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use rayon::prelude::*;

const TOTAL: usize = 256 << 20;
const PIECE: usize = 1 << 20;
const TAG_LEN: usize = 16;
const CHUNK_SIZES: [usize; 4] = [64 << 10, 256 << 10, 1 << 20, 4 << 20];

/// Deterministic, incompressible-enough filler (AES-GCM's speed does not depend on the data;
/// this only avoids 256 MiB of zeros and keeps setup fast compared with an OS RNG).
fn plaintext() -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(TOTAL);
    while v.len() < TOTAL {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v.extend_from_slice(&state.to_le_bytes());
    }
    v
}

fn raw_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).expect("AES-256 key"))
}

fn nonce(i: usize) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&(i as u64).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Spot checks that the output is the input: first, middle and last 4 KiB, and the length.
fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len());
    let n = want.len();
    for range in [0..4096, n / 2..n / 2 + 4096, n - 4096..n] {
        assert_eq!(got[range.clone()], want[range]);
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    // Each iteration moves 256 MiB (~50-200 ms): flat sampling, the minimum 10 samples.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(TOTAL as u64));
}

fn seal_envelope(recipient: &dyn KeyWrapper, data: &[u8], chunk_size: usize) -> Vec<u8> {
    Sealer::new(&[recipient])
        .chunk_size(chunk_size)
        .seal_bytes(data)
        .expect("seal")
}

/// Sealed chunk count and envelope length lower bound for `len` plaintext bytes.
fn sealed_body_len(len: usize, chunk_size: usize) -> usize {
    len + len.div_ceil(chunk_size).max(1) * TAG_LEN
}

fn benches(c: &mut Criterion) {
    let data = plaintext();
    let key = raw_key();
    // One recipient, generated once outside every measured loop.
    let consumer = RsaPrivateKey::generate(2048).expect("RSA-2048");
    let recipient: &dyn KeyWrapper = consumer.public_key();

    // --- seal ---------------------------------------------------------------------------
    {
        let mut group = c.benchmark_group("seal_256MiB");
        configure(&mut group);

        let mut buf = data.clone();
        group.bench_function("raw_aws_lc_1MiB_1thread", |b| {
            b.iter(|| {
                let mut tags = 0usize;
                for (i, piece) in buf.chunks_mut(PIECE).enumerate() {
                    let tag = key
                        .seal_in_place_separate_tag(nonce(i), Aad::empty(), piece)
                        .expect("seal");
                    black_box(tag.as_ref());
                    tags += 1;
                }
                assert_eq!(tags, TOTAL / PIECE);
                black_box(&mut buf);
            })
        });
        group.bench_function("raw_aws_lc_1MiB_rayon", |b| {
            b.iter(|| {
                let tags: Vec<Tag> = buf
                    .par_chunks_mut(PIECE)
                    .enumerate()
                    .map(|(i, piece)| {
                        key.seal_in_place_separate_tag(nonce(i), Aad::empty(), piece)
                            .expect("seal")
                    })
                    .collect();
                assert_eq!(tags.len(), TOTAL / PIECE);
                black_box((&tags, &mut buf));
            })
        });
        drop(buf);

        // Reference: the floor for any API that returns a new 256 MiB buffer (allocation,
        // page faults, one copy), which the in-place raw peer does not pay.
        group.bench_function("reference_copy_to_new_vec", |b| {
            b.iter(|| {
                let copy = black_box(&data).to_vec();
                assert_eq!(copy.len(), TOTAL);
                black_box(copy)
            })
        });

        let min_len = sealed_body_len(TOTAL, DEFAULT_CHUNK_SIZE);
        group.bench_function("sealer_seal_bytes", |b| {
            b.iter(|| {
                let sealed = Sealer::new(&[recipient])
                    .seal_bytes(black_box(&data))
                    .expect("seal");
                // Header (~400 bytes with one RSA-2048 stanza) + body.
                assert!(sealed.len() > min_len && sealed.len() < min_len + 4096);
                black_box(sealed)
            })
        });
        // The same work into an output buffer reused across iterations (already faulted in):
        // what the envelope itself costs, without the fresh 256 MiB allocation.
        let mut out: Vec<u8> = Vec::with_capacity(min_len + 4096);
        group.bench_function("sealer_seal_writer_reused_vec", |b| {
            b.iter(|| {
                out.clear();
                let mut writer = Sealer::new(&[recipient])
                    .seal_writer(&mut out)
                    .expect("header");
                writer.write_all(black_box(&data)).expect("seal");
                writer.finish().expect("finish");
                assert!(out.len() > min_len && out.len() < min_len + 4096);
                black_box(&out);
            })
        });
        // The in-memory fast path into a reused buffer: one parallel pass that copies each
        // chunk into place and seals it there. The fair peer of the raw in-place loop.
        let mut fast: Vec<u8> = Vec::new();
        group.bench_function("sealer_seal_to_vec_reused", |b| {
            b.iter(|| {
                Sealer::new(&[recipient])
                    .seal_to_vec(black_box(&data), &mut fast)
                    .expect("seal");
                assert!(fast.len() > min_len && fast.len() < min_len + 4096);
                black_box(&fast);
            })
        });
        drop(fast);
        drop(out);
        group.finish();
    }

    // --- open ---------------------------------------------------------------------------
    {
        let mut group = c.benchmark_group("open_256MiB");
        configure(&mut group);

        // Raw ciphertext pieces and their tags, made once.
        let mut ciphertext = data.clone();
        let tags: Vec<[u8; TAG_LEN]> = ciphertext
            .chunks_mut(PIECE)
            .enumerate()
            .map(|(i, piece)| {
                let tag = key
                    .seal_in_place_separate_tag(nonce(i), Aad::empty(), piece)
                    .expect("seal");
                tag.as_ref().try_into().expect("16-byte tag")
            })
            .collect();
        // Opening is in place, so every iteration gets a fresh copy of the ciphertext; the
        // copy is setup, outside the measured time.
        group.bench_function("raw_aws_lc_1MiB_1thread", |b| {
            b.iter_batched_ref(
                || ciphertext.clone(),
                |buf| {
                    for (i, piece) in buf.chunks_mut(PIECE).enumerate() {
                        key.open_in_place_separate_tag(nonce(i), Aad::empty(), &tags[i], piece)
                            .expect("open");
                    }
                    assert_same(buf, &data);
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("raw_aws_lc_1MiB_rayon", |b| {
            b.iter_batched_ref(
                || ciphertext.clone(),
                |buf| {
                    buf.par_chunks_mut(PIECE)
                        .enumerate()
                        .for_each(|(i, piece)| {
                            key.open_in_place_separate_tag(nonce(i), Aad::empty(), &tags[i], piece)
                                .expect("open");
                        });
                    assert_same(buf, &data);
                },
                BatchSize::PerIteration,
            )
        });
        drop(ciphertext);

        let envelope = seal_envelope(recipient, &data, DEFAULT_CHUNK_SIZE);
        group.bench_function("reference_copy_to_new_vec", |b| {
            b.iter(|| {
                let copy = black_box(&envelope).to_vec();
                assert_eq!(copy.len(), envelope.len());
                black_box(copy)
            })
        });
        group.bench_function("opener_open_bytes", |b| {
            b.iter(|| {
                let opened = Opener::new(&consumer)
                    .open_bytes(black_box(&envelope))
                    .expect("open");
                assert_same(&opened, &data);
                black_box(opened)
            })
        });
        // Into an output buffer reused across iterations (see the seal group).
        let mut out = vec![0u8; TOTAL];
        group.bench_function("opener_open_reader_reused_vec", |b| {
            b.iter(|| {
                let mut reader = Opener::new(&consumer)
                    .open_reader(black_box(&envelope[..]))
                    .expect("header");
                reader.read_exact(&mut out).expect("open");
                assert_eq!(reader.read(&mut [0u8; 1]).expect("end"), 0);
                assert_same(&out, &data);
            })
        });
        let mut fast: Vec<u8> = Vec::new();
        group.bench_function("opener_open_to_vec_reused", |b| {
            b.iter(|| {
                Opener::new(&consumer)
                    .open_to_vec(black_box(&envelope), &mut fast)
                    .expect("open");
                assert_same(&fast, &data);
            })
        });
        drop(fast);
        drop(out);
        group.finish();
    }

    // --- chunk size ---------------------------------------------------------------------
    {
        let mut group = c.benchmark_group("chunk_size_256MiB");
        configure(&mut group);
        for &chunk_size in &CHUNK_SIZES {
            let label = format!("{}KiB", chunk_size >> 10);
            let min_len = sealed_body_len(TOTAL, chunk_size);
            group.bench_function(format!("seal/{label}"), |b| {
                b.iter(|| {
                    let sealed = seal_envelope(recipient, black_box(&data), chunk_size);
                    assert!(sealed.len() > min_len && sealed.len() < min_len + 4096);
                    black_box(sealed)
                })
            });
            let envelope = seal_envelope(recipient, &data, chunk_size);
            group.bench_function(format!("open/{label}"), |b| {
                b.iter(|| {
                    let opened = Opener::new(&consumer)
                        .open_bytes(black_box(&envelope))
                        .expect("open");
                    assert_same(&opened, &data);
                    black_box(opened)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(envelope, benches);
criterion_main!(envelope);
