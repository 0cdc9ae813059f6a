"""What the two Lambda tests (lambda_test.py, records_test.py) share: the command line, the
AWS environment for moto, `cargo lambda watch`/`invoke` around a function binary, S3
notification events, and the checks' failure exit."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import boto3


def arguments() -> argparse.Namespace:
    """The tests' arguments; also points boto3 and the `cipherflow` binary at moto."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--cipherflow", required=True)
    parser.add_argument("--cargo-lambda", required=True)
    parser.add_argument("--features", default="moto-tests")
    args = parser.parse_args()
    os.environ.update(
        AWS_ENDPOINT_URL=args.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return args


def client(service: str, endpoint: str):
    """A boto3 client for `service` on moto."""
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


def check(condition: bool, message: str) -> None:
    if not condition:
        print(f"{Path(sys.argv[0]).stem}: FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_event(bucket: str, key: str, size: int, etag: str) -> dict:
    """An S3 ObjectCreated:Put notification as AWS sends it (keys form-URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-27T20:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                    "x-amz-id-2": uuid.uuid4().hex,
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "cipherflow-cdc",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": urllib.parse.quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag,
                        "sequencer": f"{time.time_ns():X}",
                    },
                },
            }
        ]
    }


def upload(s3, bucket: str, key: str, text: str) -> dict:
    """Puts `text` at `bucket`/`key` and returns the notification S3 would send for it."""
    put = s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
    return s3_event(bucket, key, len(text.encode()), put["ETag"].strip('"'))


class Function:
    """`cargo lambda watch` running one of the crate's function binaries, and
    `cargo lambda invoke` (records_test.py runs cipherflow-records with it too)."""

    def __init__(
        self,
        args: argparse.Namespace,
        env_vars: dict[str, str],
        workdir: Path,
        binary: str = "cipherflow-lambda",
    ) -> None:
        self.cargo_lambda = args.cargo_lambda
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.log = open(workdir / "watch.log", "w")
        env_vars = {
            "AWS_ENDPOINT_URL": args.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            **env_vars,
        }
        command = [
            self.cargo_lambda, "lambda", "watch",
            "--package", "cipherflow-aws", "--bin", binary,
            "--features", args.features, "--locked",
            "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
            "--concurrency", "2", "--timeout", "300", "--ignore-changes",
            "--env-vars", ",".join(f"{k}={v}" for k, v in env_vars.items()),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                check(self.process.poll() is None, "cargo lambda watch exited: see watch.log")
                check(time.monotonic() < deadline, "cargo lambda watch did not listen in 120 s")
                time.sleep(0.5)

    def invoke(self, event: dict) -> dict:
        path = self.workdir / f"event-{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(event))
        done = subprocess.run(
            [
                self.cargo_lambda, "lambda", "invoke", self.binary,
                "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
                "--data-file", str(path), "--output-format", "json",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=600,
        )
        check(done.returncode == 0, f"invoke failed: {done.stdout}{done.stderr}")
        return json.loads(done.stdout)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()


def cipherflow(binary: str, *args: str) -> dict:
    done = subprocess.run([binary, *args], capture_output=True, text=True)
    check(done.returncode == 0, f"cipherflow {' '.join(args)}: {done.stderr}")
    return json.loads(done.stdout)
