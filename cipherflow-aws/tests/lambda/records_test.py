"""The cipherflow-records function under `cargo lambda watch`, against moto (S3, DynamoDB, KMS).

Run by ../run-moto-tests.sh after lambda_test.py; by hand:

    python records_test.py --endpoint http://127.0.0.1:PORT --cipherflow target/debug/cipherflow \
        --cargo-lambda .venv-lambda/bin/cargo-lambda --features moto-tests

moto holds the upload bucket, the output bucket (request bodies, rejects), the ledger bucket,
the schema object, the DynamoDB table and the KMS key that signs ledger checkpoints. The
function is driven with real event JSON: S3 ObjectCreated notifications as AWS sends them
(keys form-URL-encoded) and API Gateway REST (payload 1.0) and HTTP API (payload 2.0) proxy
events for POST /records.

1. A seed-001 upload (key with a space and a `+`) is ingested: every record is in DynamoDB
   with its exact values.
2. The same notification again writes nothing new (skipped = read); the table is unchanged.
3. A file with bad records is refused with every error (object, record, line, field,
   reason); nothing of it is in DynamoDB.
4. POST /records: 200 with the keys written; the body is stored under its SHA-256; a newer
   version overwrites, an older one is skipped; 400 with every field error; 413 over the
   limit (also base64-encoded); 404/405; never a 5xx.
   Eight concurrent requests on the two instances get distinct ledger indices.
5. The ledger verifies with the KMS signer's key, and holds one `landed` record per ingested
   object or request, naming it.
Exits non-zero on the first failed check.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import subprocess
import tempfile
import uuid
from pathlib import Path

from harness import Function, arguments, check, client, upload

TABLE = "ProcessedRecords"
# The sink stores a timestamp key as its UTC instant without a zone designator.
KEY_TIME = "2026-02-01T10:00:00"
MAX_BODY = 4096
# Seed 001's schema, the fixture the Rust tests read too.
SCHEMA = (
    Path(__file__).resolve().parents[3] / "cipherflow-core/tests/data/records/readings.toml"
).read_text()


def seed_001(devices: int) -> str:
    """The seed's upload: a JSON array of {device_id, timestamp, value} (its README example
    first)."""
    records = [{"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": 42}]
    for i in range(2, devices + 1):
        records.append(
            {"device_id": f"device-{i:03}", "timestamp": "2026-02-01T10:00:00Z", "value": f"{i}.25"}
        )
    # Decimals as JSON numbers, exactly as sent.
    return json.dumps(records).replace('"value": "', '"value": ').replace('25"}', "25}")


def rest(method: str, path: str, body: str | None, b64: bool = False) -> dict:
    """A REST API (payload 1.0) proxy event as API Gateway sends it."""
    return {
        "resource": "/records",
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "User-Agent": "device-agent/1.0"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/records",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "device-agent/1.0"},
        },
        "body": body,
        "isBase64Encoded": b64,
    }


def http_api(method: str, raw_path: str, body: str, stage: str) -> dict:
    """An HTTP API (payload 2.0) proxy event."""
    return {
        "version": "2.0",
        "routeKey": "POST /records",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "stage": stage,
            "http": {"method": method, "path": raw_path, "sourceIp": "203.0.113.10"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


def answer(response: dict) -> tuple[int, dict]:
    return response["statusCode"], json.loads(response["body"])


def main() -> None:
    args = arguments()
    workdir = Path(tempfile.mkdtemp(prefix="cipherflow-records-"))
    s3 = client("s3", args.endpoint)
    ddb = client("dynamodb", args.endpoint)
    kms = client("kms", args.endpoint)
    run_id = uuid.uuid4().hex[:8]
    buckets = {}
    for stem in ("uploads", "out", "ledger", "config"):
        buckets[stem] = f"cf-records-{stem}-{run_id}"
        s3.create_bucket(Bucket=buckets[stem])
    s3.put_object(Bucket=buckets["config"], Key="schema/readings.toml", Body=SCHEMA.encode())
    table = f"{TABLE}-{run_id}"
    ddb.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "device_id", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "device_id", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    signer_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"][
        "KeyId"
    ]
    signer = f"alias/cf-records-{run_id}"
    kms.create_alias(AliasName=signer, TargetKeyId=signer_id)
    env = {
        "CIPHERFLOW_RECORDS_SCHEMA": f"s3://{buckets['config']}/schema/readings.toml",
        "CIPHERFLOW_RECORDS_TABLE": f"dynamodb://{table}",
        "CIPHERFLOW_RECORDS_LEDGER": f"s3://{buckets['ledger']}/",
        "CIPHERFLOW_RECORDS_REQUESTS": f"s3://{buckets['out']}/requests/",
        "CIPHERFLOW_RECORDS_MAX_BODY_BYTES": str(MAX_BODY),
        "CIPHERFLOW_RECORDS_SIGNER": f"kms:{signer}",
    }
    function = Function(args, env, workdir, binary="cipherflow-records")
    try:
        run(args, s3, ddb, buckets, table, signer, function, workdir)
    finally:
        function.stop()
    print("records test: 5 passed, 0 failed")


def items(ddb, table: str) -> dict[tuple[str, str], dict]:
    out = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            out[(item["device_id"]["S"], item["timestamp"]["S"])] = item
    return out


def run(
    args, s3, ddb, buckets: dict, table: str, signer: str, function: Function, workdir: Path
) -> None:
    uploads = buckets["uploads"]
    ingested: list[tuple[str, str]] = []  # (bucket, key) of every ingested object or request

    # 1. The seed-001 upload.
    devices = 50
    text = seed_001(devices)
    key = "devices/2026-02-01 batch+1.json"
    event = upload(s3, uploads, key, text)
    encoded = event["Records"][0]["s3"]["object"]["key"]
    check(" " not in encoded and "%2B" in encoded, f"event key {encoded!r} not form-encoded")
    out = function.invoke(event)
    obj = out["objects"][0]
    check(obj["key"] == key and obj["status"] == "ingested", f"upload: {obj}")
    report = obj["report"]
    check(
        (report["read"], report["written"], report["skipped"]) == (devices, devices, 0), f"{report}"
    )
    ingested.append((uploads, key))
    table_items = items(ddb, table)
    check(len(table_items) == devices, f"{len(table_items)} items, expected {devices}")
    first = table_items[("device-001", KEY_TIME)]
    check(first["value"] == {"N": "42"}, f"device-001: {first}")
    check(
        table_items[("device-007", KEY_TIME)]["value"] == {"N": "7.25"},
        "decimal kept exactly",
    )
    print(f"1. upload {encoded!r} -> {key!r}: {devices} records written, {len(table_items)} items")

    # 2. The same notification again.
    out = function.invoke(event)
    report = out["objects"][0]["report"]
    check((report["written"], report["skipped"]) == (0, devices), f"replay: {report}")
    check(items(ddb, table) == table_items, "a replay changed the table")
    ingested.append((uploads, key))
    print(f"2. duplicate delivery: written 0, skipped {report['skipped']}, table unchanged")

    # 3. A file with bad records: refused with every error, nothing written.
    bad = (
        '{"device_id": "device-100", "timestamp": "2026-02-01T12:00:00Z", "value": 1}\n'
        '{"device_id": "dev-101", "timestamp": "2026-02-01T12:00:00Z", "value": 1}\n'
        '{"device_id": "device-102", "timestamp": "noon", "value": 1000.01}\n'
    )
    out = function.invoke(upload(s3, uploads, "devices/bad.jsonl", bad))
    obj = out["objects"][0]
    check(obj["status"] == "refused", f"bad file: {obj}")
    got = [(e["record"], e["line"], e["field"]) for e in obj["errors"]]
    check(got == [(2, 2, "device_id"), (3, 3, "timestamp"), (3, 3, "value")], f"errors: {got}")
    check(
        all(e["object"] == "devices/bad.jsonl" and e["reason"] for e in obj["errors"]),
        "error fields",
    )
    check(len(items(ddb, table)) == devices, "a refused file wrote items")
    print(f"3. bad file refused with {len(got)} errors: {[e['message'] for e in obj['errors']]}")

    # 4. POST /records.
    body = json.dumps(
        [
            {"device_id": "device-201", "timestamp": "2026-02-01T13:00:00Z", "value": 1.5},
            {"device_id": "device-202", "timestamp": "2026-02-01T13:00:00+01:00", "value": None},
        ]
    )
    code, reply = answer(function.invoke(rest("POST", "/records", body)))
    check(code == 200, f"POST: {code} {reply}")
    check(
        reply["written"]
        == [
            {"device_id": "device-201", "timestamp": "2026-02-01T13:00:00"},
            {"device_id": "device-202", "timestamp": "2026-02-01T12:00:00"},
        ],
        f"written keys: {reply}",
    )
    digest = hashlib.sha256(body.encode()).hexdigest()
    check(reply["object"] == f"requests/{digest}.json", f"object: {reply}")
    stored = s3.get_object(Bucket=buckets["out"], Key=reply["object"])["Body"].read()
    check(stored == body.encode(), "the stored body differs")
    ingested.append((buckets["out"], reply["object"]))
    after_post = items(ddb, table)
    check(len(after_post) == devices + 2, f"{len(after_post)} items after POST")
    # The same body, base64-encoded: nothing new.
    code, reply = answer(
        function.invoke(rest("POST", "/records", base64.b64encode(body.encode()).decode(), True))
    )
    check(code == 200 and reply["written"] == [] and reply["skipped"] == 2, f"resend: {reply}")
    ingested.append((buckets["out"], reply["object"]))
    # HTTP API payload 2.0 with a named stage: a record with the same key and version as a
    # stored one (the version is the timestamp, a key field here) is skipped, not overwritten.
    newer = json.dumps(
        {"device_id": "device-001", "timestamp": "2026-02-01T10:00:00Z", "value": 43}
    )
    code, reply = answer(function.invoke(http_api("POST", "/prod/records", newer, "prod")))
    check(
        code == 200 and reply["written"] == [] and reply["skipped"] == 1, f"same version: {reply}"
    )
    ingested.append((buckets["out"], reply["object"]))
    check(items(ddb, table)[("device-001", KEY_TIME)]["value"] == {"N": "42"},
          "a record with the same version overwrote the item")  # fmt: skip
    # Every field error in one 400.
    invalid = json.dumps(
        [
            {"device_id": "device-301", "timestamp": "2026-02-01T13:00:00Z", "value": -1},
            {"device_id": "x", "timestamp": "2026-02-01T13:00:00Z", "value": 1, "colour": "red"},
        ]
    )
    code, reply = answer(function.invoke(rest("POST", "/records", invalid)))
    got = [(e["record"], e["field"], e["reason"]) for e in reply.get("errors", [])]
    check(code == 400 and sorted((r, f) for r, f, _ in got) == [(1, "value"), (2, "colour"), (2, "device_id")],
          f"400: {code} {reply}")  # fmt: skip
    statuses = {}
    over = "[" + " " * MAX_BODY + "]"
    for name, event in [
        ("malformed JSON", rest("POST", "/records", "[{")),
        ("no body", rest("POST", "/records", None)),
        ("over the limit", rest("POST", "/records", over)),
        ("over, base64", rest("POST", "/records", base64.b64encode(over.encode()).decode(), True)),
        ("GET", rest("GET", "/records", None)),
        ("other path", rest("POST", "/devices", body)),
    ]:
        code, reply = answer(function.invoke(event))
        check(code < 500, f"{name}: {code} {reply}")
        statuses[name] = code
    check(
        statuses
        == {"malformed JSON": 400, "no body": 400, "over the limit": 413, "over, base64": 413,
            "GET": 405, "other path": 404},
        f"statuses: {statuses}",
    )  # fmt: skip
    check(len(items(ddb, table)) == devices + 2, "a refused request wrote items")
    print(f"4. POST /records: 200 (2 keys written), resend skipped 2, 400 with {len(got)} errors "
          f"{[r for _, _, r in got]}, {statuses}")  # fmt: skip

    # Concurrent requests on the two instances `cargo lambda watch --concurrency 2` runs: each
    # appends to the ledger through its own handle, so an append that loses the next segment
    # to the other instance reloads the tail and retries at the new end.
    bodies = [
        json.dumps({"device_id": f"device-{400 + i}", "timestamp": "2026-02-01T14:00:00Z"})
        for i in range(8)
    ]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        events = [rest("POST", "/records", b) for b in bodies]
        replies = [answer(r) for r in pool.map(function.invoke, events)]
    check(all(c == 200 and len(r["written"]) == 1 for c, r in replies), f"concurrent: {replies}")
    indices = sorted(r["ledger_index"] for _, r in replies)
    check(len(set(indices)) == len(bodies), f"concurrent requests share ledger indices: {indices}")
    ingested += [(buckets["out"], r["object"]) for _, r in replies]
    check(len(items(ddb, table)) == devices + 2 + len(bodies), "concurrent requests' items")
    print(f"4. {len(bodies)} concurrent requests on 2 instances: all 200, ledger indices {indices}")

    # 5. The ledger: verified with the KMS key; one landed record per ingestion, in order
    # (the concurrent requests in either order).
    report = json.loads(
        subprocess.run(
            [args.cipherflow, "ledger", "verify", "--ledger", f"s3://{buckets['ledger']}/",
             "--trusted-key", f"kms:{signer}"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    check(report["records"] == len(ingested), f"ledger records: {report}, expected {len(ingested)}")
    check(report["signed_size"] == report["records"], f"unsigned records: {report}")
    # `ledger show` reads a folder: copy the ledger's objects (the same layout) to one.
    ledger = workdir / "ledger"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=buckets["ledger"]):
        for obj in page.get("Contents", []):
            path = ledger / obj["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=buckets["ledger"], Key=obj["Key"])["Body"].read())
    seen = []
    for index in range(len(ingested)):
        shown = json.loads(
            subprocess.run(
                [args.cipherflow, "ledger", "show", "--ledger", str(ledger), "--index", str(index)],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        check((shown["kind"], shown["step"]) == ("landed", "lambda records"), f"{index}: {shown}")
        seen.append((shown["object"]["bucket"], shown["object"]["key"]))
    done = len(ingested) - len(bodies)
    check(seen[:done] == ingested[:done], f"ledger objects {seen} != {ingested}")
    check(sorted(seen[done:]) == sorted(ingested[done:]), f"ledger objects {seen} != {ingested}")
    print(f"5. ledger verified: {report['records']} records, {report['checkpoints']} checkpoints")


if __name__ == "__main__":
    main()
