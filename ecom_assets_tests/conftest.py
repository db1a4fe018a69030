"""Fixtures: a sandbox vendor on loopback, a throwaway key, files under tmp_path."""

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dagster import DagsterInstance

from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests import postgres
from ecom_assets_tests.support import SMALL_SPEC, Sync, free_port, skip_or_fail


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
def session() -> Iterator[requests.Session]:
    """An HTTP session for requests to a sandbox server."""
    with requests.Session() as http:
        yield http


@pytest.fixture
def duckdb_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "warehouse.duckdb"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[postgres.PostgresServer]:
    """A real PostgreSQL server on loopback for the whole session."""
    if postgres.binaries() is None:
        skip_or_fail(postgres.MISSING)
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
    """A Dagster instance in memory (runs, events, check history), files under tmp_path."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with DagsterInstance.ephemeral(tempdir=str(dagster_home)) as memory_instance:
        yield memory_instance


@pytest.fixture
def sync(vendor_env: None, instance: DagsterInstance, duckdb_path: Path) -> Sync:
    return Sync(instance, duckdb_path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that is neither `unit` nor `system` is an integration test (sandbox, dlt and
    Dagster in process): `pytest -m "not system"` is the fast layers."""
    for item in items:
        if not any(item.get_closest_marker(layer) for layer in ("unit", "system")):
            item.add_marker(pytest.mark.integration)
