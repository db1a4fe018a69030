"""Configurable resources: the vendor API and the warehouse, with values from the settings."""

from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from ecom_assets.ingest import RetryPolicy, VendorSession, Warehouse
from ecom_assets.settings import DEFAULTS, Settings


class VendorApiResource(ConfigurableResource):
    """Where the vendor API is and how hard to retry it. Bind `api_key` to an EnvVar."""

    base_url: str = Field(description="Base URL of the vendor API, e.g. https://api.example.com")
    api_key: str = Field(description="The vendor API key, sent as the `api_key` query parameter")
    retry_backoff_factor: float = Field(
        default=2.0, description="Exponential backoff factor between retries, in seconds"
    )
    max_retry_after_seconds: float = Field(
        default=DEFAULTS.max_retry_after_seconds,
        description="Fail fast when the vendor's Retry-After exceeds this",
    )
    request_timeout_seconds: float = Field(
        default=DEFAULTS.request_timeout_seconds, description="Per-request timeout"
    )
    page_concurrency: int = Field(
        default=DEFAULTS.page_concurrency,
        description="Pages fetched at once; halved while the vendor answers 429",
    )
    late_arrival_minutes: int = Field(
        default=DEFAULTS.late_arrival_minutes,
        description="How far in the past the vendor may file a record late: the sensor looks "
        "back this far (and 5 minutes more, for the vendor's clocks), and a window ending "
        "that close to now is paged until two passes agree",
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
    """Where the tables land (schema `ecom`): a dlt destination whose credentials dlt reads
    itself (e.g. `DESTINATION__POSTGRES__CREDENTIALS`)."""

    destination: str = Field(default=DEFAULTS.destination, description="The dlt destination")
    duckdb_path: str = Field(default=str(DEFAULTS.duckdb_path), description="The DuckDB file")
    pipelines_dir: str = Field(
        default=str(DEFAULTS.dlt_pipelines_dir), description="dlt's working directories"
    )
    duckdb_lock_wait_seconds: float = Field(
        default=DEFAULTS.duckdb_lock_wait_seconds,
        description="How long to wait for another process to release the DuckDB file",
    )
    full_refresh_max_removed_share: float = Field(
        default=DEFAULTS.full_refresh_max_removed_share,
        description="The largest share of a table's rows a full refresh may remove",
    )

    def get_warehouse(self) -> Warehouse:
        return Warehouse(
            self.destination,
            Path(self.duckdb_path),
            Path(self.pipelines_dir),
            self.duckdb_lock_wait_seconds,
        )


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources of the code location: values from the settings, secrets through EnvVar."""
    return {
        "vendor_api": VendorApiResource(
            # Unset, the code location still loads and a run fails naming the variable.
            base_url=settings.api_base_url or EnvVar("ECOM_API_BASE_URL"),
            api_key=EnvVar("ECOM_API_KEY"),
            max_retry_after_seconds=settings.max_retry_after_seconds,
            request_timeout_seconds=settings.request_timeout_seconds,
            page_concurrency=settings.page_concurrency,
            late_arrival_minutes=settings.late_arrival_minutes,
        ),
        "warehouse": WarehouseResource(
            destination=settings.destination,
            duckdb_path=str(settings.duckdb_path),
            pipelines_dir=str(settings.dlt_pipelines_dir),
            duckdb_lock_wait_seconds=settings.duckdb_lock_wait_seconds,
            full_refresh_max_removed_share=settings.full_refresh_max_removed_share,
        ),
    }
