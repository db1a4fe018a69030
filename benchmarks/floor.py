"""Baseline (d), the bare floor: sequential requests, one DuckDB insert from Arrow.

Usage: python -m benchmarks.floor BASE_URL DUCKDB_PATH; the key comes from ECOM_API_KEY.
"""

import argparse
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("duckdb_path", type=Path)
    args = parser.parse_args()

    records: list[dict] = []
    offset, total = 0, None
    with requests.Session() as session:
        while total is None or offset < total:
            body = session.get(
                f"{args.base_url}/v1/order_payments",
                params={"offset": offset, "limit": 100, "api_key": os.environ["ECOM_API_KEY"]},
            ).json()
            records += body["data"]
            total, offset = body["total"], offset + 100
    for record in records:  # money arrives as numbers and strings
        record["amount"] = str(record["amount"])
    table = pa.Table.from_pylist(records)
    with duckdb.connect(str(args.duckdb_path)) as connection:
        connection.execute("create schema if not exists ecom")
        connection.register("page_records", table)
        connection.execute("create table ecom.order_payments as select * from page_records")


if __name__ == "__main__":
    main()
