"""What the tests share: sandbox days, in-process runs, real dg processes, warehouse rows."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests
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
from ecom_assets.launch import (
    PROJECT_DIR,
    default_stop_signals,
    dg_environment,
    sandbox_settings,
)
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets.settings import DEFAULTS

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


# The key of the sandbox servers that tests of the sandbox itself start.
SANDBOX_KEY = "sandbox-test-key-5f1d"


def vendor_get(
    session: requests.Session, server: SandboxServer, resource: str, **params: Any
) -> requests.Response:
    """GET `resource` of `server` (`products`, or a path such as `/v1/products`), with
    `SANDBOX_KEY` unless `api_key` is given; parameters given as None are left out."""
    path = resource if resource.startswith("/") else f"/v1/{resource}"
    query = {"api_key": SANDBOX_KEY, **{k: v for k, v in params.items() if v is not None}}
    return session.get(f"{server.base_url}{path}", params=query, timeout=5)


def vendor_page(
    session: requests.Session, server: SandboxServer, resource: str, **params: Any
) -> requests.Response:
    """`vendor_get`, which must answer 200."""
    response = vendor_get(session, server, resource, **params)
    assert response.status_code == 200, response.text
    return response


def vendor_window(
    session: requests.Session, server: SandboxServer, resource: str, **params: Any
) -> tuple[list[dict], set[int]]:
    """Every page of a window, concatenated, and the `total`s the pages reported."""
    records: list[dict] = []
    totals: set[int] = set()
    while True:
        page = vendor_page(session, server, resource, offset=len(records), **params).json()
        totals.add(page["total"])
        if not page["data"]:
            return records, totals
        records += page["data"]


def utc_today() -> str:
    """Today's partition key."""
    return datetime.now(UTC).strftime("%Y-%m-%d")


def check_evaluations(result: ExecuteInProcessResult) -> dict[str, Any]:
    """The run's check evaluations by check name."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def checks_passed(result: ExecuteInProcessResult) -> dict[str, bool]:
    """Whether each check of the run passed, by check name."""
    return {name: e.passed for name, e in check_evaluations(result).items()}


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
    late_arrival_minutes: int = DEFAULTS.late_arrival_minutes
    destination: str = "duckdb"
    assets: AssetsDefinition = field(default_factory=lambda: SYNC_ASSETS)

    def __call__(
        self,
        partition: str | None = None,
        *,
        partition_range: tuple[str, str] | None = None,
        resources: Sequence[str] = tuple(CONTRACTS),
        config: Mapping[str, Any] | None = None,
        backoff_factor: float = 0.01,
        downstream: Sequence[AssetsDefinition] = (),
        tags: Mapping[str, str] | None = None,
    ) -> ExecuteInProcessResult:
        tags = dict(tags or {})
        if partition_range:
            tags |= {
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
                    late_arrival_minutes=self.late_arrival_minutes,
                ),
                "warehouse": WarehouseResource(
                    destination=self.destination,
                    duckdb_path=str(self.duckdb_path),
                    pipelines_dir=str(self.duckdb_path.parent / "dlt_pipelines"),
                    duckdb_lock_wait_seconds=self.duckdb_lock_wait_seconds,
                ),
            },
        )


def sync_reading_an_older_copy(
    sync: Sync, sandbox: SandboxServer
) -> tuple[dict[str, Any], ExecuteInProcessResult]:
    """A record of day 2 loaded; then the vendor also files a copy of it a day earlier, with
    the amount 1.00 (a twin that the run reading that day cannot compare within its window),
    and day 1 is synced: the record, and that sync's result."""
    record = sandbox.dataset.records("order_payments", day(2), day(3))[3]
    assert sync(partition_key(2), resources=("order_payments",)).success
    earlier = sandbox.dataset.records("order_payments", day(1), day(2))[5]["updated_at"]
    sandbox.duplicate("order_payments", record["id"], amount="1.00", updated_at=earlier)
    return record, sync(partition_key(1), resources=("order_payments",))


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


# Real Dagster processes -------------------------------------------------------------------

WAIT_SECONDS = 180
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@dataclass
class DagsterDev:
    """A webserver (and daemon) serving the code location, driven through its GraphQL API."""

    url: str
    dagster_home: Path
    database: Path
    sandbox: SandboxServer
    log: Path

    def graphql(self, query: str, **variables: Any) -> dict:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_for(self, what: str, condition: Callable[[], object]) -> object:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(1)
        pytest.fail(f"timed out after {WAIT_SECONDS} s waiting for {what}\n{self.logs()}")

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", id=run_id
        )
        return data["runOrError"]["status"]

    def wait_for_run(self, run_id: str) -> str:
        final = {"SUCCESS", "FAILURE", "CANCELED"}
        status = self.wait_for(
            f"run {run_id}", lambda: (s := self.run_status(run_id)) in final and s
        )
        return str(status)

    def loaded(self) -> bool:
        """Whether the webserver serves the code location, loaded."""
        try:
            data = self.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
            )
        except (requests.RequestException, AssertionError):
            return False
        entries = data["workspaceOrError"]["locationEntries"]
        return any(e["name"] == "ecom_assets" and e["loadStatus"] == "LOADED" for e in entries)

    def launch(self, resource: str, partition: str) -> str:
        """What the Materialize button sends for one partition of one asset; the run's id."""
        params = {
            "selector": {
                "repositoryLocationName": "ecom_assets",
                "repositoryName": "__repository__",
                "pipelineName": "__ASSET_JOB",
                "assetSelection": [{"path": ["ecom", resource]}],
            },
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
            "runConfigData": {},
        }
        launched = self.graphql(LAUNCH_RUN, params=params)["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]


def start_processes(
    commands: Sequence[list[str]], env: Mapping[str, str], log: Path
) -> list[subprocess.Popen]:
    """Start `commands`, each in a session of its own, in the Dagster home of `env`, with
    SIGINT and SIGTERM at their defaults (so that `stop_processes` stops them)."""
    with log.open("w") as output:
        return [
            subprocess.Popen(
                command, cwd=env["DAGSTER_HOME"], env=dict(env), stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=default_stop_signals,
            )
            for command in commands
        ]


def stop_processes(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        os.killpg(process.pid, signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
