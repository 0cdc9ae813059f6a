"""Streaming: constant memory on a file larger than the memory the test allows, and
open_stream over a non-seekable file object that only has read()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cipherflow

MiB = 1 << 20
BIG = 256 * MiB
RSS_LIMIT = 100 * MiB


class OnlyRead:
    """A non-seekable stream, like a socket or boto3's StreamingBody: read(n) and nothing else."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        n = min(size if size >= 0 else len(self._data), self._step)
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(out)
        return out


def test_open_stream_non_seekable(alice: cipherflow.PrivateKey) -> None:
    data = os.urandom(3 * MiB + 7)
    sealed = cipherflow.seal_bytes(data, [alice.public_key()], chunk_size=64 * 1024)
    body = OnlyRead(sealed, step=10_000)  # short reads, as from a network
    assert not hasattr(body, "seek")
    with cipherflow.open_stream(body, alice) as stream:
        got = bytearray()
        while chunk := stream.read(MiB):
            got += chunk
    assert bytes(got) == data
    assert body.calls > 1
    assert cipherflow.inspect(OnlyRead(sealed, step=4096))["plaintext_len"] == len(data)


def test_open_stream_non_seekable_signed(
    alice: cipherflow.PrivateKey, producer: cipherflow.SigningKey
) -> None:
    data = os.urandom(MiB)
    sealed = cipherflow.seal_bytes(data, [alice.public_key()], signer=producer)
    with cipherflow.open_stream(
        OnlyRead(sealed, 8192), alice, signer=producer.verifying_key()
    ) as stream:
        assert stream.read() == data


CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import cipherflow
    key = cipherflow.PrivateKey.from_file(sys.argv[1])
    src, dst, mode = sys.argv[2], sys.argv[3], sys.argv[4]
    n = 0
    if mode == "file":
        n = cipherflow.open_file(src, dst, key)
    else:
        with cipherflow.open_stream(src, key) as s, open(dst, "wb") as out:
            while chunk := s.read(1 << 20):
                n += len(chunk)
                out.write(chunk)
    # VmHWM: this process's own peak RSS. (ru_maxrss would include the forking parent's.)
    try:
        status = open("/proc/self/status").read().splitlines()
        peak_kib = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    except OSError:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"bytes": n, "peak_rss": peak_kib * 1024}))
    """
)


@pytest.fixture(scope="module")
def big_envelope(
    tmp_path_factory: pytest.TempPathFactory, alice: cipherflow.PrivateKey
) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("big")
    (d / "key.pem").write_bytes(alice.to_pem())
    # Sealed in this (parent) process, whose memory is not the one measured.
    block = os.urandom(MiB)
    sealed = cipherflow.seal_bytes(block * (BIG // MiB), [alice.public_key()])
    (d / "big.cf").write_bytes(sealed)
    del sealed
    return d / "key.pem", d / "big.cf"


@pytest.mark.parametrize("mode", ["file", "stream"])
def test_constant_memory(big_envelope: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    key, src = big_envelope
    dst = tmp_path / "plain.bin"
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(key), str(src), str(dst), mode],
        capture_output=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr.decode()
    result = json.loads(r.stdout)
    assert result["bytes"] == BIG
    assert dst.stat().st_size == BIG
    print(f"{mode}: peak RSS {result['peak_rss'] / MiB:.1f} MiB for a {BIG // MiB} MiB envelope")
    assert result["peak_rss"] < RSS_LIMIT
