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


@pytest.fixture(scope="session")
def pipeline_cli() -> Path:
    """The Rust `cipherflow` binary. These tests need it to write the share (Python has no
    producer API), so they fail rather than skip without it: CI always sets it."""
    value = os.environ.get("CIPHERFLOW_BIN")
    if not value:
        pytest.fail(
            "CIPHERFLOW_BIN is not set: the pipeline tests need the Rust command line to "
            "write a share (cargo build -p cipherflow-cli; CIPHERFLOW_BIN=target/debug/cipherflow)",
            pytrace=False,
        )
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"CIPHERFLOW_BIN={value} does not exist", pytrace=False)
    return path


CSV = b'id,name,city\n1,Ada,London\n2,"Grace, Rear Admiral",Arlington\n3,\xc3\x89mile,"Li\nlle"\n'
