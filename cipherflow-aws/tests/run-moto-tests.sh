#!/usr/bin/env bash
# Runs the cipherflow-aws tests against the moto server, over real HTTP on 127.0.0.1.
#
# Creates (or reuses) the venv .venv-moto at the repository root with pinned moto, starts the
# project's launcher (tests/aws_emulator/moto_rsa_server.py) on a free port, waits until it
# answers, runs `cargo test -p cipherflow-aws --features kms,s3,moto-tests --locked` with
# CIPHERFLOW_MOTO_ENDPOINT set, then the command line's AWS tests, then the Lambda function
# under `cargo lambda watch` (tests/lambda/lambda_test.py; cargo-lambda from PyPI in the venv
# .venv-lambda), then the records function the same way (tests/lambda/records_test.py), and
# always stops the server. Every build uses the same features
# (cipherflow-aws/moto-tests), so the AWS SDK is compiled once. Extra arguments go to cargo
# test (e.g. `-- --nocapture`); `--prepare` only installs the venvs. Needs python3 (3.9+) with venv, and network access to PyPI the
# first time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv-moto"
launcher="$here/aws_emulator/moto_rsa_server.py"
# The launcher patches moto internals and asserts they are there: keep this pin.
requirements=('moto[s3,kms,dynamodb]==5.2.5' 'flask' 'flask-cors' 'cryptography')

# py_partiql_parser comes with the dynamodb extra: a venv made before it was added is upgraded.
if ! "$venv/bin/python" -c 'import moto, flask, flask_cors, cryptography, py_partiql_parser; assert moto.__version__ == "5.2.5"' 2>/dev/null; then
    echo "run-moto-tests: installing moto 5.2.5 into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
fi
# cargo-lambda, for the Lambda functions under `cargo lambda watch` (last steps below).
lambda_venv="$root/.venv-lambda"
if ! "$lambda_venv/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q '^cargo-lambda 1\.9\.2 '; then
    echo "run-moto-tests: installing cargo-lambda 1.9.2 into $lambda_venv" >&2
    python3 -m venv "$lambda_venv"
    # --no-deps: watch and invoke need no zig (only `cargo lambda build` cross-links with it).
    "$lambda_venv/bin/pip" install --quiet --disable-pip-version-check --no-deps 'cargo-lambda==1.9.2'
fi
# `--prepare`: only the installs (CI runs them beside its Rust build).
if [ "${1:-}" = "--prepare" ]; then
    exit 0
fi

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
endpoint="http://127.0.0.1:$port"
log="$(mktemp -t moto-server.XXXXXX.log)"

"$venv/bin/python" "$launcher" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
server=$!
stop_server() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -f "$log"
}
trap stop_server EXIT

# Wait (up to 60 s) until the server answers.
for _ in $(seq 1 300); do
    if "$venv/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/moto-api/', timeout=1)" "$endpoint" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "run-moto-tests: the moto server exited:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.2
done
if ! "$venv/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/moto-api/', timeout=1)" "$endpoint" 2>/dev/null; then
    echo "run-moto-tests: the moto server did not answer on $endpoint" >&2
    cat "$log" >&2
    exit 1
fi
echo "run-moto-tests: moto 5.2.5 on $endpoint" >&2

cd "$root"
CIPHERFLOW_MOTO_ENDPOINT="$endpoint" \
AWS_ACCESS_KEY_ID=testing \
AWS_SECRET_ACCESS_KEY=testing \
AWS_REGION=us-east-1 \
AWS_DEFAULT_REGION=us-east-1 \
AWS_EC2_METADATA_DISABLED=true \
    cargo test -p cipherflow-aws --features kms,s3,moto-tests --locked "$@"
# The command line with kms: keys and s3:// objects, against the same server.
CIPHERFLOW_MOTO_ENDPOINT="$endpoint" \
AWS_ACCESS_KEY_ID=testing \
AWS_SECRET_ACCESS_KEY=testing \
AWS_REGION=us-east-1 \
AWS_DEFAULT_REGION=us-east-1 \
AWS_EC2_METADATA_DISABLED=true \
    cargo test -p cipherflow-cli --features aws,cipherflow-aws/moto-tests --test aws --locked "$@"

# The Lambda handler in a Lambda runtime emulation: `cargo lambda watch` builds and runs
# cipherflow-lambda (debug profile, the same features as above: nothing of the SDK rebuilds),
# and the driver invokes it with S3 event JSON and compares with `cipherflow run`.
cargo build -p cipherflow-aws --features moto-tests --bin cipherflow-lambda --bin cipherflow-records --locked
"$venv/bin/python" "$here/lambda/lambda_test.py" \
    --endpoint "$endpoint" \
    --cipherflow "${CARGO_TARGET_DIR:-$root/target}/debug/cipherflow" \
    --cargo-lambda "$lambda_venv/bin/cargo-lambda" \
    --features moto-tests
# The records function (S3 uploads and POST /records into DynamoDB), the same way.
"$venv/bin/python" "$here/lambda/records_test.py" \
    --endpoint "$endpoint" \
    --cipherflow "${CARGO_TARGET_DIR:-$root/target}/debug/cipherflow" \
    --cargo-lambda "$lambda_venv/bin/cargo-lambda" \
    --features moto-tests
