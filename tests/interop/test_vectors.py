"""Interop tests: the independent Python opener (cipherflow_ref.py) against the
committed vectors (docs/vectors/envelope-v1.json) and, if CIPHERFLOW_BIN is set,
against envelopes sealed by the Rust command line."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cipherflow_ref as ref  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "vectors" / "envelope-v1.json"
KEYS = ROOT / "cipherflow-core" / "tests" / "data"
CASES = json.loads(VECTORS.read_text())["cases"]


def key(name: str) -> bytes:
    return (KEYS / name).read_bytes()


def env_of(case) -> bytes:
    return bytes.fromhex(case["envelope"])


def signer_of(case):
    return key(case["signer_public_key_pem"]) if case["signer_public_key_pem"] else None


VALID = [c for c in CASES if c["valid"]]
INVALID = [c for c in CASES if not c["valid"]]
BY_NAME = {c["name"]: c for c in CASES}


def case_key_params(cases):
    return [pytest.param(c, k, id=f"{c['name']}|{k}") for c in cases for k in c["recipient_private_keys_pem"]]


# ----------------------------------------------------------------------------- vectors


def test_vector_file_shape():
    assert len(VALID) >= 7 and len(INVALID) >= 1
    for c in INVALID:
        assert c["reason"].split(":")[0] in {"integrity", "unsupported", "signature"}, c["reason"]


@pytest.mark.parametrize("case,keyfile", case_key_params(VALID))
def test_valid_case_opens(case, keyfile):
    pt = ref.open_envelope(env_of(case), key(keyfile), signer_of(case))
    assert pt == bytes.fromhex(case["plaintext"])


@pytest.mark.parametrize("case,keyfile", case_key_params(VALID))
def test_valid_case_opens_without_signer(case, keyfile):
    # Without a required signer the signature trailer is skipped, not verified.
    assert ref.open_envelope(env_of(case), key(keyfile)) == bytes.fromhex(case["plaintext"])


def _check_refusal(exc: BaseException, reason: str):
    kind, _, detail = reason.partition(":")
    detail = detail.strip()
    if kind == "integrity":
        assert isinstance(exc, ref.IntegrityError), repr(exc)
        if detail == "header":
            assert exc.where == "header"
        elif detail.startswith("chunk "):
            assert exc.where == int(detail.split()[1])
        else:
            assert str(exc.where) == detail
    elif kind == "unsupported":
        assert isinstance(exc, ref.UnsupportedError), repr(exc)
        assert str(exc).startswith(reason), (str(exc), reason)
    elif kind == "signature":
        assert isinstance(exc, ref.SignatureError), repr(exc)
        assert str(exc).startswith(reason), (str(exc), reason)
    else:
        pytest.fail(f"unknown reason kind {reason!r}")


@pytest.mark.parametrize("case,keyfile", case_key_params(INVALID))
def test_invalid_case_refused(case, keyfile):
    with pytest.raises(ref.CipherFlowError) as ei:
        ref.open_envelope(env_of(case), key(keyfile), signer_of(case))
    _check_refusal(ei.value, case["reason"])


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in CASES])
def test_inspect_fields(case):
    data = env_of(case)
    if case["reason"] and case["reason"].startswith("unsupported"):
        with pytest.raises(ref.UnsupportedError):
            ref.inspect(data)
        return
    info = ref.inspect(data)
    assert info["chunk_size"] == case["chunk_size"]
    assert info["metadata"] == case["metadata"]
    assert info["file_id"] == case["file_id"] or case["name"] == "flipped file id byte"
    # every listed private key has a stanza; the stanza count equals the key count
    ids = {r["key_id"] for r in info["recipients"]}
    assert len(info["recipients"]) == len(case["recipient_private_keys_pem"])
    for k in case["recipient_private_keys_pem"]:
        pub = serialization.load_pem_private_key(key(k), None).public_key()
        assert ref.key_id_of_public(pub).hex() in ids
    if case["signer_public_key_pem"]:
        spub = serialization.load_pem_public_key(key(case["signer_public_key_pem"]))
        assert info["signer_key_id"] == ref.key_id_of_public(spub).hex()
        assert info["signature_algorithm"] != "none"
    else:
        assert info["signature_algorithm"] == "none" and info["signer_key_id"] is None
    if case["valid"]:
        p = len(bytes.fromhex(case["plaintext"]))
        c = case["chunk_size"]
        assert info["chunk_count"] == max(1, -(-p // c))
        assert info["body_length"] == p + 16 * info["chunk_count"]


# ----------------------------------------------------------- key schedule / canonical bytes


def _seal(plaintext: bytes, recipient_pubs, *, chunk_size=1024, metadata=None, data_key=None,
          file_id=None, signer_priv=None, sig_alg=0, recipients_override=None) -> bytes:
    """Minimal sealer written from FORMAT.md, used to cross-check the vectors and to make
    must-fail envelopes the vector file does not cover."""
    data_key = data_key or os.urandom(32)
    file_id = file_id or os.urandom(32)
    commitment, payload_key, mac_key = ref.derive_keys(data_key, file_id)
    pre = ref.MAGIC + struct.pack(">HHI", 1, 1, chunk_size) + file_id + commitment
    sig_len = 0
    if signer_priv is None:
        pre += b"\x00"
    else:
        from cryptography.hazmat.primitives.asymmetric import ec
        spub = signer_priv.public_key()
        if isinstance(spub, ec.EllipticCurvePublicKey):
            sig_alg, sig_len = 1, 64
        else:
            sig_alg, sig_len = 2, spub.key_size // 8
        pre += bytes([sig_alg]) + ref.key_id_of_public(spub) + struct.pack(">H", sig_len)
    meta = sorted((k.encode(), v.encode()) for k, v in (metadata or {}).items())
    pre += struct.pack(">H", len(meta))
    for k, v in meta:
        pre += struct.pack(">H", len(k)) + k + struct.pack(">I", len(v)) + v
    if recipients_override is not None:
        rec = recipients_override
    else:
        rec = struct.pack(">H", len(recipient_pubs))
        wp = struct.pack(">H", 1) + file_id + data_key
        for pub in recipient_pubs:
            wk = pub.encrypt(wp, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                              algorithm=hashes.SHA256(), label=None))
            rec += b"\x01" + ref.key_id_of_public(pub) + struct.pack(">H", len(wk)) + wk
    mac = hmac.new(mac_key, pre + rec, hashlib.sha256).digest()
    chunks = [plaintext[i:i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    aead = AESGCM(payload_key)
    sealed = [aead.encrypt(ref.chunk_nonce(i, i == len(chunks) - 1), c, None) for i, c in enumerate(chunks)]
    out = pre + rec + mac + b"".join(sealed)
    if signer_priv is not None:
        msg = ref.signature_message(pre, [hashlib.sha256(s).digest() for s in sealed])
        if sig_alg == 1:
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
            r, s = decode_dss_signature(signer_priv.sign(msg, ec.ECDSA(hashes.SHA256())))
            out += r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            out += signer_priv.sign(msg, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                                    hashes.SHA256())
    return out


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in VALID])
def test_vector_reproducible_from_spec(case):
    """Preamble and body are deterministic given data_key, file_id and plaintext:
    re-derive them from FORMAT.md and compare byte for byte."""
    data = env_of(case)
    h = ref.parse_header(data)
    dk, fid = bytes.fromhex(case["data_key"]), bytes.fromhex(case["file_id"])
    commitment, _, mac_key = ref.derive_keys(dk, fid)
    assert h.commitment == commitment
    assert hmac.new(mac_key, h.preamble + h.recipients_bytes, hashlib.sha256).digest() == h.header_mac
    signer_priv = None
    if case["signer_public_key_pem"]:
        signer_priv = serialization.load_pem_private_key(
            key(case["signer_public_key_pem"].replace(".pub.pem", ".pem")), None)
    mine = _seal(bytes.fromhex(case["plaintext"]), [], chunk_size=case["chunk_size"],
                 metadata=case["metadata"], data_key=dk, file_id=fid, signer_priv=signer_priv,
                 recipients_override=h.recipients_bytes)
    assert mine[:len(h.preamble)] == h.preamble
    body_end = len(data) - h.sig_len
    assert mine[h.header_len:len(mine) - h.sig_len] == data[h.header_len:body_end]


def test_key_id_independent_of_pem_form():
    a = serialization.load_pem_private_key(key("alice.pem"), None).public_key()
    a1 = serialization.load_pem_private_key(key("alice.pkcs1.pem"), None).public_key()
    a2 = serialization.load_pem_public_key(key("alice.pkcs1.pub.pem"))
    a3 = serialization.load_der_public_key(key("alice.pub.der"))
    ids = {ref.key_id_of_public(k) for k in (a, a1, a2, a3)}
    assert len(ids) == 1
    case = BY_NAME["one chunk"]
    assert ref.open_envelope(env_of(case), key("alice.pkcs1.pem")) == bytes.fromhex(case["plaintext"])


# ---------------------------------------------------------------- extra must-fail cases


def _alice_pub():
    return serialization.load_pem_public_key(key("alice.pub.pem"))


def _bob_pub():
    return serialization.load_pem_public_key(key("bob.pub.pem"))


def test_wrong_key():
    with pytest.raises(ref.WrongKeyError):
        ref.open_envelope(env_of(BY_NAME["one chunk"]), key("bob.pem"))


def test_signer_required_but_unsigned():
    with pytest.raises(ref.SignatureError):
        ref.open_envelope(env_of(BY_NAME["one chunk"]), key("alice.pem"), key("producer.pub.pem"))


def test_signer_other_key():
    with pytest.raises(ref.SignatureError):
        ref.open_envelope(env_of(BY_NAME["signed ECDSA P-256"]), key("alice.pem"), key("producer-rsa.pub.pem"))
    with pytest.raises(ref.SignatureError):
        ref.open_envelope(env_of(BY_NAME["signed RSA-PSS"]), key("alice.pem"), key("producer.pub.pem"))


def test_signed_rsa_case_is_rsa_pss_with_modulus_length():
    info = ref.inspect(env_of(BY_NAME["signed RSA-PSS"]))
    assert info["signature_algorithm"] == "rsa-pss-sha256"
    spub = serialization.load_pem_public_key(key("producer-rsa.pub.pem"))
    assert info["signature_length"] == spub.key_size // 8


def test_sealer_roundtrip_signed_both_algorithms():
    for name in ("producer.pem", "producer-rsa.pem"):
        sp = serialization.load_pem_private_key(key(name), None)
        pt = os.urandom(3000)
        env = _seal(pt, [_alice_pub(), _bob_pub()], metadata={"b": "2", "a": "1"}, signer_priv=sp)
        pub = key(name.replace(".pem", ".pub.pem"))
        assert ref.open_envelope(env, key("bob.pem"), pub) == pt


def test_stanza_moved_to_other_envelope():
    e1 = _seal(b"x" * 10, [_alice_pub()])
    e2 = _seal(b"y" * 10, [_alice_pub()])
    h1, h2 = ref.parse_header(e1), ref.parse_header(e2)
    moved = h2.preamble + h1.recipients_bytes + e2[h2.header_len - 32:]
    with pytest.raises(ref.IntegrityError) as ei:
        ref.open_envelope(moved, key("alice.pem"))
    assert ei.value.where == "header"


def test_rewrap_keeps_signature():
    sp = serialization.load_pem_private_key(key("producer.pem"), None)
    dk, fid = os.urandom(32), os.urandom(32)
    e1 = _seal(b"z" * 2000, [_alice_pub()], data_key=dk, file_id=fid, signer_priv=sp)
    h1 = ref.parse_header(e1)
    # a rewrap: new stanzas, new MAC, preamble/body/signature copied byte for byte
    e2 = _seal(b"", [_alice_pub(), _bob_pub()], data_key=dk, file_id=fid, signer_priv=sp)
    h2 = ref.parse_header(e2)
    _, _, mac_key = ref.derive_keys(dk, fid)
    mac = hmac.new(mac_key, h1.preamble + h2.recipients_bytes, hashlib.sha256).digest()
    rewrapped = h1.preamble + h2.recipients_bytes + mac + e1[h1.header_len:]
    assert ref.open_envelope(rewrapped, key("bob.pem"), key("producer.pub.pem")) == b"z" * 2000


def _mutate(data: bytes, off: int, new: bytes) -> bytes:
    return data[:off] + new + data[off + len(new):]


@pytest.mark.parametrize("mut,exc", [
    (lambda d: _mutate(d, 0, b"\x88"), ref.FormatError),                        # magic
    (lambda d: _mutate(d, 10, b"\x00\x02"), ref.UnsupportedError),              # suite
    (lambda d: _mutate(d, 12, struct.pack(">I", 1023)), ref.FormatError),       # C too small
    (lambda d: _mutate(d, 12, struct.pack(">I", 16 * 2**20 + 1)), ref.FormatError),  # C too big
    (lambda d: _mutate(d, 80, b"\x03"), ref.UnsupportedError),                  # sig alg
    (lambda d: _mutate(d, 81, b"\x04\x01"), ref.FormatError),                   # m > 1024
    (lambda d: _mutate(d, 83, b"\x00\x00"), ref.FormatError),                   # r = 0
    (lambda d: _mutate(d, 83, b"\x00\x41"), ref.FormatError),                   # r = 65
    (lambda d: _mutate(d, 85, b"\x02"), ref.UnsupportedError),                  # wrap alg
    (lambda d: _mutate(d, 118, b"\x00\xff"), ref.FormatError),                  # w = 255
    (lambda d: d[:100], ref.FormatError),                                       # truncated header
])
def test_header_checks(mut, exc):
    env = _seal(b"hello", [_alice_pub()])
    assert ref.open_envelope(env, key("alice.pem")) == b"hello"
    with pytest.raises(exc):
        ref.open_envelope(mut(env), key("alice.pem"))
    with pytest.raises(exc):
        ref.inspect(mut(env))


def test_duplicate_stanza_refused():
    env = _seal(b"hello", [_alice_pub(), _alice_pub()])
    with pytest.raises(ref.FormatError):
        ref.inspect(env)


def _meta_envelope(entries):
    pre = ref.MAGIC + struct.pack(">HHI", 1, 1, 1024) + b"\0" * 64 + b"\x00" + struct.pack(">H", len(entries))
    for k, v in entries:
        pre += struct.pack(">H", len(k)) + k + struct.pack(">I", len(v)) + v
    return pre


@pytest.mark.parametrize("entries", [
    [(b"b", b""), (b"a", b"")],              # not ascending
    [(b"a", b""), (b"a", b"")],              # duplicate
    [(b"", b"x")],                           # empty key
    [(b"k" * 256, b"")],                     # key too long
    [(b"\xff", b"")],                        # key not UTF-8
    [(b"a", b"\xc3")],                       # value not UTF-8
    [(b"a", b"v" * 65537)],                  # value too long
    [(b"a", b"v" * 40000), (b"b", b"v" * 40000)],  # total > 65536
])
def test_metadata_checks(entries):
    with pytest.raises(ref.FormatError):
        ref.parse_header(_meta_envelope(entries) + b"\0" * 2000)


def test_metadata_ok_and_bytewise_order():
    # bytewise (not code-point-of-str-lowercase) order: "B" < "a" < "é"
    env = _seal(b"", [_alice_pub()], metadata={"a": "1", "B": "2", "é": "3"})
    assert ref.inspect(env)["metadata"] == {"a": "1", "B": "2", "é": "3"}


@pytest.mark.parametrize("cut", [1, 16])
def test_short_last_chunk_is_length_error(cut):
    env = _seal(b"q" * 1024 * 2, [_alice_pub()])   # two full chunks
    # append `cut` stray bytes: a third "chunk" shorter than 17 bytes
    with pytest.raises(ref.IntegrityError) as ei:
        ref.open_envelope(env + b"\0" * cut, key("alice.pem"))
    assert ei.value.where == "length"


def test_empty_body_is_length_error():
    env = _seal(b"", [_alice_pub()])
    h = ref.parse_header(env)
    with pytest.raises(ref.IntegrityError) as ei:
        ref.open_envelope(env[:h.header_len + 15], key("alice.pem"))
    assert ei.value.where == "length"


def test_trailing_byte_fails_last_chunk():
    env = _seal(b"q" * 1500, [_alice_pub()])
    with pytest.raises(ref.IntegrityError) as ei:
        ref.open_envelope(env + b"\0", key("alice.pem"))
    assert ei.value.where == 1


def test_cli_open_and_inspect_on_vector(tmp_path):
    case = BY_NAME["signed ECDSA P-256"]
    src = tmp_path / "in.cfe"
    src.write_bytes(env_of(case))
    out = tmp_path / "out"
    me = str(Path(ref.__file__))
    subprocess.run([sys.executable, me, "open", "--key", str(KEYS / "alice.pem"),
                    "--signer", str(KEYS / "producer.pub.pem"), str(src), str(out)], check=True)
    assert out.read_bytes() == bytes.fromhex(case["plaintext"])
    info = json.loads(subprocess.run([sys.executable, me, "inspect", str(src)], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["metadata"] == case["metadata"]
    bad = tmp_path / "bad.cfe"
    bad.write_bytes(env_of(BY_NAME["flipped signature byte"]))
    p = subprocess.run([sys.executable, me, "open", "--key", str(KEYS / "alice.pem"),
                        "--signer", str(KEYS / "producer.pub.pem"), str(bad), str(tmp_path / "o2")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "SignatureError" in p.stderr
    assert not (tmp_path / "o2").exists()


# ---------------------------------------------------------------- Rust CLI interop

SIZES = [0, 1, 1024 * 1024 + 1, 3 * 1024 * 1024]


@pytest.fixture(scope="module")
def rust_keys(tmp_path_factory):
    binary = os.environ.get("CIPHERFLOW_BIN")
    if not binary:
        pytest.skip("CIPHERFLOW_BIN is not set (path to the Rust `cipherflow` binary)")
    d = tmp_path_factory.mktemp("rustkeys")
    subprocess.run([binary, "keygen", "--private", str(d / "k.pem"), "--public", str(d / "k.pub.pem"),
                    "--bits", "2048"], check=True, capture_output=True)
    subprocess.run([binary, "keygen", "--signing", "--private", str(d / "s.pem"),
                    "--public", str(d / "s.pub.pem")], check=True, capture_output=True)
    return binary, d


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("size", SIZES)
def test_open_rust_sealed(rust_keys, tmp_path, size, signed):
    binary, d = rust_keys
    pt = os.urandom(size)
    (tmp_path / "in").write_bytes(pt)
    cmd = [binary, "seal", "--recipient", str(d / "k.pub.pem"), "--meta", "table=t",
           "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    if signed:
        cmd[2:2] = ["--sign-key", str(d / "s.pem")]
    subprocess.run(cmd, check=True, capture_output=True)
    env = (tmp_path / "out").read_bytes()
    info = ref.inspect(env)
    assert info["metadata"] == {"table": "t"}
    assert info["chunk_size"] == 1024 * 1024          # FORMAT.md section 6 default
    assert info["chunk_count"] == max(1, -(-size // (1024 * 1024)))
    assert info["signature_algorithm"] == ("ecdsa-p256-sha256" if signed else "none")
    signer = (d / "s.pub.pem").read_bytes() if signed else None
    assert ref.open_envelope(env, (d / "k.pem").read_bytes(), signer) == pt
    if signed:
        # and the CLI path of the reference opener
        subprocess.run([sys.executable, ref.__file__, "open", "--key", str(d / "k.pem"),
                        "--signer", str(d / "s.pub.pem"), str(tmp_path / "out"), str(tmp_path / "pt")],
                       check=True)
        assert (tmp_path / "pt").read_bytes() == pt
    else:
        with pytest.raises(ref.SignatureError):
            ref.open_envelope(env, (d / "k.pem").read_bytes(), key("producer.pub.pem"))


@pytest.mark.parametrize("signer", [None, "producer", "producer-rsa"])
@pytest.mark.parametrize("size", [0, 1, 5000])
def test_rust_opens_python_sealed(rust_keys, tmp_path, size, signer):
    """Reverse direction: an envelope sealed from FORMAT.md by the test sealer opens with the Rust CLI."""
    binary, _ = rust_keys
    pt = os.urandom(size)
    sp = serialization.load_pem_private_key(key(f"{signer}.pem"), None) if signer else None
    env = _seal(pt, [_alice_pub(), _bob_pub()], chunk_size=1024, metadata={"table": "t", "x": ""},
                signer_priv=sp)
    (tmp_path / "env").write_bytes(env)
    cmd = [binary, "open", "--key", str(KEYS / "bob.pem"), "-i", str(tmp_path / "env"), "-o", str(tmp_path / "pt")]
    if signer:
        cmd += ["--signer", str(KEYS / f"{signer}.pub.pem")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "pt").read_bytes() == pt
