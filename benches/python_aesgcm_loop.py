#!/usr/bin/env python3
"""The consumer's obvious alternative to `cipherflow seal/open`: Python `cryptography`'s
AESGCM over a file in 1 MiB chunks, read from one file and written to another.

    python_aesgcm_loop.py encrypt IN OUT
    python_aesgcm_loop.py decrypt IN OUT

Encrypt writes each chunk as ciphertext||tag with a counter nonce under a fixed benchmark
key (no envelope, no header, no key wrapping: only the bulk work, so the comparison
flatters Python). Decrypt reverses it and fails on any bad tag.
"""
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK = 1 << 20
TAG = 16
KEY = bytes(range(32))  # benchmark only


def nonce(i: int) -> bytes:
    return i.to_bytes(12, "big")


def main() -> int:
    mode, src, dst = sys.argv[1:4]
    aead = AESGCM(KEY)
    size = CHUNK if mode == "encrypt" else CHUNK + TAG
    op = aead.encrypt if mode == "encrypt" else aead.decrypt
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        i = 0
        while True:
            block = fin.read(size)
            if not block:
                break
            fout.write(op(nonce(i), block, None))
            i += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
