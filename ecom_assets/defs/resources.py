"""Configurable resources: the vendor API and the warehouse, resolved at run time."""


import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from ecom_assets.ingest import DEFAULT_DUCKDB_PATH, RetryPolicy, VendorSession, Warehouse
from ecom_assets.ingest.source import DEFAULT_PAGE_CONCURRENCY
from ecom_assets.ingest.warehouse import DEFAULT_DESTINATION


class VendorApiResource(ConfigurableResource):
    """Where the vendor API is and how hard to retry it. Bind `api_key` to an EnvVar."""

    base_url: str = Field(description="Base URL of the vendor API, e.g. https://api.example.com")
    api_key: str = Field(description="The vendor API key, sent as the `api_key` query parameter")
    retry_backoff_factor: float = Field(
        default=2.0, description="Exponential backoff factor between retries, in seconds"
    )
    max_retry_after_seconds: float = Field(
        default=120.0, description="Fail fast when the vendor's Retry-After exceeds this"
    )
    request_timeout_seconds: float = Field(default=30.0, description="Per-request timeout")
    page_concurrency: int = Field(
        default=DEFAULT_PAGE_CONCURRENCY,
        description="Pages of a window fetched at once; halved while the vendor answers 429",
    )

    def session(self) -> VendorSession:
        """A session for a run: the configured retries and page concurrency."""
        policy = RetryPolicy(
            backoff_factor=self.retry_backoff_factor,
            max_retry_after=self.max_retry_after_seconds,
            timeout=self.request_timeout_seconds,
        )
        return VendorSession(self.api_key, policy, self.page_concurrency)

    def probe_session(self) -> VendorSession:
        """A session for a sensor tick, which Dagster stops after 60 s: one quick retry, short
        timeouts, and no long Retry-After waits (the next tick asks again)."""
        policy = RetryPolicy(
            max_retries=1,
            backoff_factor=self.retry_backoff_factor,
            max_retry_after=5.0,
            timeout=min(self.request_timeout_seconds, 5.0),
        )
        return VendorSession(self.api_key, policy)


class WarehouseResource(ConfigurableResource):
    """Where the tables land (schema `ecom`): the dlt destination named by $ECOM_DESTINATION
    (default DuckDB), whose credentials dlt reads itself (e.g.
    `DESTINATION__POSTGRES__CREDENTIALS`)."""

    duckdb_path: str | None = Field(
        default=None,
        description=(
            "DuckDB file, beside which dlt's working directories live whatever the "
            f"destination; default: $ECOM_DUCKDB_PATH, else {DEFAULT_DUCKDB_PATH}"
        ),
    )

    @property
    def warehouse(self) -> Warehouse:
        # Read when a run uses the warehouse, never at import time.
        return Warehouse(
            # One setting for the run and for the definitions (kinds, column types in the UI).
            destination=os.environ.get("ECOM_DESTINATION") or DEFAULT_DESTINATION,
            duckdb_path=Path(
                self.duckdb_path or os.environ.get("ECOM_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH
            ),
        )


class ChangeSensorSettings(ConfigurableResource):
    """How the new-data sensor looks for changes."""

    lookback_minutes: int = Field(
        default=10,
        description="Re-check this long before the cursor, for late-arriving vendor updates",
    )
