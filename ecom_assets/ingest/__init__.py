"""Extract and load the vendor API with dlt. No Dagster imports here."""

from ecom_assets.ingest.http import (
    RetryPolicy,
    VendorAPIError,
    VendorSession,
    vendor_error_behind,
)
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.source import ecom_source
from ecom_assets.ingest.warehouse import DEFAULT_DUCKDB_PATH, Warehouse
from ecom_assets.ingest.window import Window

__all__ = [
    "DEFAULT_DUCKDB_PATH",
    "RetryPolicy",
    "SyncReport",
    "VendorAPIError",
    "VendorSession",
    "Warehouse",
    "Window",
    "ecom_source",
    "vendor_error_behind",
]
