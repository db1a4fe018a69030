"""Extract and load the vendor API with dlt. No Dagster imports here."""

from ecom_assets.ingest.errors import VendorAPIError, vendor_error_behind
from ecom_assets.ingest.report import ResourceReport, SyncReport
from ecom_assets.ingest.source import ecom_source
from ecom_assets.ingest.vendor_session import RetryPolicy, VendorSession
from ecom_assets.ingest.warehouse import Warehouse
from ecom_assets.ingest.window import Window

__all__ = [
    "ResourceReport",
    "RetryPolicy",
    "SyncReport",
    "VendorAPIError",
    "VendorSession",
    "Warehouse",
    "Window",
    "ecom_source",
    "vendor_error_behind",
]
