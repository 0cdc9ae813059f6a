#!/usr/bin/env bash
# CLI vs Python: `cipherflow seal` / `cipherflow open` on a 1 GiB file against the consumer's
# obvious alternative, a Python `cryptography` AESGCM loop in 1 MiB chunks
# (benches/python_aesgcm_loop.py). Everything on tmpfs so the disk does not set the pace.
#
#   bash benches/cli_vs_python.sh            # from the workspace root
#
# Environment: SIZE_MIB (default 1024), RUNS (default 5), WORK (default /dev/shm/cipherflow-bench),
# VENV (default /work/.venv-bench), CARGO_TARGET_DIR (default <root>/target), SKIP_BUILD=1 to
# use the cipherflow binary already built there.
# Uses hyperfine if installed (apt-get install -y hyperfine), else a /usr/bin/time loop.
# Prints medians, the Python/CLI ratio, and the peak RSS of each command (/usr/bin/time -v).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE_MIB="${SIZE_MIB:-1024}"
RUNS="${RUNS:-5}"
WORK="${WORK:-/dev/shm/cipherflow-bench}"
VENV="${VENV:-/work/.venv-bench}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CF="$TARGET/release/cipherflow"
PYLOOP="$ROOT/benches/python_aesgcm_loop.py"

if [ -z "${SKIP_BUILD:-}" ]; then
    echo "== building the release cipherflow binary"
    (cd "$ROOT" && cargo build --release -p cipherflow-cli --bin cipherflow)
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import cryptography' 2>/dev/null || "$VENV/bin/pip" install -q cryptography
PY="$VENV/bin/python"

mkdir -p "$WORK"
cd "$WORK"
if [ ! -f plain.bin ] || [ "$(stat -c %s plain.bin)" != "$((SIZE_MIB << 20))" ]; then
    echo "== writing $SIZE_MIB MiB of random data to $WORK/plain.bin"
    head -c "$((SIZE_MIB << 20))" /dev/urandom > plain.bin
fi
rm -f key.pem key.pub.pem
"$CF" keygen --private key.pem --public key.pub.pem --bits 2048

# Reference outputs (and a round-trip check of both tools).
"$CF" seal --recipient key.pub.pem -i plain.bin -o sealed.cfe
rm -f opened.bin; "$CF" open --key key.pem -i sealed.cfe -o opened.bin
cmp plain.bin opened.bin
"$PY" "$PYLOOP" encrypt plain.bin py.enc
"$PY" "$PYLOOP" decrypt py.enc py.dec
cmp plain.bin py.dec
echo "round trips OK: cipherflow $(stat -c %s sealed.cfe) bytes, python $(stat -c %s py.enc) bytes"

CMD_SEAL="$CF seal --recipient key.pub.pem -i plain.bin -o sealed.out"
CMD_OPEN="$CF open --key key.pem -i sealed.cfe -o opened.out"
CMD_PYENC="$PY $PYLOOP encrypt plain.bin py.out"
CMD_PYDEC="$PY $PYLOOP decrypt py.enc py.dec.out"
CLEAN="rm -f sealed.out opened.out py.out py.dec.out"

declare -A MEDIAN
if command -v hyperfine >/dev/null; then
    hyperfine --runs "$RUNS" --warmup 1 --prepare "$CLEAN" --export-json times.json \
        -n cf_seal "$CMD_SEAL" -n py_encrypt "$CMD_PYENC" \
        -n cf_open "$CMD_OPEN" -n py_decrypt "$CMD_PYDEC"
    while read -r name median; do MEDIAN[$name]=$median; done < <("$PY" - <<'PYEOF'
import json
for r in json.load(open("times.json"))["results"]:
    print(r["command"], r["median"])
PYEOF
)
else
    for name in cf_seal py_encrypt cf_open py_decrypt; do
        case $name in
            cf_seal) cmd=$CMD_SEAL ;; py_encrypt) cmd=$CMD_PYENC ;;
            cf_open) cmd=$CMD_OPEN ;; py_decrypt) cmd=$CMD_PYDEC ;;
        esac
        times=()
        for _ in $(seq "$RUNS"); do
            $CLEAN
            /usr/bin/time -f %e -o t.txt $cmd
            times+=("$(cat t.txt)")
        done
        MEDIAN[$name]=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
        echo "$name: ${times[*]} s"
    done
fi

echo "== peak RSS (/usr/bin/time -v, one run each)"
declare -A RSS
for name in cf_seal cf_open py_encrypt py_decrypt; do
    case $name in
        cf_seal) cmd=$CMD_SEAL ;; py_encrypt) cmd=$CMD_PYENC ;;
        cf_open) cmd=$CMD_OPEN ;; py_decrypt) cmd=$CMD_PYDEC ;;
    esac
    $CLEAN
    /usr/bin/time -v $cmd 2> rss.txt
    RSS[$name]=$(awk -F': ' '/Maximum resident set size/ {print $2}' rss.txt)
done
$CLEAN

echo
echo "== results: $SIZE_MIB MiB, median of $RUNS runs, $(nproc) cores"
printf '%-12s %10s %10s %14s\n' command "median s" "MiB/s" "peak RSS KiB"
for name in cf_seal py_encrypt cf_open py_decrypt; do
    awk -v n="$name" -v t="${MEDIAN[$name]}" -v s="$SIZE_MIB" -v r="${RSS[$name]}" \
        'BEGIN {printf "%-12s %10.3f %10.0f %14s\n", n, t, s / t, r}'
done
awk -v a="${MEDIAN[py_encrypt]}" -v b="${MEDIAN[cf_seal]}" 'BEGIN {printf "seal: python / cipherflow = %.2fx\n", a / b}'
awk -v a="${MEDIAN[py_decrypt]}" -v b="${MEDIAN[cf_open]}" 'BEGIN {printf "open: python / cipherflow = %.2fx\n", a / b}'
