"""Opening a 1 GiB sealed file to a file: cipherflow.open_file versus a plain `cryptography`
AESGCM loop over the same plaintext in 1 MiB chunks (file in, file out), same run, medians.

    python benches/open_1gib.py [--size-mib 1024] [--runs 3] [--dir /dev/shm]

Build the package in release mode first (`maturin develop --release` or the wheel).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import cipherflow

MiB = 1 << 20


def aesgcm_open(src: Path, dst: Path, key: bytes, chunks: int) -> None:
    aead = AESGCM(key)
    with src.open("rb", buffering=0) as fin, dst.open("wb", buffering=0) as fout:
        for i in range(chunks):
            sealed = fin.read(MiB + 16)
            nonce = i.to_bytes(11, "big") + (b"\x01" if i == chunks - 1 else b"\x00")
            fout.write(aead.decrypt(nonce, sealed, None))


def timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = p.parse_args()
    size = args.size_mib * MiB
    chunks = size // MiB

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        block = os.urandom(MiB)
        plaintext = block * chunks
        key = cipherflow.generate_key(3072)
        (tmp / "snap.cf").write_bytes(cipherflow.seal_bytes(plaintext, [key.public_key()]))

        raw_key = AESGCM.generate_key(bit_length=256)
        aead = AESGCM(raw_key)
        with (tmp / "snap.gcm").open("wb") as f:
            for i in range(chunks):
                nonce = i.to_bytes(11, "big") + (b"\x01" if i == chunks - 1 else b"\x00")
                f.write(aead.encrypt(nonce, plaintext[i * MiB : (i + 1) * MiB], None))
        del plaintext

        def run_cipherflow() -> None:
            cipherflow.open_file(tmp / "snap.cf", tmp / "out-cf.bin", key)

        def run_aesgcm() -> None:
            aesgcm_open(tmp / "snap.gcm", tmp / "out-gcm.bin", raw_key, chunks)

        run_cipherflow()  # warm up page cache and check correctness
        run_aesgcm()
        assert (tmp / "out-cf.bin").stat().st_size == size
        assert (tmp / "out-gcm.bin").stat().st_size == size

        # Interleaved, so that load from elsewhere on the machine hits both alike.
        cf_times, gcm_times = [], []
        for _ in range(args.runs):
            cf_times.append(timed(run_cipherflow))
            gcm_times.append(timed(run_aesgcm))
        cf, gcm = statistics.median(cf_times), statistics.median(gcm_times)
        gib = size / (1 << 30)
        print(f"size {args.size_mib} MiB, {args.runs} runs, cores {os.cpu_count()}, dir {tmp}")
        print(f"cipherflow.open_file      median {cf:.3f} s  ({gib / cf:.2f} GiB/s)")
        print(f"cryptography AESGCM loop  median {gcm:.3f} s  ({gib / gcm:.2f} GiB/s)")
        print(f"speed-up {gcm / cf:.2f}x (load average {os.getloadavg()[0]:.1f})")
        print("samples cipherflow", " ".join(f"{t:.3f}" for t in cf_times))
        print("samples aesgcm    ", " ".join(f"{t:.3f}" for t in gcm_times))


if __name__ == "__main__":
    main()
