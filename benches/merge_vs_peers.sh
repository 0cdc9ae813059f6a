#!/usr/bin/env bash
# `cipherflow merge` against DuckDB and Polars doing the same merge, whole process against
# whole process, on a 1,000,000-row table and a 100,000-change batch (benches/README.md).
#
# usage: bash benches/merge_vs_peers.sh [REPEATS]        (default 7)
# env:   MERGE_BENCH_DIR   data and outputs (default /dev/shm/cipherflow-merge-bench)
#        MERGE_BENCH_VENV  Python venv with duckdb and polars (created if missing;
#                          default /work/venvs/mergebench)
#        MERGE_BENCH_ROWS, MERGE_BENCH_CHANGES, MERGE_BENCH_FILES, MERGE_BENCH_SEED
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-7}
dir=${MERGE_BENCH_DIR:-/dev/shm/cipherflow-merge-bench}
venv=${MERGE_BENCH_VENV:-/work/venvs/mergebench}
target=${CARGO_TARGET_DIR:-target}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'duckdb>=1.5,<1.6' 'polars>=1.30'
fi
cargo build --release --quiet -p cipherflow-cli -p cipherflow-benches --bin cipherflow --bin merge-data
rm -rf "$dir"
"$target/release/merge-data" "$dir" "${MERGE_BENCH_ROWS:-1000000}" "${MERGE_BENCH_CHANGES:-100000}" \
    "${MERGE_BENCH_FILES:-8}" "${MERGE_BENCH_SEED:-1}"
ls -l "$dir"
"$venv/bin/python" -c 'import duckdb, polars, sys; print("python", sys.version.split()[0], "duckdb", duckdb.__version__, "polars", polars.__version__)'
"$venv/bin/python" benches/merge_vs_peers.py "$dir" "$target/release/cipherflow" "$repeats"
