#!/usr/bin/env python3
"""Independent reference opener for the CipherFlow envelope, format version 1.

Written from docs/FORMAT.md alone (no Rust source consulted). Uses only the Python
standard library and the `cryptography` package.

    python cipherflow_ref.py open --key K.pem [--signer S.pub.pem] IN OUT
    python cipherflow_ref.py inspect IN
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import struct
import sys
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

# --------------------------------------------------------------------------- constants

MAGIC = b"\x89CFE\r\n\x1a\n"
FORMAT_VERSION = 1
SUITE_AES256GCM_HKDF_HMAC = 1
CHUNK_MIN = 1024
CHUNK_MAX = 16 * 1024 * 1024
SIG_NONE, SIG_ECDSA_P256, SIG_RSA_PSS = 0, 1, 2
ECDSA_SIG_LEN = 64
RSA_LEN_MIN, RSA_LEN_MAX = 256, 512
META_MAX_COUNT = 1024
META_KEY_MAX = 255
META_VALUE_MAX = 65536
META_TOTAL_MAX = 65536
RECIPIENTS_MIN, RECIPIENTS_MAX = 1, 64
WRAP_RSA_OAEP_SHA256 = 1
HEADER_MAX = 262144
TAG_LEN = 16
MAC_LEN = 32
KEY_ID_LEN = 32
MAX_CHUNKS = 2**32 - 1
WRAP_PLAINTEXT_LEN = 66

INFO_COMMITMENT = b"cipherflow/v1 commitment"
INFO_PAYLOAD = b"cipherflow/v1 payload key"
INFO_MAC = b"cipherflow/v1 header mac"
SIG_CONTEXT = b"cipherflow/v1 signature\x00"

# --------------------------------------------------------------------------- errors


class CipherFlowError(Exception):
    """Base class: the envelope was refused."""


class FormatError(CipherFlowError):
    """Malformed envelope: bad magic, truncated header, a length or limit out of range."""


class UnsupportedError(CipherFlowError):
    """Well-formed so far, but uses a version/suite/algorithm this reader does not know."""


class WrongKeyError(CipherFlowError):
    """No recipient stanza carries the opener's key id."""


class IntegrityError(CipherFlowError):
    """Authentication failed. `where` is "header", a chunk index (int) or "length"."""

    def __init__(self, where, detail: str = ""):
        self.where = where
        loc = f"chunk {where}" if isinstance(where, int) else str(where)
        super().__init__(f"integrity: {loc}" + (f" ({detail})" if detail else ""))


class SignatureError(CipherFlowError):
    """A signer was required and the signature is absent, from another key, or invalid."""


# --------------------------------------------------------------------------- parsing


@dataclass
class Stanza:
    wrap_algorithm: int
    key_id: bytes
    wrapped_key: bytes


@dataclass
class Header:
    version: int
    suite: int
    chunk_size: int
    file_id: bytes
    commitment: bytes
    sig_alg: int
    signer_key_id: bytes | None
    sig_len: int
    metadata: dict = field(default_factory=dict)
    stanzas: list = field(default_factory=list)
    preamble: bytes = b""
    recipients_bytes: bytes = b""
    header_mac: bytes = b""
    header_len: int = 0


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > HEADER_MAX:
            raise FormatError(f"header longer than {HEADER_MAX} bytes (while reading {what})")
        if end > len(self.data):
            raise FormatError(f"truncated header: need {n} bytes for {what} at offset {self.pos}")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u8(self, what):
        return self.take(1, what)[0]

    def u16(self, what):
        return struct.unpack(">H", self.take(2, what))[0]

    def u32(self, what):
        return struct.unpack(">I", self.take(4, what))[0]


def _utf8(b: bytes, what: str) -> str:
    try:
        return b.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise FormatError(f"{what} is not valid UTF-8") from e


