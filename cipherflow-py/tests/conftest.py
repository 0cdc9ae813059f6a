"""Shared fixtures: keys (generated once per session), the Rust command line, sample data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import cipherflow


@pytest.fixture(scope="session")
def alice() -> cipherflow.PrivateKey:
    return cipherflow.generate_key(2048)


@pytest.fixture(scope="session")
def bob() -> cipherflow.PrivateKey:
    return cipherflow.generate_key(2048)


@pytest.fixture(scope="session")
def producer() -> cipherflow.SigningKey:
    return cipherflow.generate_signing_key()


@pytest.fixture(scope="session")
def other_producer() -> cipherflow.SigningKey:
    return cipherflow.generate_signing_key()


@pytest.fixture(scope="session")
def cli() -> Path:
    """The Rust `cipherflow` binary, from CIPHERFLOW_BIN (set by .ci/run)."""
    value = os.environ.get("CIPHERFLOW_BIN") or shutil.which("cipherflow")
    if not value:
        pytest.skip(
            "CIPHERFLOW_BIN is not set (cargo build -p cipherflow-cli, then point it there)"
        )
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"CIPHERFLOW_BIN={value} does not exist")
    return path


CSV = b'id,name,city\n1,Ada,London\n2,"Grace, Rear Admiral",Arlington\n3,\xc3\x89mile,"Li\nlle"\n'
