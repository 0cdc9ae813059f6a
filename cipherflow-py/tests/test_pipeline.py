"""The consumer's pull and the ledger checks, against a share and a ledger written by the Rust
pipeline step (`cipherflow run`, from CIPHERFLOW_BIN) on local folders: the table Python pulls
equals the expected merge and what `cipherflow pull` writes; tampering, swapping, rollback,
wrong keys and a tampered ledger are refused with the documented exception."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import cipherflow

# As DMS lands them: a full load without a change sequence (it orders lowest), then CDC files
# whose AR_H_CHANGE_SEQ orders them. (File names alone would not: "LOAD..." sorts after
# "2024...", and the name is the last tie-breaker of the ordering key, docs/MERGE.md 2.2.)
LOAD = "region,order_no,amount,status\neu,1,10.00,new\neu,2,20.00,new\nus,1,7308.00,new\n"
B1 = (
    "Op,AR_H_CHANGE_SEQ,region,order_no,amount,status\n"
    "U,20240104000000000000000000000000001,eu,1,11.00,paid\n"
    "D,20240104000000000000000000000000002,eu,2,,\n"
    'I,20240104000000000000000000000000003,us,2,5,"new, rush"\n'
)
B2 = (
    "Op,AR_H_CHANGE_SEQ,region,order_no,amount,status\n"
    "U,20240105000000000000000000000000001,us,1,7308.00,shipped\n"
)
EXPECTED_1 = "region,order_no,amount,status\neu,1,10.00,new\neu,2,20.00,new\nus,1,7308.00,new\n"
EXPECTED_2 = (
    'region,order_no,amount,status\neu,1,11.00,paid\nus,1,7308.00,shipped\nus,2,5,"new, rush"\n'
)

CONFIG = """[table]
name = "orders"
columns = ["region", "order_no", "amount", "status"]
key = "region,order_no:int64"
partitions = 3

[input]
sequence_column = "AR_H_CHANGE_SEQ"

[stores]
landing = "landing"
state = "state"
share = "share"
ledger = "ledger"

[keys]
recipients = ["keys/alice.pub.pem"]
state_public = "keys/state.pub.pem"
state_private = "keys/state.pem"
signer = "keys/signer.pem"