def parse_header(data: bytes) -> Header:
    """Section 1.1-1.3 with every check and limit; raises FormatError/UnsupportedError."""
    r = _Reader(data)
    if r.take(8, "magic") != MAGIC:
        raise FormatError("bad magic")
    version = r.u16("format version")
    if version != FORMAT_VERSION:
        # Stop here: the rest of the layout is only defined for version 1.
        raise UnsupportedError(f"unsupported: format version {version}")
    suite = r.u16("suite id")
    if suite != SUITE_AES256GCM_HKDF_HMAC:
        raise UnsupportedError(f"unsupported: suite {suite}")
    chunk_size = r.u32("chunk size")
    if not CHUNK_MIN <= chunk_size <= CHUNK_MAX:
        raise FormatError(f"chunk size {chunk_size} out of range")
    file_id = r.take(32, "file id")
    commitment = r.take(32, "commitment")
    sig_alg = r.u8("signature algorithm")
    signer_key_id = None
    sig_len = 0
    if sig_alg == SIG_NONE:
        pass
    elif sig_alg in (SIG_ECDSA_P256, SIG_RSA_PSS):
        signer_key_id = r.take(KEY_ID_LEN, "signer key id")
        sig_len = r.u16("signature length")
        if sig_alg == SIG_ECDSA_P256 and sig_len != ECDSA_SIG_LEN:
            raise FormatError(f"ECDSA signature length {sig_len} != 64")
        if sig_alg == SIG_RSA_PSS and not RSA_LEN_MIN <= sig_len <= RSA_LEN_MAX:
            raise FormatError(f"RSA-PSS signature length {sig_len} out of range")
    else:
        raise UnsupportedError(f"unsupported: signature algorithm {sig_alg}")

    m = r.u16("metadata count")
    if m > META_MAX_COUNT:
        raise FormatError(f"metadata count {m} > {META_MAX_COUNT}")
    meta_start = r.pos
    metadata: dict[str, str] = {}
    prev_key: bytes | None = None
    for i in range(m):
        klen = r.u16("metadata key length")
        if not 1 <= klen <= META_KEY_MAX:
            raise FormatError(f"metadata key length {klen} out of range")
        kb = r.take(klen, "metadata key")
        vlen = r.u32("metadata value length")
        if vlen > META_VALUE_MAX:
            raise FormatError(f"metadata value length {vlen} out of range")
        vb = r.take(vlen, "metadata value")
        if r.pos - meta_start > META_TOTAL_MAX:
            raise FormatError("metadata larger than 65536 bytes")
        if prev_key is not None and not prev_key < kb:
            raise FormatError("metadata keys not strictly ascending")
        prev_key = kb
        metadata[_utf8(kb, "metadata key")] = _utf8(vb, "metadata value")
    preamble_end = r.pos

    rcount = r.u16("recipient count")
    if not RECIPIENTS_MIN <= rcount <= RECIPIENTS_MAX:
        raise FormatError(f"recipient count {rcount} out of range")
    stanzas: list[Stanza] = []
    seen: set[bytes] = set()
    for _ in range(rcount):
        alg = r.u8("wrap algorithm")
        if alg != WRAP_RSA_OAEP_SHA256:
            raise UnsupportedError(f"unsupported: wrap algorithm {alg}")
        kid = r.take(KEY_ID_LEN, "recipient key id")
        w = r.u16("wrapped key length")
        if not RSA_LEN_MIN <= w <= RSA_LEN_MAX:
            raise FormatError(f"wrapped key length {w} out of range")
        wk = r.take(w, "wrapped key")
        if kid in seen:
            raise FormatError("two stanzas with the same key id")
        seen.add(kid)
        stanzas.append(Stanza(alg, kid, wk))
    recipients_end = r.pos
    mac = r.take(MAC_LEN, "header MAC")
    return Header(
        version=version, suite=suite, chunk_size=chunk_size, file_id=file_id,
        commitment=commitment, sig_alg=sig_alg, signer_key_id=signer_key_id, sig_len=sig_len,
        metadata=metadata, stanzas=stanzas,
        preamble=data[:preamble_end], recipients_bytes=data[preamble_end:recipients_end],
        header_mac=mac, header_len=r.pos,
    )


