#!/usr/bin/env bash
# Seed corpus for the `open` target: real envelopes sealed to keys/fuzz-rsa2048.pem with the
# release `cipherflow` binary, so mutations start past the header. Every plaintext is
# pattern(len) (byte i = (31 i + 7) mod 256), the oracle the target checks.
#   bash fuzz/make_seeds.sh        (from the workspace root; writes fuzz/seeds/open/)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CF="${CARGO_TARGET_DIR:-$ROOT/target}/release/cipherflow"
(cd "$ROOT" && cargo build --release -p cipherflow-cli --bin cipherflow)
OUT="$ROOT/fuzz/seeds/open"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
openssl pkey -in "$ROOT/fuzz/keys/fuzz-rsa2048.pem" -pubout -out "$TMP/me.pub.pem"
"$CF" keygen --private "$TMP/other.pem" --public "$TMP/other.pub.pem" --bits 2048
"$CF" keygen --signing --private "$TMP/signer.pem" --public "$TMP/signer.pub.pem"
pattern() { python3 -c "import sys; sys.stdout.buffer.write(bytes((31*i+7)%256 for i in range($1)))" > "$TMP/p$1"; }
for n in 0 100 700 1500 2048 2500 3000; do pattern $n; done
seal() { local name=$1 n=$2; shift 2; "$CF" seal --recipient "$TMP/me.pub.pem" "$@" -i "$TMP/p$n" -o "$OUT/$name"; }
seal empty 0
seal one-chunk 100 --chunk-size 1024
seal two-full-chunks 2048 --chunk-size 1024
seal short-last-chunk 3000 --chunk-size 1024
seal two-recipients 1500 --chunk-size 1024 --recipient "$TMP/other.pub.pem"
seal metadata 700 --chunk-size 1024 --meta table=customers --meta watermark=42
seal signed-ecdsa 2500 --chunk-size 1024 --sign-key "$TMP/signer.pem"
ls -l "$OUT"
