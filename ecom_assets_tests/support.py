"""What the tests share: sandbox days, in-process runs, real dg processes, warehouse rows."""

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import (
    AssetKey,
    AssetsDefinition,
    DagsterInstance,
    EnvVar,
    ExecuteInProcessResult,
    materialize,
)

from ecom_assets.contract import CONTRACTS
from ecom_assets.defs.assets import build_sync_assets
from ecom_assets.defs.partitions import daily_partitions
from ecom_assets.defs.resources import VendorApiResource, WarehouseResource
from ecom_assets.launch import PROJECT_DIR, dg_environment, sandbox_settings
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer

__all__ = ["PROJECT_DIR"]

# Tests of the browser and of PostgreSQL skip, saying why, where their programs are missing;
# CI sets this so that such a skip fails instead.
STRICT = os.environ.get("ECOM_STRICT_TESTS") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the test for `reason`, or fail it in CI's strict mode."""
    if STRICT:
        pytest.fail(f"{reason} (ECOM_STRICT_TESTS=1: a skip is a failure)")
    pytest.skip(reason)


# About 200 records a day for five days: every day spans several pages of 100.
SMALL_SPEC = SandboxSpec(size=1000, days=5)
FIRST_DAY = SMALL_SPEC.start


def free_port() -> int:
    """A TCP port nobody listens on, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def vendor_ids(sandbox: SandboxServer, resource: str, since: Any, before: Any) -> set[str]:
    """The ids of the sandbox vendor's `resource` records with since <= updated_at < before."""
    return {record["id"] for record in sandbox.dataset.records(resource, since, before)}


def day(offset: int) -> datetime:
    return FIRST_DAY + timedelta(days=offset)


def partition_key(offset: int) -> str:
    return day(offset).strftime("%Y-%m-%d")


SYNC_ASSETS = build_sync_assets(
    list(CONTRACTS.values()), daily_partitions(datetime(2026, 1, 1).date()), "duckdb"
)


@dataclass
class Sync:
    """Materializes the assets in process, the way a Dagster run does."""

    instance: DagsterInstance
    duckdb_path: Path
    request_timeout: float = 30.0
    duckdb_lock_wait_seconds: float = 60.0
    destination: str = "duckdb"
    assets: AssetsDefinition = field(default_factory=lambda: SYNC_ASSETS)

    def __call__(
        self,
        partition: str | None = None,
        *,
        partition_range: tuple[str, str] | None = None,
        resources: Sequence[str] = ("order_payments", "products"),
        config: Mapping[str, Any] | None = None,
        backoff_factor: float = 0.01,
        downstream: Sequence[AssetsDefinition] = (),
    ) -> ExecuteInProcessResult:
        tags = {}
        if partition_range:
            tags = {
                "dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1],
            }
        run_config = {"ops": {"ecom_vendor_sync": {"config": dict(config)}}} if config else None
        return materialize(
            [self.assets, *downstream],
            selection=[
                *(AssetKey(["ecom", name]) for name in resources),
                *(assets_def.key for assets_def in downstream),
            ],
            partition_key=partition,
            tags=tags,
            run_config=run_config,
            instance=self.instance,
            raise_on_error=False,
            resources={
                # Same configuration as definitions.py, with retries fast enough for tests.
                "vendor_api": VendorApiResource(
                    base_url=EnvVar("ECOM_API_BASE_URL"),
                    api_key=EnvVar("ECOM_API_KEY"),
                    retry_backoff_factor=backoff_factor,
                    request_timeout_seconds=self.request_timeout,
                ),
                "warehouse": WarehouseResource(
                    destination=self.destination,
                    duckdb_path=str(self.duckdb_path),
                    pipelines_dir=str(self.duckdb_path.parent / "dlt_pipelines"),
                    duckdb_lock_wait_seconds=self.duckdb_lock_wait_seconds,
                ),
            },
        )


def rows(database: Path, sql: str, *params: Any) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql, list(params)).fetchall()


def money(value: Any) -> Decimal:
    """The vendor's money (a JSON number or a decimal string) as the exact decimal."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def failure_message(result: ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a failed step"
    data = failures[0].step_failure_data
    return f"{data.error.message if data.error else ''} {data.user_failure_data}"


def project_env(
    tmp_path: Path, sandbox: SandboxServer | None = None, api_key: str = "", **extra: str
) -> dict[str, str]:
    """The environment of a real `dg` process: its own Dagster home (with the project's
    dagster.yaml), warehouse and dlt directories under tmp_path, pointed at `sandbox` if
    given. Run it with `cwd=env["DAGSTER_HOME"]`, where no `.env` is."""
    settings = sandbox_settings(
        sandbox.base_url if sandbox else "http://127.0.0.1:9", api_key,
        FIRST_DAY.date(), tmp_path / "data",
    )
    return dg_environment({**os.environ, **settings, **extra}, tmp_path / "dagster_home")
