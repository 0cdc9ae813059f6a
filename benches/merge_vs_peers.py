"""Runs `cipherflow merge`, the DuckDB peer and the Polars peer on the same data, several
times interleaved, checks that their outputs are equal, and prints a table of medians.

usage: merge_vs_peers.py DATA_DIR CIPHERFLOW_BIN REPEATS

Each run is one whole process (interpreter start and imports included for the peers) under
`/usr/bin/time -f "%M %U %S"` for its peak RSS and CPU time (user + system, all threads);
wall time is measured around it. On a busy machine the CPU time is the steadier figure. Figures are
medians over the repeats; the order of the three tools rotates every repeat so that the
machine's noise is spread evenly.
"""

import csv
import glob
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def commands(data, cipherflow, out):
    base = os.path.join(data, "base.csv")
    changes = sorted(glob.glob(os.path.join(data, "changes-*.csv")))
    py = sys.executable
    return {
        "cipherflow": [cipherflow, "merge", "--key", "id:int64", "--base", base,
                       "--out", out["cipherflow"], *changes],
        "duckdb": [py, os.path.join(HERE, "merge_duckdb.py"), base, out["duckdb"], *changes],
        "polars": [py, os.path.join(HERE, "merge_polars.py"), base, out["polars"], *changes],
    }


def run(cmd, rss_file):
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file, *cmd], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(rss_file, encoding="ascii") as f:
        rss_kib, user, system = f.read().strip().splitlines()[-1].split()
    return wall, int(rss_kib), float(user) + float(system)


def rows_of(path):
    """The canonical form: the records as lists of field strings (quoting undone)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def main():
    data, cipherflow, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {name: os.path.join(data, f"out-{name}.csv") for name in ("cipherflow", "duckdb", "polars")}
    cmds = commands(data, cipherflow, out)
    names = list(cmds)
    results = {name: [] for name in names}
    rss_file = os.path.join(data, "rss.txt")
    for r in range(repeats):
        order = names[r % 3:] + names[: r % 3]
        for name in order:
            results[name].append(run(cmds[name], rss_file))

    with open(os.path.join(data, "base.csv"), "rb") as f:
        rows = sum(1 for _ in f) - 1
    ref = open(out["cipherflow"], "rb").read()
    verdict = {}
    canonical = None
    for name in ("duckdb", "polars"):
        other = open(out[name], "rb").read()
        if other == ref:
            verdict[name] = "byte-equal"
            continue
        if canonical is None:
            canonical = rows_of(out["cipherflow"])
        if rows_of(out[name]) == canonical:
            verdict[name] = "equal after canonicalisation (same records and field values)"
        else:
            verdict[name] = "DIFFERENT"

    out_rows = ref.count(b"\n") - 1
    print(f"base rows: {rows:,}; repeats: {repeats}; output rows: {out_rows:,}")
    print(f"{'tool':<12}{'median wall s':>15}{'min s':>9}{'base rows/s':>15}{'CPU s':>9}{'peak RSS MiB':>15}")
    medians = {}
    for name in names:
        walls = [w for w, _, _ in results[name]]
        rss = statistics.median(m for _, m, _ in results[name]) / 1024
        cpu = statistics.median(c for _, _, c in results[name])
        med = statistics.median(walls)
        medians[name] = med
        print(f"{name:<12}{med:>15.3f}{min(walls):>9.3f}{rows / med:>15,.0f}{cpu:>9.2f}{rss:>15.1f}")
    faster_peer = min(medians["duckdb"], medians["polars"])
    print(f"speed-up of cipherflow over the faster peer: {faster_peer / medians['cipherflow']:.2f}x")
    for name, v in verdict.items():
        print(f"{name} output vs cipherflow: {v}")
    if "DIFFERENT" in verdict.values():
        sys.exit(1)


if __name__ == "__main__":
    main()
