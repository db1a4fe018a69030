"""Configurable resources: the vendor API and the warehouse, resolved at run time."""


import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dlt
from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

from ecom_assets.ingest import DEFAULT_DUCKDB_PATH, RetryPolicy, VendorSession, ecom_pipeline
from ecom_assets.ingest.source import DEFAULT_PAGE_CONCURRENCY


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

    def session(self, concurrency: int | None = None) -> VendorSession:
        """A session with this configuration; by default with the configured page concurrency."""
        policy = RetryPolicy(
            backoff_factor=self.retry_backoff_factor,
            max_retry_after=self.max_retry_after_seconds,
            timeout=self.request_timeout_seconds,
        )
        return VendorSession(self.api_key, policy, concurrency or self.page_concurrency)


class DuckDBWarehouseResource(ConfigurableResource):
    """The embedded DuckDB warehouse; tables land in its schema `ecom`."""

    path: str | None = Field(
        default=None,
        description=f"DuckDB file; default: $ECOM_DUCKDB_PATH, else {DEFAULT_DUCKDB_PATH}",
    )

    @property
    def database_path(self) -> Path:
        # Read when a run uses the warehouse, never at import time.
        return Path(self.path or os.environ.get("ECOM_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)

    @contextmanager
    def pipeline(self, run_id: str) -> Iterator[dlt.Pipeline]:
        """A dlt pipeline with a working directory of the run's own, removed after success,
        held under an exclusive lock of the database file.

        Runs share nothing but the database: no run can trip over another's files or finish
        another's pending load package (all state dlt needs is restored from the destination).
        The Dagster pool already queues writers; the file lock also covers runs it cannot see
        (two CLI runs racing for a slot in SQLite instance storage), so a second writer waits
        instead of failing on DuckDB's own lock.
        """
        path = self.database_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_suffix(".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                get_dagster_logger().info(f"Waiting for the run that is writing {path}")
                fcntl.flock(lock, fcntl.LOCK_EX)
            pipeline = ecom_pipeline(path, working_dir=run_id)
            yield pipeline
            shutil.rmtree(Path(pipeline.pipelines_dir), ignore_errors=True)


class ChangeSensorSettings(ConfigurableResource):
    """How the new-data sensor looks for changes."""

    lookback_minutes: int = Field(
        default=10,
        description="Re-check this long before the cursor, for late-arriving vendor updates",
    )
