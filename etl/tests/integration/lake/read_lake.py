"""Reads an `etl export` lake with two independent readers and prints what they saw as JSON.

pyarrow gives every row (timestamps without a zone as ISO text, the UTC ingestion time as
microseconds since the epoch) and each column's Parquet/Arrow type; DuckDB runs the queries an
analyst would, over the same files, with Hive partitioning.
"""
import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def rows(table):
    out = []
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            columns[name] = column.cast(pa.int64()).to_pylist()
        elif pa.types.is_timestamp(column.type):
            columns[name] = [v.isoformat() if v is not None else None for v in column.to_pylist()]
        else:
            columns[name] = column.to_pylist()
    for i in range(table.num_rows):
        out.append({name: columns[name][i] for name in table.column_names})
    return out


lake = sys.argv[1]
result = {"tables": {}, "types": {}, "files": {}}
for entry in sorted(os.listdir(lake)):
    path = os.path.join(lake, entry)
    if entry == "events" or not os.path.isdir(path):
        continue
    files = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))
    result["files"][entry] = files
    table = pq.read_table(os.path.join(path, files[0]))
    result["tables"][entry] = rows(table)
    result["types"][entry] = {f.name: str(f.type) for f in table.schema}

raw = os.path.join(lake, "events")
if os.path.isdir(raw):
    dataset = ds.dataset(raw, format="parquet", partitioning="hive")
    table = dataset.to_table()
    result["tables"]["events"] = rows(table)
    result["types"]["events"] = {f.name: str(f.type) for f in table.schema}
    result["files"]["events"] = sorted(
        os.path.relpath(os.path.join(d, f), raw)
        for d, _, fs in os.walk(raw)
        for f in fs
        if f.endswith(".parquet")
    )
    con = duckdb.connect()
    glob = os.path.join(raw, "*", "*.parquet")
    total, distinct, dates = con.execute(
        f"SELECT count(*), count(DISTINCT event_id), count(DISTINCT date) "
        f"FROM read_parquet('{glob}', hive_partitioning = true)"
    ).fetchone()
    result["duckdb"] = {"events": total, "distinct_ids": distinct, "dates": dates}
    cards = os.path.join(lake, "cards", "*.parquet")
    if os.path.isdir(os.path.join(lake, "cards")):
        result["duckdb"]["active_cards"] = con.execute(
            f"SELECT count(*) FROM read_parquet('{cards}') WHERE active"
        ).fetchone()[0]

json.dump(result, sys.stdout)
