"""Baselines (a) and (b): the integration document's configuration as a plain dlt pipeline.

Usage: python -m benchmarks.plain_dlt BASE_URL DUCKDB_PATH [--parquet]; the key comes from
ECOM_API_KEY. Nothing of this project is used, so the comparison is with dlt as the seed
document configures it.
"""

import argparse
import os
from pathlib import Path

import dlt
from dlt.sources.rest_api import rest_api_source


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("duckdb_path", type=Path)
    parser.add_argument("--parquet", action="store_true")
    args = parser.parse_args()

    source = rest_api_source({
        "client": {
            "base_url": args.base_url,
            "auth": {
                "type": "api_key",
                "name": "api_key",
                "api_key": os.environ["ECOM_API_KEY"],
                "location": "query",
            },
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "order_payments",
                "endpoint": {
                    "path": "/v1/order_payments",
                    "data_selector": "data",
                    "paginator": {"type": "offset", "limit": 100},
                },
            }
        ],
    })
    pipeline = dlt.pipeline(
        pipeline_name="plain",
        pipelines_dir=str(args.duckdb_path.parent / "dlt_pipelines"),
        destination=dlt.destinations.duckdb(str(args.duckdb_path)),
        dataset_name="ecom",
    )
    pipeline.run(source, loader_file_format="parquet" if args.parquet else None)


if __name__ == "__main__":
    main()
