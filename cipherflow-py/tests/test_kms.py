"""KmsKey: unwrapping through boto3 against the moto server with real RSA-OAEP-SHA-256
(cipherflow-aws/tests/aws_emulator/moto_rsa_server.py). The emulator checks no IAM or key policy."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cipherflow

from .conftest import CSV
from .test_pipeline import EXPECTED_1, LOAD, make_producer

# The project's one copy of the launcher (shared with the Rust AWS tests).
SERVER = (
    Path(__file__).parents[2] / "cipherflow-aws" / "tests" / "aws_emulator" / "moto_rsa_server.py"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def kms_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for module in ("moto", "boto3", "flask"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -r requirements-test.txt)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    log = log_path.open("wb")  # a file, not a pipe: the server's request log never blocks it
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start: {log_path.read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def kms(kms_endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "kms",
        endpoint_url=kms_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def kms_key_id(kms: Any) -> str:
    meta = kms.create_key(KeySpec="RSA_3072", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    key_id: str = meta["KeyId"]
    return key_id


def test_kms_unwrap(kms: Any, kms_key_id: str, tmp_path: Path) -> None:
    der = kms.get_public_key(KeyId=kms_key_id)["PublicKey"]
    public = cipherflow.PublicKey.from_pem(der)  # DER is accepted too
    assert public.bits == 3072
    key = cipherflow.KmsKey(kms_key_id, kms)
    assert key.key_id == public.key_id
    assert key.public_key().key_id == public.key_id
    assert key.kms_key_id == kms_key_id

    sealed = cipherflow.seal_bytes(CSV, [public], meta={"table": "customers"})
    assert cipherflow.inspect(sealed)["recipients"] == [key.key_id]
    assert cipherflow.open_bytes(sealed, key) == CSV
    with cipherflow.open_stream(sealed, key) as s:
        assert s.read() == CSV
    (tmp_path / "s.cf").write_bytes(sealed)
    cipherflow.open_file(tmp_path / "s.cf", tmp_path / "s.csv", key)
    assert (tmp_path / "s.csv").read_bytes() == CSV
    assert cipherflow.read_csv(sealed, key)[0] == ["id", "name", "city"]


def test_kms_tampered_wrapped_key(kms: Any, kms_key_id: str) -> None:
    key = cipherflow.KmsKey(kms_key_id, kms)
    sealed = bytearray(cipherflow.seal_bytes(CSV, [key]))
    header_len = cipherflow.inspect(bytes(sealed))["header_len"]
    sealed[header_len - 32 - 100] ^= 1  # inside the wrapped key (before the 32-byte MAC)
    with pytest.raises(cipherflow.IntegrityError, match="header"):
        cipherflow.open_bytes(bytes(sealed), key)


def test_kms_wrong_key(kms: Any, kms_key_id: str, alice: cipherflow.PrivateKey) -> None:
    key = cipherflow.KmsKey(kms_key_id, kms)
    with pytest.raises(cipherflow.WrongKeyError):
        cipherflow.open_bytes(cipherflow.seal_bytes(CSV, [alice.public_key()]), key)


def test_kms_access_error_is_reported(kms: Any, kms_key_id: str) -> None:
    """A refused Decrypt (moto enforces no key policy, so the refusal is injected) is an
    InvalidKeyError naming KMS, not a tampering report."""
    from botocore.exceptions import ClientError

    class Denied:
        def get_public_key(self, **kwargs: Any) -> Any:
            return kms.get_public_key(**kwargs)

        def decrypt(self, **kwargs: Any) -> Any:
            error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
            raise ClientError(error, "Decrypt")

    key = cipherflow.KmsKey(kms_key_id, Denied())
    sealed = cipherflow.seal_bytes(CSV, [key])
    with pytest.raises(cipherflow.InvalidKeyError, match=r"KMS Decrypt.*AccessDenied"):
        cipherflow.open_bytes(sealed, key)


def test_kms_pull(
    pipeline_cli: Path,
    kms: Any,
    kms_key_id: str,
    producer: cipherflow.SigningKey,
    tmp_path: Path,
) -> None:
    """A pull with a KmsKey: the GIL is released for the pull and taken back for each
    Decrypt call boto3 makes (one per object fetched)."""
    key = cipherflow.KmsKey(kms_key_id, kms)
    p = make_producer(pipeline_cli, tmp_path / "pipeline", key.public_key(), producer)
    p.land("LOAD00000001.csv", LOAD)
    p.run()
    report = cipherflow.pull(p.share, key, tmp_path / "out", signer=p.verifying)
    assert report["rows"] == 3
    assert report["fetched"] > 1
    assert (tmp_path / "out" / "orders.csv").read_text() == EXPECTED_1
