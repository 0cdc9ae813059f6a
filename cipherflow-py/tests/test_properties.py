"""Property tests: any plaintext, chunk size, metadata and recipients round-trip, and any
single-bit flip in the body is refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cipherflow

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
metadata = st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=50), max_size=4)


@SETTINGS
@given(
    data=st.binary(max_size=20_000),
    chunk_size=st.sampled_from([1024, 1500, 4096, 1 << 20]),
    meta=metadata,
    both=st.booleans(),
)
def test_round_trip(
    alice: cipherflow.PrivateKey,
    bob: cipherflow.PrivateKey,
    data: bytes,
    chunk_size: int,
    meta: dict[str, str],
    both: bool,
) -> None:
    recipients = [alice.public_key(), bob.public_key()] if both else [alice.public_key()]
    sealed = cipherflow.seal_bytes(data, recipients, meta=meta, chunk_size=chunk_size)
    assert cipherflow.open_bytes(sealed, alice) == data
    if both:
        assert cipherflow.open_bytes(sealed, bob) == data
    with cipherflow.open_stream(sealed, alice) as s:
        assert s.read() == data
    info = cipherflow.inspect(sealed)
    assert info["metadata"] == meta
    assert info["plaintext_len"] == len(data)


@SETTINGS
@given(
    data=st.binary(min_size=1, max_size=5000), where=st.integers(min_value=0), bit=st.integers(0, 7)
)
def test_any_body_bit_flip_is_refused(
    alice: cipherflow.PrivateKey, data: bytes, where: int, bit: int
) -> None:
    sealed = cipherflow.seal_bytes(data, [alice.public_key()], chunk_size=1024)
    start = cipherflow.inspect(sealed)["header_len"]
    bad = bytearray(sealed)
    bad[start + where % (len(sealed) - start)] ^= 1 << bit
    with pytest.raises(cipherflow.IntegrityError):
        cipherflow.open_bytes(bytes(bad), alice)
