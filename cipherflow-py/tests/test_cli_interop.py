"""Interoperability with the Rust command line (CIPHERFLOW_BIN): seal in Rust and open in
Python, and the other way round, with metadata and a producer signature."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import cipherflow

from .conftest import CSV


def run(cli: Path, *args: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(cli), *map(str, args)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def keys(cli: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-keys")
    for args in (
        ("--private", d / "alice.pem", "--public", d / "alice.pub.pem", "--bits", "2048"),
        ("--signing", "--private", d / "producer.pem", "--public", d / "producer.pub.pem"),
    ):
        r = run(cli, "keygen", *args)
        assert r.returncode == 0, r.stderr.decode()
    return d


def test_rust_seals_python_opens(cli: Path, keys: Path, tmp_path: Path) -> None:
    data = CSV * 1000 + os.urandom(3000)
    (tmp_path / "in.csv").write_bytes(data)
    r = run(
        cli,
        "seal",
        "--recipient",
        keys / "alice.pub.pem",
        "--meta",
        "table=customers",
        "--sign-key",
        keys / "producer.pem",
        "--chunk-size",
        "4096",
        "-i",
        tmp_path / "in.csv",
        "-o",
        tmp_path / "in.csv.cf",
    )
    assert r.returncode == 0, r.stderr.decode()
    key = cipherflow.PrivateKey.from_file(keys / "alice.pem")
    signer = cipherflow.VerifyingKey.from_file(keys / "producer.pub.pem")
    sealed = (tmp_path / "in.csv.cf").read_bytes()
    assert cipherflow.open_bytes(sealed, key, signer=signer) == data
    cipherflow.open_file(tmp_path / "in.csv.cf", tmp_path / "out.csv", key, signer=signer)
    assert (tmp_path / "out.csv").read_bytes() == data
    with cipherflow.open_stream(tmp_path / "in.csv.cf", key, signer=signer) as s:
        assert s.read() == data
    info = cipherflow.inspect(tmp_path / "in.csv.cf")
    assert info["metadata"] == {"table": "customers"}
    assert info["signer"] is not None
    assert info["signer"]["key_id"] == signer.key_id
    cli_info = json.loads(run(cli, "inspect", tmp_path / "in.csv.cf").stdout)
    assert cli_info == info


def test_python_seals_rust_opens(cli: Path, keys: Path, tmp_path: Path) -> None:
    data = CSV * 500
    key = cipherflow.PublicKey.from_file(keys / "alice.pub.pem")
    producer = cipherflow.SigningKey.from_file(keys / "producer.pem")
    sealed = cipherflow.seal_bytes(data, [key], meta={"snapshot": "42"}, signer=producer)
    (tmp_path / "p.cf").write_bytes(sealed)
    r = run(
        cli,
        "open",
        "--key",
        keys / "alice.pem",
        "--signer",
        keys / "producer.pub.pem",
        "-i",
        tmp_path / "p.cf",
        "-o",
        tmp_path / "p.csv",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "p.csv").read_bytes() == data


def test_rust_refuses_python_tampering(cli: Path, keys: Path, tmp_path: Path) -> None:
    key = cipherflow.PublicKey.from_file(keys / "alice.pub.pem")
    sealed = bytearray(cipherflow.seal_bytes(CSV, [key]))
    sealed[-5] ^= 1
    (tmp_path / "t.cf").write_bytes(sealed)
    r = run(cli, "open", "--key", keys / "alice.pem", "-i", tmp_path / "t.cf", "-o", tmp_path / "t")
    assert r.returncode != 0
    assert not (tmp_path / "t").exists()


def test_python_keys_work_in_rust(cli: Path, tmp_path: Path) -> None:
    key = cipherflow.generate_key(2048)
    (tmp_path / "k.pem").write_bytes(key.to_pem())
    (tmp_path / "k.pub.pem").write_bytes(key.public_key().to_pem())
    (tmp_path / "in").write_bytes(b"hello")
    r = run(
        cli,
        "seal",
        "--recipient",
        tmp_path / "k.pub.pem",
        "-i",
        tmp_path / "in",
        "-o",
        tmp_path / "in.cf",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert cipherflow.open_bytes((tmp_path / "in.cf").read_bytes(), key) == b"hello"
