"""The DuckDB peer of `cipherflow merge` (see README.md, merge_vs_peers.sh).

usage: merge_duckdb.py BASE OUT CHANGES...

Reads the base snapshot and the DMS change files with every column as text (values keep
their bytes: nothing is re-formatted), keeps each key's change with the greatest
AR_H_CHANGE_SEQ (as a 128-bit integer), drops the base rows of changed keys, adds the
surviving changed rows (not deletes), sorts by the int64 key and writes CSV. The data's
updates carry full rows, so this row-level last-writer-wins equals CipherFlow's
column-level rule (docs/MERGE.md section 3).
"""

import sys

import duckdb


def main() -> None:
    base, out, changes = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(base, encoding="utf-8") as f:
        columns = f.readline().rstrip("\n").split(",")
    key = columns[0]
    cols = ", ".join(f'"{c}"' for c in columns)
    files = "[" + ", ".join("'" + c.replace("'", "''") + "'" for c in changes) + "]"
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            WITH c AS (
                SELECT * FROM read_csv({files}, header = true, all_varchar = true)
            ),
            latest AS (
                SELECT * FROM c
                QUALIFY row_number() OVER (
                    PARTITION BY CAST("{key}" AS BIGINT)
                    ORDER BY CAST("AR_H_CHANGE_SEQ" AS HUGEINT) DESC) = 1
            ),
            b AS (
                SELECT * FROM read_csv('{base}', header = true, all_varchar = true)
            ),
            merged AS (
                SELECT {cols} FROM b
                WHERE CAST("{key}" AS BIGINT) NOT IN (SELECT CAST("{key}" AS BIGINT) FROM latest)
                UNION ALL
                SELECT {cols} FROM latest WHERE "Op" <> 'D'
            )
            SELECT * FROM merged ORDER BY CAST("{key}" AS BIGINT)
        ) TO '{out}' (FORMAT csv, HEADER true)
        """
    )


if __name__ == "__main__":
    main()
