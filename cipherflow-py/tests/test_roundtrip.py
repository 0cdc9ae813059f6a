"""Round trips inside Python: keys, seal/open, files, streams, inspect, CSV."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import cipherflow

from .conftest import CSV


def test_version() -> None:
    assert cipherflow.__version__.count(".") == 2


def test_keys_round_trip_through_pem(tmp_path: Path, alice: cipherflow.PrivateKey) -> None:
    pem = alice.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = cipherflow.PrivateKey.from_pem(pem)
    assert again.key_id == alice.key_id
    assert len(alice.key_id) == 64
    assert alice.bits == 2048

    pub = alice.public_key()
    assert pub.key_id == alice.key_id
    (tmp_path / "a.pub.pem").write_bytes(pub.to_pem())
    assert cipherflow.PublicKey.from_file(tmp_path / "a.pub.pem").key_id == alice.key_id
    (tmp_path / "a.pem").write_bytes(pem)
    assert cipherflow.PrivateKey.from_file(str(tmp_path / "a.pem")).key_id == alice.key_id
    assert alice.key_id in repr(alice)
    assert b"PRIVATE" not in repr(alice).encode()


def test_signing_keys(producer: cipherflow.SigningKey) -> None:
    assert producer.algorithm == "ecdsa-p256-sha256"
    vk = producer.verifying_key()
    assert vk.key_id == producer.key_id
    assert cipherflow.VerifyingKey.from_pem(vk.to_pem()).key_id == vk.key_id
    assert cipherflow.SigningKey.from_pem(producer.to_pem()).key_id == producer.key_id


def test_seal_open_bytes(alice: cipherflow.PrivateKey, bob: cipherflow.PrivateKey) -> None:
    sealed = cipherflow.seal_bytes(
        CSV, [alice.public_key(), bob.public_key()], meta={"table": "customers"}
    )
    assert cipherflow.open_bytes(sealed, alice) == CSV
    assert cipherflow.open_bytes(sealed, bob) == CSV
    info = cipherflow.inspect(sealed)
    assert info["metadata"] == {"table": "customers"}
    assert info["recipients"] == [alice.key_id, bob.key_id]
    assert info["plaintext_len"] == len(CSV)
    assert info["envelope_len"] == len(sealed)
    assert info["signer"] is None


def test_single_recipient_and_empty(alice: cipherflow.PrivateKey) -> None:
    sealed = cipherflow.seal_bytes(b"", alice.public_key())
    assert cipherflow.open_bytes(sealed, alice) == b""
    assert cipherflow.open_bytes(bytearray(sealed), alice) == b""
    assert cipherflow.open_bytes(memoryview(sealed), alice) == b""
    assert cipherflow.inspect(memoryview(sealed))["plaintext_len"] == 0


def test_signed(alice: cipherflow.PrivateKey, producer: cipherflow.SigningKey) -> None:
    sealed = cipherflow.seal_bytes(CSV, [alice.public_key()], signer=producer)
    out = cipherflow.open_bytes(sealed, alice, signer=producer.verifying_key())
    assert out == CSV
    info = cipherflow.inspect(sealed)
    assert info["signer"] == {"algorithm": "ecdsa-p256-sha256", "key_id": producer.key_id}


def test_rsa_pss_signer(alice: cipherflow.PrivateKey) -> None:
    signer = cipherflow.generate_signing_key("rsa-pss-sha256", bits=2048)
    assert signer.algorithm == "rsa-pss-sha256"
    sealed = cipherflow.seal_bytes(CSV, [alice.public_key()], signer=signer)
    assert cipherflow.open_bytes(sealed, alice, signer=signer.public_key()) == CSV


def test_open_file(tmp_path: Path, alice: cipherflow.PrivateKey) -> None:
    data = os.urandom(300_000)
    src = tmp_path / "data.cf"
    src.write_bytes(cipherflow.seal_bytes(data, [alice.public_key()], chunk_size=4096))
    dst = tmp_path / "out" / "data.bin"
    dst.parent.mkdir()
    assert cipherflow.open_file(src, dst, alice) == len(data)
    assert dst.read_bytes() == data
    assert cipherflow.inspect(src)["chunk_count"] == (len(data) + 4095) // 4096
    assert cipherflow.inspect(str(src))["chunk_size"] == 4096


@pytest.mark.parametrize("kind", ["path", "bytes", "file"])
def test_open_stream(tmp_path: Path, alice: cipherflow.PrivateKey, kind: str) -> None:
    data = os.urandom(100_000)
    sealed = cipherflow.seal_bytes(data, [alice.public_key()], chunk_size=1024)
    src = tmp_path / "s.cf"
    src.write_bytes(sealed)
    source: cipherflow.Source
    if kind == "path":
        source = src
    elif kind == "bytes":
        source = sealed
    else:
        source = src.open("rb")
    with cipherflow.open_stream(source, alice) as stream:
        assert stream.readable()
        first = stream.read(10)
        assert first == data[:10]
        buf = bytearray(5000)
        n = stream.readinto(buf)
        assert bytes(buf[:n]) == data[10 : 10 + n]
        rest = stream.read()
    assert first + bytes(buf[:n]) + rest == data
    assert stream.closed
    with pytest.raises(ValueError, match="closed"):
        stream.read(1)


def test_open_stream_buffered_text(alice: cipherflow.PrivateKey) -> None:
    sealed = cipherflow.seal_bytes(CSV, [alice.public_key()])
    with cipherflow.open_stream(sealed, alice) as raw:
        text = io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", newline="")
        assert text.readline() == "id,name,city\n"


def test_read_csv(alice: cipherflow.PrivateKey) -> None:
    sealed = cipherflow.seal_bytes(CSV, [alice.public_key()])
    rows = cipherflow.read_csv(sealed, alice)
    assert rows == [
        ["id", "name", "city"],
        ["1", "Ada", "London"],
        ["2", "Grace, Rear Admiral", "Arlington"],
        ["3", "Émile", "Li\nlle"],
    ]


def test_to_pandas_when_installed(alice: cipherflow.PrivateKey) -> None:
    pytest.importorskip("pandas")
    frame = cipherflow.to_pandas(cipherflow.seal_bytes(CSV, [alice.public_key()]), alice)
    assert list(frame.columns) == ["id", "name", "city"]
    assert frame["id"].tolist() == ["1", "2", "3"]


def test_to_arrow_when_installed(alice: cipherflow.PrivateKey) -> None:
    pytest.importorskip("pyarrow")
    table = cipherflow.to_arrow(cipherflow.seal_bytes(CSV, [alice.public_key()]), alice)
    assert table.column_names == ["id", "name", "city"]
