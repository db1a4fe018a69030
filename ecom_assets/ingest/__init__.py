"""Extract and load the vendor API with dlt. No Dagster imports here."""

from ecom_assets.ingest.http import RetryPolicy, VendorAPIError, VendorSession
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.source import DEFAULT_DUCKDB_PATH, ecom_pipeline, ecom_source
from ecom_assets.ingest.window import Window

__all__ = [
    "DEFAULT_DUCKDB_PATH",
    "RetryPolicy",
    "SyncReport",
    "VendorAPIError",
    "VendorSession",
    "Window",
    "ecom_pipeline",
    "ecom_source",
]
