"""The cipherflow-lambda function under a real Lambda runtime emulation, against moto.

Run by ../run-moto-tests.sh (which starts moto and builds the binaries); by hand:

    python lambda_test.py --endpoint http://127.0.0.1:PORT --cipherflow target/debug/cipherflow \
        --cargo-lambda .venv-lambda/bin/cargo-lambda --features moto-tests

`cargo lambda watch` runs the function behind the Lambda runtime API on 127.0.0.1 with two
concurrent instances; `cargo lambda invoke --data-file EVENT.json` sends it real S3
ObjectCreated notification JSON. moto holds S3 (landing, state, share, ledger and the
pipeline.toml itself) and KMS (the consumer's key, the state key, the signer).

What it checks, each against a reference: the same landed files stepped once by
`cipherflow run` into separate state/share/ledger buckets ("a single pipeline run").
1. A key with spaces and `+` (sent form-URL-encoded) is decoded and routed; the step publishes
   the pointer the reference publishes, and the same share and state object names.
2. The same notification delivered again writes nothing (every object and ETag unchanged).
3. Two files, two notifications, invoked concurrently: the end pointer and object names equal
   one reference step over both files.
4. One compaction request per partition, concurrently: each partition's runs fold into a base.
   A repeated request writes nothing.
5. A consumer pulls with kms:Decrypt from both shares: the tables are byte-identical; both
   ledgers verify with the KMS signer's public key.
It prints what it measured (objects written per delivery, attempts, ledger records).
Exits non-zero on the first failed check.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import uuid
from pathlib import Path

from harness import Function, arguments, check, cipherflow, client, upload

TABLE = "customers"
PREFIX = "cdc in/customers+eu/"
PARTITIONS = 4


class World:
    """The AWS side in moto: buckets, KMS keys, and the two configurations."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.s3 = client("s3", endpoint)
        self.kms = client("kms", endpoint)
        run = uuid.uuid4().hex[:8]

        def bucket(stem: str) -> str:
            name = f"cf-{stem}-{run}"
            self.s3.create_bucket(Bucket=name)
            return name

        def key(spec: str, usage: str) -> str:
            key_id = self.kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
            alias = f"alias/cf-{spec.lower()}-{uuid.uuid4().hex[:8]}"
            self.kms.create_alias(AliasName=alias, TargetKeyId=key_id)
            return alias

        self.landing = bucket("landing")
        self.config_bucket = bucket("config")
        self.lam = {s: bucket(f"lambda-{s}") for s in ("state", "share", "ledger")}
        self.ref = {s: bucket(f"ref-{s}") for s in ("state", "share", "ledger")}
        self.consumer = key("RSA_2048", "ENCRYPT_DECRYPT")
        self.state_key = key("RSA_2048", "ENCRYPT_DECRYPT")
        self.signer = key("ECC_NIST_P256", "SIGN_VERIFY")
        self.config_url = f"s3://{self.config_bucket}/pipelines/customers.toml"
        self.s3.put_object(
            Bucket=self.config_bucket,
            Key="pipelines/customers.toml",
            Body=self.config(self.lam).encode(),
        )
        self.ref_config = workdir / "reference.toml"
        self.ref_config.write_text(self.config(self.ref))

    def config(self, stores: dict[str, str]) -> str:
        return f"""[table]
name = "{TABLE}"
columns = ["id", "name", "amount"]
key = "id:int64"
partitions = {PARTITIONS}

[input]
prefix = "{PREFIX}"
sequence_column = "seq"

[stores]
landing = "s3://{self.landing}"
state = "s3://{stores['state']}/private/"
share = "s3://{stores['share']}/"
ledger = "s3://{stores['ledger']}/"

[keys]
recipients = ["kms:{self.consumer}"]
state_public = "kms:{self.state_key}"
state_private = "kms:{self.state_key}"
signer = "kms:{self.signer}"

[compaction]
max_runs = 8
"""

    def land(self, name: str, text: str) -> dict:
        return upload(self.s3, self.landing, PREFIX + name, text)

    def objects(self, bucket: str) -> dict[str, str]:
        """Every object's key and ETag."""
        out: dict[str, str] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["ETag"]
        return out

    def snapshot(self, stores: dict[str, str]) -> dict[str, dict[str, str]]:
        return {s: self.objects(b) for s, b in stores.items()}

    def pointer(self, stores: dict[str, str]) -> bytes:
        return self.s3.get_object(Bucket=stores["share"], Key=f"{TABLE}/_latest")["Body"].read()

    def names(self, stores: dict[str, str], store: str) -> set[str]:
        """Object names (the landing index and the pointer, which are rewritten, left out)."""
        return {
            k
            for k in self.objects(stores[store])
            if not k.endswith("/_latest") and not k.endswith("landing-index.json")
        }


def written(before: dict, after: dict) -> int:
    """Objects created or changed between two snapshots."""
    return sum(
        1 for store in after for key, etag in after[store].items() if before[store].get(key) != etag
    )


def batches() -> list[tuple[str, str]]:
    load = "id,name,amount\n" + "".join(f'{i},"name {i}, x",{i}.00\n' for i in range(1, 201))
    b1 = "Op,seq,id,name,amount\nI,100,201,new,1\nU,101,5,five,7.00\nD,102,7,,\n"
    b2 = "Op,seq,id,name,amount\nD,300,201,,\nU,301,9,nine,9\nU,302,10,ten,10\n"
    return [
        ("LOAD 00000001+full.csv", load),
        ("2026-11-27 20:00+01.csv", b1),
        ("2026-11-27 20:05+02.csv", b2),
    ]


