"""The spec stays honest: what this package seals opens with the independent decryptor in
tests/interop/cipherflow_ref.py, written from docs/FORMAT.md with only `cryptography`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import cipherflow

from .conftest import CSV

REF = Path(__file__).resolve().parents[2] / "tests" / "interop" / "cipherflow_ref.py"


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    if not REF.is_file():
        pytest.skip(f"{REF} not found (run from the repository)")
    spec = importlib.util.spec_from_file_location("cipherflow_ref", REF)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cipherflow_ref"] = module
    spec.loader.exec_module(module)
    return module


def test_reference_opens_python_sealed(
    ref: ModuleType, alice: cipherflow.PrivateKey, producer: cipherflow.SigningKey
) -> None:
    data = CSV * 3000
    sealed = cipherflow.seal_bytes(
        data, [alice.public_key()], meta={"table": "t"}, signer=producer, chunk_size=4096
    )
    opened = ref.open_envelope(sealed, alice.to_pem(), producer.verifying_key().to_pem())
    assert opened == data


def test_reference_refuses_tampering(ref: ModuleType, alice: cipherflow.PrivateKey) -> None:
    sealed = bytearray(cipherflow.seal_bytes(CSV, [alice.public_key()]))
    sealed[-1] ^= 1
    with pytest.raises(ref.CipherFlowError):
        ref.open_envelope(bytes(sealed), alice.to_pem())
