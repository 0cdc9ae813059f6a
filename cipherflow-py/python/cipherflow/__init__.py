"""Open CipherFlow sealed snapshots from Python.

The cryptography, the consumer's :func:`pull` of a share and the ledger checks
(:func:`verify_ledger`, :func:`verify_bundle`) run in Rust (``cipherflow._cipherflow``)
with the GIL released; this module adds the pure-Python helpers: :func:`open_stream` (a
binary file object), :func:`read_csv`, and the optional :func:`to_arrow` / :func:`to_pandas`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, Union

from ._cipherflow import (
    Error,
    FormatError,
    HashMismatchError,
    IntegrityError,
    InvalidKeyError,
    KmsKey,
    LedgerError,
    NativeStream,
    PipelineError,
    PrivateKey,
    PublicKey,
    RollbackError,
    SignatureError,
    SigningKey,
    UnsupportedError,
    VerifyingKey,
    WrongKeyError,
    __version__,
    generate_key,
    generate_signing_key,
    inspect,
    open_bytes,
    open_file,
    open_stream_native,
    pull,
    seal_bytes,
    verify_bundle,
    verify_ledger,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class BinaryReader(Protocol):
    """Anything with ``read(n) -> bytes``: an open file, ``io.BytesIO``, a boto3 body."""

    def read(self, size: int, /) -> bytes: ...


Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryReader]
"""An envelope: bytes, a path, or a binary file object with ``read(n)``."""

__all__ = [
    "Error",
    "FormatError",
    "HashMismatchError",
    "IntegrityError",
    "InvalidKeyError",
    "KmsKey",
    "LedgerError",
    "PipelineError",
    "PlaintextStream",
    "PrivateKey",
    "PublicKey",
    "RollbackError",
    "SignatureError",
    "SigningKey",
    "UnsupportedError",
    "VerifyingKey",
    "WrongKeyError",
    "__version__",
    "generate_key",
    "generate_signing_key",
    "inspect",
    "open_bytes",
    "open_file",
    "open_stream",
    "pull",
    "read_csv",
    "seal_bytes",
    "to_arrow",
    "to_pandas",
    "verify_bundle",
    "verify_ledger",
]


class PlaintextStream(io.RawIOBase):
    """Verified plaintext of an envelope, as a read-only binary file object.

    Each chunk is released only after its tag verified. With ``signer=``, the last batch is
    held back until the producer signature verified; earlier batches are released before,
    so use :func:`open_file` or :func:`open_bytes` when nothing may be used unverified.
    """

    def __init__(self, native: NativeStream) -> None:
        super().__init__()
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        return self._native.read(-1 if size is None else size)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def verify_to_end(self) -> int:
        """Reads (and verifies) the rest without keeping it; returns its length."""
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        return self._native.verify_to_end()

    def close(self) -> None:
        if not self.closed:
            self._native.close()
        super().close()


def open_stream(
    src: Source,
    key: PrivateKey | KmsKey,
    *,
    signer: VerifyingKey | None = None,
) -> PlaintextStream:
    """Authenticates the header of ``src`` and returns its plaintext as a binary stream.

    ``src`` is a path, bytes, or a binary file object (only ``read(n)`` is used, so a
    non-seekable one such as boto3's ``StreamingBody`` works). Use it as a context manager.
    """
    return PlaintextStream(open_stream_native(src, key, signer=signer))


def _rows(
    src: Source, key: PrivateKey | KmsKey, signer: VerifyingKey | None, encoding: str
) -> Iterator[list[str]]:
    with open_stream(src, key, signer=signer) as raw:
        text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding=encoding, newline="")
        yield from csv.reader(text)


def read_csv(
    src: Source,
    key: PrivateKey | KmsKey,
    *,
    signer: VerifyingKey | None = None,
    encoding: str = "utf-8",
) -> list[list[str]]:
    """Opens a sealed CSV snapshot; returns its rows (header row first) as exact strings."""
    return list(_rows(src, key, signer, encoding))


def to_arrow(
    src: Source,
    key: PrivateKey | KmsKey,
    *,
    signer: VerifyingKey | None = None,
    encoding: str = "utf-8",
) -> Any:
    """A sealed CSV snapshot as a ``pyarrow.Table`` of strings (needs ``cipherflow[arrow]``)."""
    try:
        import pyarrow as pa
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_arrow needs pyarrow: pip install 'cipherflow[arrow]'") from e
    rows = read_csv(src, key, signer=signer, encoding=encoding)
    if not rows:
        return pa.table({})
    header, body = rows[0], rows[1:]
    columns = {name: [r[i] if i < len(r) else None for r in body] for i, name in enumerate(header)}
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})


def to_pandas(
    src: Source,
    key: PrivateKey | KmsKey,
    *,
    signer: VerifyingKey | None = None,
    encoding: str = "utf-8",
) -> Any:
    """A sealed CSV snapshot as a ``pandas.DataFrame`` of strings (needs ``cipherflow[pandas]``)."""
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_pandas needs pandas: pip install 'cipherflow[pandas]'") from e
    rows = read_csv(src, key, signer=signer, encoding=encoding)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows[1:], columns=rows[0], dtype="string")
