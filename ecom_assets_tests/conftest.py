"""Shared fixtures: a sandbox vendor on loopback, a throwaway key, files under tmp_path."""

import os
import secrets
import shutil
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests import postgres

PROJECT_DIR = Path(__file__).resolve().parent.parent

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


@pytest.fixture
def api_key() -> str:
    return f"test-key-{secrets.token_hex(12)}"


@pytest.fixture
def sandbox_spec() -> SandboxSpec:
    """Override with `@pytest.mark.parametrize("sandbox_spec", [...])` for other data."""
    return SMALL_SPEC


@pytest.fixture
def sandbox(sandbox_spec: SandboxSpec, api_key: str) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox_spec, api_key=api_key).start() as server:
        yield server


@pytest.fixture
def duckdb_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "warehouse.duckdb"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[postgres.PostgresServer]:
    """A real PostgreSQL server on loopback for the whole session."""
    server = postgres.start(tmp_path_factory.mktemp("postgres"), free_port())
    try:
        yield server
    finally:
        postgres.stop(server)


@pytest.fixture
def postgres_database(postgres_server: postgres.PostgresServer) -> str:
    """A fresh database of the session's server; its name."""
    return postgres_server.create_database()


@pytest.fixture
def vendor_env(sandbox: SandboxServer, api_key: str, duckdb_path: Path, monkeypatch) -> None:
    """The run-time configuration a user sets, pointed at the sandbox and tmp_path."""
    monkeypatch.setenv("ECOM_API_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("ECOM_API_KEY", api_key)
    monkeypatch.setenv("ECOM_DUCKDB_PATH", str(duckdb_path))


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with DagsterInstance.local_temp(
        tempdir=str(dagster_home), overrides={"telemetry": {"enabled": False}}
    ) as temp_instance:
        yield temp_instance


SYNC_ASSETS = build_sync_assets(
    list(CONTRACTS.values()), daily_partitions(datetime(2026, 1, 1).date()), "duckdb"
)


@dataclass
class Sync:
    """Materializes the assets in process, the way a Dagster run does."""

    instance: DagsterInstance
    duckdb_path: Path
    request_timeout: float = 30.0

    def __call__(
        self,
        partition: str | None = None,
        *,
        partition_range: tuple[str, str] | None = None,
        resources: tuple[str, ...] = ("order_payments", "products"),
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
            [SYNC_ASSETS, *downstream],
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
                    duckdb_path=str(self.duckdb_path),
                    pipelines_dir=str(self.duckdb_path.parent / "dlt_pipelines"),
                ),
            },
        )


@pytest.fixture
def sync(vendor_env: None, instance: DagsterInstance, duckdb_path: Path) -> Sync:
    return Sync(instance, duckdb_path)


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
    """The environment of a real `dagster` process: its own DAGSTER_HOME (with the project's
    dagster.yaml) and warehouse under tmp_path, pointed at `sandbox` if given."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir(exist_ok=True)
    shutil.copy(PROJECT_DIR / "dagster.yaml", dagster_home / "dagster.yaml")
    # Create the instance's storage now: two CLI processes starting on an empty DAGSTER_HOME
    # would race to create the same SQLite tables.
    DagsterInstance.from_config(str(dagster_home)).dispose()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "ECOM_DUCKDB_PATH": str(tmp_path / "data" / "warehouse.duckdb"),
        "ECOM_PARTITIONS_START": "2026-01-01",
        **extra,
    }
    if sandbox is not None:
        env.update(ECOM_API_BASE_URL=sandbox.base_url, ECOM_API_KEY=api_key)
    return env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that is neither `unit` nor `system` is an integration test (sandbox, dlt and
    Dagster in process): `pytest -m "not system"` is the fast layers."""
    for item in items:
        if not any(item.get_closest_marker(layer) for layer in ("unit", "system")):
            item.add_marker(pytest.mark.integration)