[compaction]
max_runs = {max_runs}
"""


@dataclass
class Producer:
    """A pipeline folder (landing, state, share, ledger, keys) and the CLI that runs it."""

    cli: Path
    root: Path
    verifying: cipherflow.VerifyingKey

    @property
    def share(self) -> Path:
        return self.root / "share"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    def cf(self, *args: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self.cli), *map(str, args)], capture_output=True, check=False)

    def cf_json(self, *args: object) -> Any:
        r = self.cf(*args)
        assert r.returncode == 0, r.stderr.decode()
        return json.loads(r.stdout)

    def land(self, name: str, text: str) -> None:
        (self.root / "landing" / name).write_text(text)

    def run(self) -> Any:
        return self.cf_json("run", "--config", self.root / "pipeline.toml")

    def run_files(self, pattern: str) -> list[Path]:
        return sorted((self.share / "orders").glob(pattern))


def make_producer(
    cli: Path,
    root: Path,
    recipient: cipherflow.PublicKey,
    producer: cipherflow.SigningKey,
    max_runs: int = 8,
) -> Producer:
    """A pipeline folder whose share is sealed for `recipient` and signed by `producer`."""
    keys = root / "keys"
    keys.mkdir(parents=True)
    state = cipherflow.generate_key(2048)
    (keys / "alice.pub.pem").write_bytes(recipient.to_pem())
    (keys / "state.pem").write_bytes(state.to_pem())
    (keys / "state.pub.pem").write_bytes(state.public_key().to_pem())
    (keys / "signer.pem").write_bytes(producer.to_pem())
    (keys / "signer.pub.pem").write_bytes(producer.verifying_key().to_pem())
    (root / "pipeline.toml").write_text(CONFIG.format(max_runs=max_runs))
    (root / "landing").mkdir()
    return Producer(cli, root, producer.verifying_key())


@pytest.fixture
def share(
    pipeline_cli: Path,
    tmp_path: Path,
    alice: cipherflow.PrivateKey,
    producer: cipherflow.SigningKey,
) -> Producer:
    """A share at generation 1 (the full load)."""
    p = make_producer(pipeline_cli, tmp_path / "pipeline", alice.public_key(), producer)
    p.land("LOAD00000001.csv", LOAD)
    assert p.run()["generation"] == 1
    return p


def write_alice_key(p: Producer, alice: cipherflow.PrivateKey) -> Path:
    path = p.root / "keys" / "alice.pem"
    path.write_bytes(alice.to_pem())
    return path


def test_pull_equals_the_merge_and_the_cli(
    share: Producer, alice: cipherflow.PrivateKey, tmp_path: Path
) -> None:
    out, cli_out = tmp_path / "py", tmp_path / "cli"
    alice_pem = write_alice_key(share, alice)

    def cli_pull() -> Any:
        return share.cf_json(
            "pull",
            "--share",
            share.share,
            "--key",
            alice_pem,
            "--signer",
            share.root / "keys/signer.pub.pem",
            "--out",
            cli_out,
        )

    first = cipherflow.pull(share.share, alice, out, signer=share.verifying)
    assert first["table"] == "orders"
    assert first["generation"] == 1
    assert first["previous"] is None
    assert first["rows"] == 3
    assert first["fetched"] == len(first["fetched_objects"]) > 1
    assert first["fetched_objects"][0].startswith("orders/manifests/000000000001-")
    assert Path(first["table_csv"]) == out / "orders.csv"
    assert (out / "orders.csv").read_text() == EXPECTED_1
    cli_first = cli_pull()

    share.land("20240104-0000000000.csv", B1)
    share.land("20240105-0000000000.csv", B2)
    assert share.run()["generation"] == 2
    second = cipherflow.pull(share.share, alice, out, signer=share.verifying, table="orders")
    assert second["generation"] == 2
    assert second["previous"] == 1
    assert second["rows"] == 3
    assert (out / "orders.csv").read_text() == EXPECTED_2
    # Only what generation 2 added: its manifest and new runs, nothing fetched before.
    assert not set(second["fetched_objects"]) & set(first["fetched_objects"])
    assert all(
        o.startswith(("orders/manifests/000000000002-", "orders/runs/"))
        for o in second["fetched_objects"]
    )
    assert second["partitions_changed"]
    cli_second = cli_pull()

    # The command line, pulling the same generations, reports and writes the same.
    fields = ["table", "generation", "previous", "fetched", "bytes_fetched", "rows"]
    fields += ["partitions_changed"]
    for report, cli_report in ((first, cli_first), (second, cli_second)):
        py_report: dict[str, Any] = dict(report)
        assert {f: py_report[f] for f in fields} == {f: cli_report[f] for f in fields}
        assert set(cli_report) | {"fetched_objects"} == set(py_report)
    assert (out / "orders.csv").read_bytes() == (cli_out / "orders.csv").read_bytes()
    for part in sorted((cli_out / "orders").glob("part-*.csv")):
        assert (out / "orders" / part.name).read_bytes() == part.read_bytes()

    # Nothing new: the same generation, nothing fetched, the table unchanged.
    third = cipherflow.pull(share.share, alice, out, signer=share.verifying)
    assert (third["generation"], third["previous"], third["fetched"]) == (2, 2, 0)
    assert third["rows"] == 3
    assert (out / "orders.csv").read_text() == EXPECTED_2


def test_pull_after_compaction_from_a_fresh_folder(
    pipeline_cli: Path,
    tmp_path: Path,
    alice: cipherflow.PrivateKey,
    producer: cipherflow.SigningKey,
) -> None:
    p = make_producer(pipeline_cli, tmp_path / "pipeline", alice.public_key(), producer, max_runs=1)
    p.land("LOAD00000001.csv", LOAD)
    p.run()
    p.land("20240104-0000000000.csv", B1)
    p.land("20240105-0000000000.csv", B2)
    assert p.run()["compacted"]
    report = cipherflow.pull(p.share, alice, tmp_path / "out", signer=p.verifying)
    assert any("/base/" in o for o in report["fetched_objects"])
    assert (tmp_path / "out" / "orders.csv").read_text() == EXPECTED_2


def test_a_tampered_run_is_refused_and_nothing_is_written(
    share: Producer, alice: cipherflow.PrivateKey, tmp_path: Path
) -> None:
    run = share.run_files("runs/*/*.cfe")[0]
    data = bytearray(run.read_bytes())
    data[len(data) // 2] ^= 0x40
    run.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(cipherflow.IntegrityError, match="pulling orders from"):
        cipherflow.pull(share.share, alice, out, signer=share.verifying)
    assert not (out / "orders.csv").exists()
    assert not (out / "orders").exists()


def test_a_swapped_object_is_a_hash_mismatch(
    share: Producer, alice: cipherflow.PrivateKey, tmp_path: Path
) -> None:
    # Two runs, both sealed and signed by the producer: each opens and verifies on its own,
    # but not under the other's name in the manifest.
    share.land("20240104-0000000000.csv", B1)
    share.run()
    runs = share.run_files("runs/*/*.cfe")
    assert len(runs) >= 2, runs
    a, b = runs[0], runs[1]
    shutil.copyfile(b, a)
    out = tmp_path / "out"
    with pytest.raises(cipherflow.HashMismatchError, match=a.stem) as info:
        cipherflow.pull(share.share, alice, out, signer=share.verifying)
    assert isinstance(info.value, cipherflow.IntegrityError)
    assert not (out / "orders.csv").exists()


def test_a_rollback_is_refused(
    share: Producer, alice: cipherflow.PrivateKey, tmp_path: Path
) -> None:
    latest = share.share / "orders" / "_latest"
    generation_1 = latest.read_bytes()
    share.land("20240104-0000000000.csv", B1)
    assert share.run()["generation"] == 2
    out = tmp_path / "out"
    cipherflow.pull(share.share, alice, out, signer=share.verifying)
    pulled = (out / "orders.csv").read_bytes()

    latest.write_bytes(generation_1)
    with pytest.raises(cipherflow.RollbackError, match="generation 1, older than generation 2"):
        cipherflow.pull(share.share, alice, out, signer=share.verifying)
    assert issubclass(cipherflow.RollbackError, cipherflow.IntegrityError)
    assert (out / "orders.csv").read_bytes() == pulled


def test_wrong_key_and_wrong_signer(
    share: Producer,
    alice: cipherflow.PrivateKey,
    bob: cipherflow.PrivateKey,
    other_producer: cipherflow.SigningKey,
    tmp_path: Path,
) -> None:
    with pytest.raises(cipherflow.WrongKeyError, match=bob.key_id):
        cipherflow.pull(share.share, bob, tmp_path / "bob")
    with pytest.raises(cipherflow.SignatureError):
        cipherflow.pull(share.share, alice, tmp_path / "a", signer=other_producer.verifying_key())
    assert not (tmp_path / "bob" / "orders.csv").exists()
    assert not (tmp_path / "a" / "orders.csv").exists()
    with pytest.raises(TypeError, match=r"cipherflow\.PrivateKey"):
        cipherflow.pull(share.share, alice.public_key(), tmp_path / "c")  # type: ignore[arg-type]


def test_share_and_table_errors(
    share: Producer, alice: cipherflow.PrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="share"):
        cipherflow.pull(tmp_path / "missing", alice, tmp_path / "out")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(FileNotFoundError, match="customers/_latest"):
        cipherflow.pull(share.share, alice, tmp_path / "out", table="customers")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="publishes no table"):
        cipherflow.pull(tmp_path / "empty", alice, tmp_path / "out")
    (share.share / "orders" / "_latest").write_text('{"format":"nope"}')
    with pytest.raises(cipherflow.PipelineError, match="orders/_latest"):
        cipherflow.pull(share.share, alice, tmp_path / "out")


def test_verify_ledger(share: Producer, producer: cipherflow.SigningKey) -> None:
    report = cipherflow.verify_ledger(share.ledger, [producer.verifying_key()])
    assert report["records"] > 0
    assert report["checkpoints"] >= 1
    assert report["signed_size"] == report["records"]
    root = report["root_hash"]
    assert root is not None
    assert len(root) == 64
    assert int(root, 16) >= 0
    assert report["origin"]

    # A validity window that covers now; one that ended before the checkpoint fails.
    now = datetime.now(timezone.utc)
    assert cipherflow.verify_ledger(share.ledger, [(producer.verifying_key(), 0, None)]) == report
    with pytest.raises(cipherflow.LedgerError, match="not valid"):
        cipherflow.verify_ledger(share.ledger, [(producer.verifying_key(), None, 1)])
    with pytest.raises(ValueError, match="naive datetime"):
        cipherflow.verify_ledger(
            share.ledger, [(producer.verifying_key(), now.replace(tzinfo=None), None)]
        )
    with pytest.raises(ValueError, match="trusted_keys is empty"):
        cipherflow.verify_ledger(share.ledger, [])


def test_verify_ledger_refuses_an_untrusted_key(
    share: Producer, other_producer: cipherflow.SigningKey
) -> None:
    with pytest.raises(cipherflow.LedgerError, match="not signed by any trusted key"):
        cipherflow.verify_ledger(share.ledger, [other_producer.verifying_key()])


def test_a_tampered_ledger_segment_fails(share: Producer, producer: cipherflow.SigningKey) -> None:
    segments = sorted(share.ledger.rglob("*.seg"))
    assert segments, sorted(share.ledger.rglob("*"))
    data = bytearray(segments[0].read_bytes())
    data[len(data) // 2] ^= 0x01
    segments[0].write_bytes(bytes(data))
    with pytest.raises(cipherflow.LedgerError, match="ledger"):
        cipherflow.verify_ledger(share.ledger, [producer.verifying_key()])


def test_verify_bundle(share: Producer, producer: cipherflow.SigningKey) -> None:
    r = share.cf("ledger", "prove", "--ledger", share.ledger, "--index", 0)
    assert r.returncode == 0, r.stderr.decode()
    bundle = r.stdout
    report = cipherflow.verify_bundle(bundle, [producer.verifying_key()])
    ledger = cipherflow.verify_ledger(share.ledger, [producer.verifying_key()])
    assert report["verified"] is True
    assert report["origin"] == ledger["origin"]
    assert report["root_hash"] == ledger["root_hash"]
    assert report["record"]["sequence"] == 0
    assert cipherflow.verify_bundle(bundle.decode(), [producer.verifying_key()]) == report

    tampered = json.loads(bundle)
    tampered["index"] = 1
    with pytest.raises(cipherflow.LedgerError, match="proof"):
        cipherflow.verify_bundle(json.dumps(tampered), [producer.verifying_key()])
    with pytest.raises(cipherflow.LedgerError, match="malformed proof bundle"):
        cipherflow.verify_bundle(b"{}", [producer.verifying_key()])
