"""The Polars peer of `cipherflow merge` (see README.md, merge_vs_peers.sh).

usage: merge_polars.py BASE OUT CHANGES...

The same merge as merge_duckdb.py, with Polars' lazy engine: every column read as text,
each key's change with the greatest AR_H_CHANGE_SEQ kept (the data's sequences all have 35
digits, so their text order is their numeric order), the base rows of changed keys dropped
(anti join), the surviving changed rows added, sorted by the int64 key, written as CSV.
"""

import sys

import polars as pl


def main() -> None:
    base, out, changes = sys.argv[1], sys.argv[2], sys.argv[3:]
    b = pl.scan_csv(base, infer_schema=False)
    columns = b.collect_schema().names()
    key = columns[0]
    k = pl.col(key).cast(pl.Int64).alias("__k")
    c = pl.scan_csv(changes, infer_schema=False)
    latest = (
        c.with_columns(k)
        .sort("AR_H_CHANGE_SEQ")
        .unique(subset="__k", keep="last")
    )
    kept = b.with_columns(k).join(latest.select("__k"), on="__k", how="anti")
    live = latest.filter(pl.col("Op") != "D").select(columns + ["__k"])
    (
        pl.concat([kept, live])
        .sort("__k")
        .select(columns)
        .sink_csv(out)
    )


if __name__ == "__main__":
    main()