def main() -> None:
    args = arguments()
    workdir = Path(tempfile.mkdtemp(prefix="cipherflow-lambda-"))
    world = World(args.endpoint, workdir)
    function = Function(args, {"CIPHERFLOW_PIPELINE": world.config_url}, workdir)
    try:
        run(args, world, function, workdir)
    finally:
        function.stop()
    print("lambda test: 5 passed, 0 failed")


def run(args: argparse.Namespace, world: World, function: Function, workdir: Path) -> None:
    cf = args.cipherflow
    ref = ["run", "--config", str(world.ref_config)]
    (load_name, load), (b1_name, b1), (b2_name, b2) = batches()

    # 1. A key with spaces and `+`, encoded as S3 encodes it.
    event = world.land(load_name, load)
    encoded = event["Records"][0]["s3"]["object"]["key"]
    check("+" in encoded and "%2B" in encoded, f"the event key {encoded!r} is not form-encoded")
    out = function.invoke(event)
    check(out["objects"][0]["key"] == PREFIX + load_name, f"decoded key: {out['objects']}")
    check(out["objects"][0]["table"] == TABLE, f"routing: {out['objects']}")
    step = out["steps"][0]
    check(step["generation"] == 1 and step["applied"] == [PREFIX + load_name], f"step: {step}")
    cipherflow(cf, *ref)
    check(world.pointer(world.lam) == world.pointer(world.ref), "pointer differs from reference")
    for store in ("share", "state"):
        check(world.names(world.lam, store) == world.names(world.ref, store), f"{store} names")
    print(f"1. key {encoded!r} -> {PREFIX + load_name!r}: generation 1, pointer = reference")

    # 2. The same notification again: nothing written, nothing changed.
    before = world.snapshot(world.lam)
    out = function.invoke(event)
    step = out["steps"][0]
    check(step["applied"] == [] and step["generation"] == 1, f"duplicate: {step}")
    after = world.snapshot(world.lam)
    check(after == before, "a duplicate delivery changed objects")
    print(f"2. duplicate delivery: {written(before, after)} objects written or changed")

    # 3. Two files, two notifications, two concurrent invocations.
    events = [world.land(b1_name, b1), world.land(b2_name, b2)]
    before = world.snapshot(world.lam)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(function.invoke, events))
    steps = [o["steps"][0] for o in outs]
    applied = sorted(a for s in steps for a in s["applied"])
    check(applied == sorted([PREFIX + b1_name, PREFIX + b2_name]), f"concurrent: {steps}")
    # Both files landed before either invocation listed the prefix, so whichever step
    # publishes first applies both; the other finds them applied (after losing the pointer
    # swap, if it raced): one generation, as one reference step.
    check(all(s["generation"] == 2 for s in steps), f"concurrent: {steps}")
    lam_after = world.snapshot(world.lam)
    ref_before = world.snapshot(world.ref)
    cipherflow(cf, *ref)
    ref_after = world.snapshot(world.ref)
    check(world.pointer(world.lam) == world.pointer(world.ref), "pointer after the race")
    for store in ("share", "state"):
        check(world.names(world.lam, store) == world.names(world.ref, store), f"{store} names")
    print(
        "3. concurrent deliveries: "
        + "; ".join(f"{len(s['applied'])} file(s) applied in {s['attempts']} attempt(s)" for s in steps)
        + "; generation 2, pointer = reference; objects written or changed: lambda "
        + ", ".join(f"{k} {written({k: before[k]}, {k: lam_after[k]})}" for k in lam_after)
        + "; single reference step "
        + ", ".join(f"{k} {written({k: ref_before[k]}, {k: ref_after[k]})}" for k in ref_after)
    )

    # 4. Fan-out: one compaction request per partition, two at a time.
    gen = max(s["generation"] for s in steps)
    requests = [{"table": TABLE, "partition": p} for p in range(PARTITIONS)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(function.invoke, requests))
    compacted = sorted(p for o in outs for p in o["steps"][0]["compacted"])
    check(compacted == list(range(PARTITIONS)), f"compaction fan-out: {outs}")
    runs = [k for k in world.objects(world.lam["share"]) if "/runs/" in k]
    print(
        f"4. compaction fan-out over {PARTITIONS} partitions: generation {gen} -> "
        f"{max(o['steps'][0]['generation'] for o in outs)}, attempts "
        f"{[o['steps'][0]['attempts'] for o in outs]}; {len(runs)} run objects remain (gc's job)"
    )
    before = world.snapshot(world.lam)
    again = function.invoke(requests[0])
    check(again["steps"][0]["compacted"] == [], f"repeated compaction: {again}")
    check(world.snapshot(world.lam) == before, "a repeated compaction request wrote objects")

    # 5. Pull both shares with kms:Decrypt; verify both ledgers.
    tables = []
    for stores in (world.lam, world.ref):
        out_dir = workdir / f"pull-{stores['share']}"
        pulled = cipherflow(
            cf, "pull", "--share", f"s3://{stores['share']}/", "--table", TABLE,
            "--key", f"kms:{world.consumer}", "--signer", f"kms:{world.signer}",
            "--out", str(out_dir),
        )  # fmt: skip
        tables.append((out_dir / f"{TABLE}.csv").read_bytes())
        check(pulled["rows"] == 199, f"rows: {pulled}")
    check(tables[0] == tables[1], "the Lambda's table differs from the reference's")
    for name, stores in (("lambda", world.lam), ("reference", world.ref)):
        report = cipherflow(
            cf, "ledger", "verify", "--ledger", f"s3://{stores['ledger']}/",
            "--trusted-key", f"kms:{world.signer}",
        )  # fmt: skip
        print(f"5. {name} ledger verified: {report['records']} records, "
              f"{report['checkpoints']} checkpoints")  # fmt: skip
    print("5. pulled tables (kms:Decrypt) byte-identical: 199 rows")


if __name__ == "__main__":
    main()
