"""Refusals: tampering, truncation, wrong keys, signatures, and what is left on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cipherflow

from .conftest import CSV

DATA = os.urandom(50_000)


@pytest.fixture(scope="module")
def sealed(alice: cipherflow.PrivateKey) -> bytes:
    return cipherflow.seal_bytes(DATA, [alice.public_key()], chunk_size=1024)


def header_len(envelope: bytes) -> int:
    return cipherflow.inspect(envelope)["header_len"]


def test_hierarchy() -> None:
    for cls in (
        cipherflow.FormatError,
        cipherflow.IntegrityError,
        cipherflow.WrongKeyError,
        cipherflow.SignatureError,
        cipherflow.InvalidKeyError,
    ):
        assert issubclass(cls, cipherflow.Error)
    assert issubclass(cipherflow.UnsupportedError, cipherflow.FormatError)
    assert not issubclass(cipherflow.Error, OSError)


def test_tampered_chunk(alice: cipherflow.PrivateKey, sealed: bytes) -> None:
    bad = bytearray(sealed)
    bad[header_len(sealed) + 3 * (1024 + 16) + 5] ^= 1
    with pytest.raises(cipherflow.IntegrityError, match="chunk 3"):
        cipherflow.open_bytes(bytes(bad), alice)


def test_tampered_header(alice: cipherflow.PrivateKey, sealed: bytes) -> None:
    bad = bytearray(sealed)
    bad[header_len(sealed) - 1] ^= 1  # the header MAC
    with pytest.raises(cipherflow.IntegrityError, match="header"):
        cipherflow.open_bytes(bytes(bad), alice)


@pytest.mark.parametrize("cut", [1, 16, 1024 + 16, 5000])
def test_truncated(alice: cipherflow.PrivateKey, sealed: bytes, cut: int) -> None:
    with pytest.raises(cipherflow.IntegrityError):
        cipherflow.open_bytes(sealed[:-cut], alice)


def test_extended(alice: cipherflow.PrivateKey, sealed: bytes) -> None:
    with pytest.raises(cipherflow.IntegrityError):
        cipherflow.open_bytes(sealed + b"\0", alice)


def test_truncated_stream_releases_only_verified(
    alice: cipherflow.PrivateKey, sealed: bytes
) -> None:
    with cipherflow.open_stream(sealed[:-100], alice) as stream:
        got = bytearray()

        def drain() -> None:
            while chunk := stream.read(4096):
                got.extend(chunk)

        with pytest.raises(cipherflow.IntegrityError):
            drain()
    assert DATA.startswith(got)
    assert len(got) < len(DATA)


def test_not_an_envelope(alice: cipherflow.PrivateKey) -> None:
    with pytest.raises(cipherflow.FormatError, match="byte"):
        cipherflow.open_bytes(b"id,name\n1,Ada\n", alice)
    with pytest.raises(cipherflow.FormatError):
        cipherflow.inspect(b"")


def test_wrong_key(bob: cipherflow.PrivateKey, sealed: bytes, alice: cipherflow.PrivateKey) -> None:
    with pytest.raises(cipherflow.WrongKeyError) as err:
        cipherflow.open_bytes(sealed, bob)
    assert bob.key_id in str(err.value)
    assert alice.key_id in str(err.value)


def test_signature_missing(alice: cipherflow.PrivateKey, producer: cipherflow.SigningKey) -> None:
    unsigned = cipherflow.seal_bytes(CSV, [alice.public_key()])
    with pytest.raises(cipherflow.SignatureError, match="unsigned"):
        cipherflow.open_bytes(unsigned, alice, signer=producer.verifying_key())


def test_signature_foreign(
    alice: cipherflow.PrivateKey,
    producer: cipherflow.SigningKey,
    other_producer: cipherflow.SigningKey,
) -> None:
    signed = cipherflow.seal_bytes(CSV, [alice.public_key()], signer=other_producer)
    with pytest.raises(cipherflow.SignatureError, match=other_producer.key_id):
        cipherflow.open_bytes(signed, alice, signer=producer.verifying_key())


def test_signature_altered(alice: cipherflow.PrivateKey, producer: cipherflow.SigningKey) -> None:
    signed = bytearray(cipherflow.seal_bytes(CSV, [alice.public_key()], signer=producer))
    signed[-3] ^= 0x40
    with pytest.raises(cipherflow.SignatureError):
        cipherflow.open_bytes(bytes(signed), alice, signer=producer.verifying_key())


def test_open_file_leaves_nothing(
    tmp_path: Path, alice: cipherflow.PrivateKey, sealed: bytes
) -> None:
    bad = bytearray(sealed)
    bad[-40] ^= 1  # in the last chunk: everything before it verified
    src = tmp_path / "bad.cf"
    src.write_bytes(bad)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "plain.bin"
    with pytest.raises(cipherflow.IntegrityError, match=str(src)):
        cipherflow.open_file(src, dst, alice)
    assert list(out.iterdir()) == []

    dst.write_bytes(b"previous")
    with pytest.raises(cipherflow.IntegrityError):
        cipherflow.open_file(src, dst, alice)
    assert dst.read_bytes() == b"previous"
    assert [p.name for p in out.iterdir()] == ["plain.bin"]


def test_io_errors_are_oserror(tmp_path: Path, alice: cipherflow.PrivateKey, sealed: bytes) -> None:
    missing = tmp_path / "missing.cf"
    with pytest.raises(FileNotFoundError) as err:
        cipherflow.open_file(missing, tmp_path / "x", alice)
    assert err.value.filename == str(missing)
    with pytest.raises(FileNotFoundError):
        cipherflow.inspect(missing)
    with pytest.raises(FileNotFoundError):
        cipherflow.open_stream(missing, alice)
    with pytest.raises(FileNotFoundError):
        cipherflow.PrivateKey.from_file(missing)
    src = tmp_path / "ok.cf"
    src.write_bytes(sealed)
    with pytest.raises(OSError):  # noqa: PT011 - the directory does not exist
        cipherflow.open_file(src, tmp_path / "no" / "such" / "dir" / "x", alice)


def test_bad_keys(alice: cipherflow.PrivateKey) -> None:
    with pytest.raises(cipherflow.InvalidKeyError):
        cipherflow.PrivateKey.from_pem(b"not a key")
    with pytest.raises(cipherflow.InvalidKeyError, match="public key"):
        cipherflow.PrivateKey.from_pem(alice.public_key().to_pem())
    with pytest.raises(cipherflow.InvalidKeyError, match="private key"):
        cipherflow.PublicKey.from_pem(alice.to_pem())
    with pytest.raises(cipherflow.InvalidKeyError):
        cipherflow.generate_key(1024)


def test_type_errors(alice: cipherflow.PrivateKey) -> None:
    with pytest.raises(TypeError, match="PrivateKey"):
        cipherflow.open_bytes(b"", alice.public_key())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="PublicKey"):
        cipherflow.seal_bytes(b"", [alice])  # type: ignore[list-item]


def test_file_object_errors_propagate(alice: cipherflow.PrivateKey, sealed: bytes) -> None:
    class Broken:
        def read(self, size: int = -1) -> bytes:
            raise RuntimeError("network went away")

    with pytest.raises(RuntimeError, match="network went away"):
        cipherflow.open_stream(Broken(), alice)
