"""Extract and load the vendor API with dlt. No Dagster imports here."""

import pyarrow as pa

from ecom_assets.ingest.http import RetryPolicy, VendorAPIError, VendorSession
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.source import ecom_source
from ecom_assets.ingest.warehouse import DEFAULT_DUCKDB_PATH, Warehouse
from ecom_assets.ingest.window import Window

# Arrow's default allocator (mimalloc) keeps the memory the extract freed; through malloc, the
# load reuses it, and a 1M-record backfill peaks some 80 MiB lower (BENCHMARKS.md).
pa.set_memory_pool(pa.system_memory_pool())

__all__ = [
    "DEFAULT_DUCKDB_PATH",
    "RetryPolicy",
    "SyncReport",
    "VendorAPIError",
    "VendorSession",
    "Warehouse",
    "Window",
    "ecom_source",
]
