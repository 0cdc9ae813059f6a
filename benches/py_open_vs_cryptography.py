#!/usr/bin/env python3
"""Python package against the consumer's obvious alternative, in one process and one run.

    python benches/py_open_vs_cryptography.py [--size-mib 1024] [--runs 5] [--dir /dev/shm/x]

Seals SIZE MiB of random bytes once with `cipherflow.seal_bytes` (in memory; the CLI is not
needed), then times, alternately and RUNS times each:

- `cipherflow.open_file(src, dst, key)`: RSA-OAEP unwrap, header checks, every chunk
  authenticated (on both cores), plaintext written to a temporary file that is renamed into
  place only after the last chunk verified;
- a `cryptography` AESGCM loop over the same number of bytes in 1 MiB chunks, file to file
  (no header, no key unwrap, no rename: strictly less work).

Prints each run, the medians and the ratio loop/open (issue 3's goal: at least 1.5, never
below 1). Needs the `cipherflow` wheel and `cryptography` installed in the running Python.
The files live on tmpfs by default so the disk does not set the pace.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import cipherflow

CHUNK = 1 << 20
TAG = 16
KEY = bytes(range(32))  # benchmark only


def aesgcm_encrypt_file(src: Path, dst: Path) -> None:
    aead = AESGCM(KEY)
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        i = 0
        while block := fin.read(CHUNK):
            fout.write(aead.encrypt(i.to_bytes(12, "big"), block, None))
            i += 1


def aesgcm_decrypt_file(src: Path, dst: Path) -> None:
    aead = AESGCM(KEY)
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        i = 0
        while block := fin.read(CHUNK + TAG):
            fout.write(aead.decrypt(i.to_bytes(12, "big"), block, None))
            i += 1


def timed(f, *args) -> float:
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path("/dev/shm/cipherflow-py-bench"))
    args = ap.parse_args()

    work: Path = args.dir
    work.mkdir(parents=True, exist_ok=True)
    plain, sealed, pyenc = work / "plain.bin", work / "sealed.cfe", work / "py.enc"
    out_cf, out_py = work / "opened.bin", work / "py.dec"
    size = args.size_mib << 20
    if not plain.exists() or plain.stat().st_size != size:
        with open(plain, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(CHUNK))

    key = cipherflow.generate_key(2048)
    sealed.write_bytes(cipherflow.seal_bytes(plain.read_bytes(), [key.public_key()]))
    aesgcm_encrypt_file(plain, pyenc)

    # Both must round-trip before anything is timed.
    cipherflow.open_file(sealed, out_cf, key)
    aesgcm_decrypt_file(pyenc, out_py)
    for out in (out_cf, out_py):
        if not filecmp.cmp(plain, out, shallow=False):
            sys.exit(f"round trip failed for {out}")

    cf_times: list[float] = []
    py_times: list[float] = []
    for run in range(args.runs):
        for out in (out_cf, out_py):
            out.unlink(missing_ok=True)
        cf_times.append(timed(cipherflow.open_file, sealed, out_cf, key))
        py_times.append(timed(aesgcm_decrypt_file, pyenc, out_py))
        print(f"run {run + 1}: cipherflow.open_file {cf_times[-1]:.3f} s, "
              f"cryptography loop {py_times[-1]:.3f} s")

    cf, py = statistics.median(cf_times), statistics.median(py_times)
    mib = args.size_mib
    print(f"\n{mib} MiB, median of {args.runs} runs, {os.cpu_count()} cores")
    print(f"cipherflow.open_file   {cf:7.3f} s  {mib / cf:7.0f} MiB/s")
    print(f"cryptography AESGCM    {py:7.3f} s  {mib / py:7.0f} MiB/s")
    print(f"ratio loop/open: {py / cf:.2f}x (goal >= 1.5)")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