def body_layout(data: bytes, h: Header) -> tuple[int, int]:
    """Section 1.4: returns (body_len B, chunk count n) or raises IntegrityError("length")."""
    b = len(data) - h.header_len - h.sig_len
    if b < 0:
        raise IntegrityError("length", "envelope shorter than header + signature")
    step = h.chunk_size + TAG_LEN
    n = max(1, -(-b // step))
    last = b - (n - 1) * step
    if last < (TAG_LEN if n == 1 else TAG_LEN + 1):
        raise IntegrityError("length", f"last chunk of {last} bytes")
    if n > MAX_CHUNKS:
        raise IntegrityError("length", "too many chunks")
    return b, n


# --------------------------------------------------------------------------- crypto helpers


def key_id_of_public(pub) -> bytes:
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def derive_keys(data_key: bytes, file_id: bytes) -> tuple[bytes, bytes, bytes]:
    """(commitment, payload_key, mac_key), section 2."""
    prk = hmac.new(file_id, data_key, hashlib.sha256).digest()  # HKDF-Extract(salt, ikm)

    def expand(info: bytes) -> bytes:
        return HKDFExpand(hashes.SHA256(), 32, info).derive(prk)

    return expand(INFO_COMMITMENT), expand(INFO_PAYLOAD), expand(INFO_MAC)


def chunk_nonce(i: int, last: bool) -> bytes:
    return i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def signature_message(preamble: bytes, sealed_chunk_hashes: list[bytes]) -> bytes:
    return (SIG_CONTEXT + hashlib.sha256(preamble).digest()
            + hashlib.sha256(b"".join(sealed_chunk_hashes)).digest()
            + len(sealed_chunk_hashes).to_bytes(8, "big"))


def _load_private(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("recipient key must be RSA")
    if not 2048 <= key.key_size <= 4096:
        raise ValueError(f"RSA key size {key.key_size} outside 2048..4096")
    return key


def _load_public(pem: bytes):
    return serialization.load_pem_public_key(pem)


def verify_signature(h: Header, signature: bytes, message: bytes, signer_pub) -> None:
    if h.sig_alg == SIG_NONE:
        raise SignatureError("signature: required but envelope is unsigned")
    if not hmac.compare_digest(h.signer_key_id, key_id_of_public(signer_pub)):
        raise SignatureError("signature: signer key id is not the trusted key")
    try:
        if h.sig_alg == SIG_ECDSA_P256:
            if not (isinstance(signer_pub, ec.EllipticCurvePublicKey)
                    and isinstance(signer_pub.curve, ec.SECP256R1)):
                raise SignatureError("signature: algorithm 1 but signer is not a P-256 key")
            if len(signature) != 64:
                raise SignatureError("signature: invalid length")
            rr = int.from_bytes(signature[:32], "big")
            ss = int.from_bytes(signature[32:], "big")
            signer_pub.verify(encode_dss_signature(rr, ss), message, ec.ECDSA(hashes.SHA256()))
        elif h.sig_alg == SIG_RSA_PSS:
            if not isinstance(signer_pub, rsa.RSAPublicKey):
                raise SignatureError("signature: algorithm 2 but signer is not an RSA key")
            if len(signature) != (signer_pub.key_size + 7) // 8:
                raise SignatureError("signature: length differs from the signer's modulus")
            signer_pub.verify(signature, message,
                              padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                              hashes.SHA256())
        else:  # parse_header already refused anything else
            raise SignatureError("signature: unknown algorithm")
    except InvalidSignature as e:
        raise SignatureError("signature: invalid") from e


# --------------------------------------------------------------------------- API


def inspect(data: bytes) -> dict:
    """Parse and check the header and body layout (no keys needed)."""
    h = parse_header(data)
    b, n = body_layout(data, h)
    return {
        "format_version": h.version,
        "suite": h.suite,
        "chunk_size": h.chunk_size,
        "file_id": h.file_id.hex(),
        "commitment": h.commitment.hex(),
        "signature_algorithm": {0: "none", 1: "ecdsa-p256-sha256", 2: "rsa-pss-sha256"}[h.sig_alg],
        "signer_key_id": h.signer_key_id.hex() if h.signer_key_id else None,
        "signature_length": h.sig_len,
        "metadata": dict(h.metadata),
        "recipients": [
            {"wrap_algorithm": s.wrap_algorithm, "key_id": s.key_id.hex(),
             "wrapped_key_length": len(s.wrapped_key)}
            for s in h.stanzas
        ],
        "header_length": h.header_len,
        "header_mac": h.header_mac.hex(),
        "body_length": b,
        "chunk_count": n,
        "envelope_length": len(data),
    }


def open_envelope(data: bytes, private_key_pem: bytes, signer_public_pem: bytes | None = None) -> bytes:
    """One-shot opener: returns the plaintext only after everything verified (section 3)."""
    # 1. header and limits
    h = parse_header(data)
    body_len, n = body_layout(data, h)
    priv = _load_private(private_key_pem)
    signer_pub = _load_public(signer_public_pem) if signer_public_pem is not None else None

    # 2. stanza by key id
    my_id = key_id_of_public(priv.public_key())
    stanza = next((s for s in h.stanzas if hmac.compare_digest(s.key_id, my_id)), None)
    if stanza is None:
        raise WrongKeyError(f"wrong key: no stanza for key id {my_id.hex()}")

    # 3. unwrap and check the wrap plaintext
    if len(stanza.wrapped_key) != (priv.key_size + 7) // 8:
        raise IntegrityError("header", "wrapped key length differs from the modulus length")
    try:
        wp = priv.decrypt(stanza.wrapped_key, padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    except ValueError as e:
        raise IntegrityError("header", "RSA-OAEP unwrap failed") from e
    if len(wp) != WRAP_PLAINTEXT_LEN:
        raise IntegrityError("header", "wrap plaintext is not 66 bytes")
    suite_ok = hmac.compare_digest(wp[:2], h.suite.to_bytes(2, "big"))
    fid_ok = hmac.compare_digest(wp[2:34], h.file_id)
    if not (suite_ok & fid_ok):
        raise IntegrityError("header", "wrapped key belongs to another envelope")
    data_key = wp[34:66]

    # 4. key commitment, before any chunk
    commitment, payload_key, mac_key = derive_keys(data_key, h.file_id)
    if not hmac.compare_digest(commitment, h.commitment):
        raise IntegrityError("header", "key commitment mismatch")

    # 5. header MAC over the exact bytes received
    mac = hmac.new(mac_key, h.preamble + h.recipients_bytes, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, h.header_mac):
        raise IntegrityError("header", "header MAC mismatch")

    # 6. chunks (STREAM)
    aead = AESGCM(payload_key)
    body = memoryview(data)[h.header_len:h.header_len + body_len]
    step = h.chunk_size + TAG_LEN
    out = []
    sealed_hashes = []
    for i in range(n):
        sealed = bytes(body[i * step:min((i + 1) * step, body_len)])
        try:
            out.append(aead.decrypt(chunk_nonce(i, i == n - 1), sealed, None))
        except InvalidTag as e:
            raise IntegrityError(i, "tag mismatch") from e
        sealed_hashes.append(hashlib.sha256(sealed).digest())
    # exactly S bytes left: true by construction of body_layout
    assert len(data) - h.header_len - body_len == h.sig_len

    # 7. signature
    if signer_pub is not None:
        signature = data[len(data) - h.sig_len:] if h.sig_len else b""
        verify_signature(h, signature, signature_message(h.preamble, sealed_hashes), signer_pub)
    return b"".join(out)


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="cipherflow_ref.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("open", help="decrypt and verify an envelope")
    o.add_argument("--key", required=True, help="recipient private key (PEM)")
    o.add_argument("--signer", help="trusted signer public key (PEM); requires a valid signature")
    o.add_argument("input")
    o.add_argument("output")
    i = sub.add_parser("inspect", help="print the header as JSON")
    i.add_argument("input")
    args = ap.parse_args(argv)
    try:
        with open(args.input, "rb") as f:
            data = f.read()
        if args.cmd == "inspect":
            print(json.dumps(inspect(data), indent=2))
            return 0
        with open(args.key, "rb") as f:
            key = f.read()
        signer = None
        if args.signer:
            with open(args.signer, "rb") as f:
                signer = f.read()
        pt = open_envelope(data, key, signer)
        with open(args.output, "wb") as f:
            f.write(pt)
        return 0
    except CipherFlowError as e:
        print(f"refused ({type(e).__name__}): {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
