import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypedDict, final

from typing_extensions import TypeAlias

__version__: str

class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...

_Bytes: TypeAlias = bytes | bytearray | memoryview
_Path: TypeAlias = str | os.PathLike[str]
_Source: TypeAlias = _Bytes | _Path | _Reader

class Error(Exception): ...
class FormatError(Error): ...
class UnsupportedError(FormatError): ...
class IntegrityError(Error): ...
class WrongKeyError(Error): ...
class SignatureError(Error): ...
class InvalidKeyError(Error): ...

# A pull refused: the share went back to an older generation than the one already pulled,
# or shows the same generation with another manifest (a fork). Nothing was written.
class RollbackError(IntegrityError): ...

# A pull refused: a share object does not hash to what the signed manifest names (e.g. an
# object swapped for another). Nothing was written.
class HashMismatchError(IntegrityError): ...

# A share's pointer or manifest (or the pull state in OUT/.cipherflow) is malformed, or names
# another table or generation.
class PipelineError(Error): ...

# The ledger or a proof bundle is malformed or fails verification; the message names the
# first bad record and its segment, or the checkpoint.
class LedgerError(Error): ...

@final
class PublicKey:
    @staticmethod
    def from_pem(data: bytes) -> PublicKey: ...
    @staticmethod
    def from_file(path: _Path) -> PublicKey: ...
    def to_pem(self) -> bytes: ...
    def to_der(self) -> bytes: ...
    @property
    def key_id(self) -> str: ...
    @property
    def bits(self) -> int: ...

@final
class PrivateKey:
    @staticmethod
    def from_pem(data: bytes) -> PrivateKey: ...
    @staticmethod
    def from_file(path: _Path) -> PrivateKey: ...
    def public_key(self) -> PublicKey: ...
    def to_pem(self) -> bytes: ...
    @property
    def key_id(self) -> str: ...
    @property
    def bits(self) -> int: ...

@final
class VerifyingKey:
    @staticmethod
    def from_pem(data: bytes) -> VerifyingKey: ...
    @staticmethod
    def from_file(path: _Path) -> VerifyingKey: ...
    def to_pem(self) -> bytes: ...
    @property
    def key_id(self) -> str: ...
    @property
    def algorithm(self) -> str: ...

@final
class SigningKey:
    @staticmethod
    def from_pem(data: bytes) -> SigningKey: ...
    @staticmethod
    def from_file(path: _Path) -> SigningKey: ...
    def verifying_key(self) -> VerifyingKey: ...
    def public_key(self) -> VerifyingKey: ...
    def to_pem(self) -> bytes: ...
    @property
    def key_id(self) -> str: ...
    @property
    def algorithm(self) -> str: ...

@final
class KmsKey:
    def __init__(self, key_id: str, client: Any) -> None: ...
    def public_key(self) -> PublicKey: ...
    @property
    def key_id(self) -> str: ...
    @property
    def kms_key_id(self) -> str: ...

@final
class NativeStream:
    def read(self, size: int = -1) -> bytes: ...
    def verify_to_end(self) -> int: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def name(self) -> str: ...

class SignerInfo(TypedDict):
    algorithm: str
    key_id: str

class EnvelopeInfo(TypedDict):
    format_version: int
    suite: int
    chunk_size: int
    chunk_count: int
    plaintext_len: int
    envelope_len: int
    header_len: int
    recipients: list[str]
    signer: SignerInfo | None
    metadata: dict[str, str]

class PullReport(TypedDict):
    table: str
    generation: int
    previous: int | None
    fetched: int
    bytes_fetched: int
    partitions_changed: list[int]
    rows: int
    table_csv: str
    fetched_objects: list[str]

class LedgerReport(TypedDict):
    origin: str
    records: int
    checkpoints: int
    signed_size: int
    root_hash: str | None
    checkpoint_time: str | None

class BundleReport(TypedDict):
    verified: bool
    origin: str
    tree_size: int
    root_hash: str
    checkpoint_time: str
    record: dict[str, Any]

_Bound: TypeAlias = int | datetime | None
_TrustedKey: TypeAlias = VerifyingKey | tuple[VerifyingKey, _Bound, _Bound]

def generate_key(bits: int = 3072) -> PrivateKey: ...
def generate_signing_key(algorithm: str = "ecdsa-p256-sha256", bits: int = 3072) -> SigningKey: ...
def seal_bytes(
    data: _Bytes,
    recipients: PublicKey | KmsKey | Iterable[PublicKey | KmsKey],
    *,
    meta: Mapping[str, str] | None = None,
    signer: SigningKey | None = None,
    chunk_size: int | None = None,
) -> bytes: ...
def open_bytes(
    data: _Bytes,
    key: PrivateKey | KmsKey,
    *,
    signer: VerifyingKey | SigningKey | None = None,
) -> bytes: ...
def open_file(
    src: _Path,
    dst: _Path,
    key: PrivateKey | KmsKey,
    *,
    signer: VerifyingKey | SigningKey | None = None,
) -> int: ...
def inspect(src: _Source) -> EnvelopeInfo: ...
def open_stream_native(
    src: _Source,
    key: PrivateKey | KmsKey,
    *,
    signer: VerifyingKey | SigningKey | None = None,
) -> NativeStream: ...
def pull(
    share: _Path,
    key: PrivateKey | KmsKey,
    out: _Path,
    *,
    signer: VerifyingKey | SigningKey | None = None,
    table: str | None = None,
) -> PullReport: ...
def verify_ledger(
    ledger: _Path,
    trusted_keys: Iterable[_TrustedKey],
    *,
    allow_unsigned_tail: bool = False,
) -> LedgerReport: ...
def verify_bundle(bundle: str | bytes, trusted_keys: Iterable[_TrustedKey]) -> BundleReport: ...
