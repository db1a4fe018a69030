"""End to end through the real processes: `dagster dev` (webserver and daemon) on loopback.

One `dagster dev` serves the module: a run launched through the webserver's GraphQL API the way
the UI's Materialize button launches it, the sensor launching a run from the real daemon after
the live sandbox changes records, and a real browser clicking Materialize.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import free_port, rows, vendor_ids

PROJECT_DIR = Path(__file__).resolve().parent.parent
SPEC = SandboxSpec(size=1000, days=5)
API_KEY = "ui-test-key-5c1d"
WAIT_SECONDS = 180


@dataclass
class DagsterDev:
    url: str
    dagster_home: Path
    database: Path
    sandbox: SandboxServer
    log: Path

    def graphql(self, query: str, **variables) -> dict:
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


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    tmp = tmp_path_factory.mktemp("ui")
    dagster_home = tmp / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_DIR / "dagster.yaml", dagster_home / "dagster.yaml")
    database = tmp / "data" / "warehouse.duckdb"
    port = free_port()
    log = tmp / "dagster-dev.log"
    # The live feed adds and updates records every 2 s, like `make ui`'s sandbox.
    live_sandbox = SandboxServer(SPEC, api_key=API_KEY, live_interval_s=2, live_per_tick=2)
    with live_sandbox.start() as sandbox:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "ECOM_API_BASE_URL": sandbox.base_url,
            "ECOM_API_KEY": API_KEY,
            "ECOM_DUCKDB_PATH": str(database),
            "ECOM_PARTITIONS_START": "2026-01-01",
            "ECOM_SENSOR_INTERVAL_SECONDS": "5",
        }
        dagster = str(Path(sys.executable).with_name("dagster"))
        with log.open("w") as output:
            process = subprocess.Popen(
                [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=PROJECT_DIR, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = DagsterDev(f"http://127.0.0.1:{port}", dagster_home, database, sandbox, log)
        try:
            server.wait_for("the webserver and the code location", lambda: loaded(server))
            yield server
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def loaded(server: DagsterDev) -> bool:
    try:
        data = server.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        )
    except (requests.RequestException, AssertionError):
        return False
    entries = data["workspaceOrError"]["locationEntries"]
    return any(e["name"] == "ecom_assets" and e["loadStatus"] == "LOADED" for e in entries)


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


def launch(dagster_dev: DagsterDev, resource: str, partition: str) -> str:
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
    launched = dagster_dev.graphql(LAUNCH_RUN, params=params)["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_materialize_a_partition_through_the_webserver(dagster_dev: DagsterDev) -> None:
    run_id = launch(dagster_dev, "products", "2026-01-02")

    assert dagster_dev.wait_for_run(run_id) == "SUCCESS", dagster_dev.logs()

    expected = vendor_ids(
        dagster_dev.sandbox, "products", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
    )
    # The sensor may have loaded today's live records meanwhile: compare that day only.
    loaded = {
        r[0]
        for r in rows(
            dagster_dev.database,
            "select id from ecom.products where updated_at >= ? and updated_at < ?",
            "2026-01-02 00:00:00+00",
            "2026-01-03 00:00:00+00",
        )
    }
    assert loaded == expected
    os.environ["DAGSTER_HOME"] = str(dagster_dev.dagster_home)
    with DagsterInstance.get() as instance:
        key = AssetCheckKey(AssetKey(["ecom", "products"]), "matches_vendor_total")
        # Sensor runs evaluate the same check too: pick this run's evaluation.
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
        evaluations = [
            r.event.asset_check_evaluation
            for r in history
            if r.run_id == run_id and r.event and r.event.asset_check_evaluation
        ]
        assert evaluations and all(e.passed for e in evaluations)


def test_the_sensor_in_the_daemon_launches_a_run_and_the_new_records_land(
    dagster_dev: DagsterDev,
) -> None:
    def sensor_run_succeeded() -> bool:
        data = dagster_dev.graphql(
            """{ runsOrError(filter: {tags: [{key: "ecom/trigger", value: "vendor_changes"}]}) {
                 ... on Runs { results { runId status } } } }"""
        )
        return any(r["status"] == "SUCCESS" for r in data["runsOrError"]["results"])

    dagster_dev.wait_for("a sensor-launched run to succeed", sensor_run_succeeded)

    live_ids = {
        r["id"] for r in dagster_dev.sandbox.live.records("products", None, None)
    }
    loaded = {r[0] for r in rows(dagster_dev.database, "select id from ecom.products")}
    assert live_ids & loaded, "records the live vendor created are in the table"

    # Once the vendor holds still, every tick sees the same state and requests the same run
    # key again: the daemon must skip it, not launch the partition a second time.
    dagster_dev.sandbox.live.stop()
    stopped_at = time.time()

    def a_tick_repeating_launched_keys() -> bool:
        repeated = [
            t for t in _sensor_ticks(dagster_dev)
            if t["timestamp"] > stopped_at and t["runKeys"] and not t["runIds"]
        ]
        return bool(repeated) and set(repeated[0]["runKeys"]) <= set(_sensor_run_keys(dagster_dev))

    dagster_dev.wait_for("a tick that repeats launched run keys", a_tick_repeating_launched_keys)
    run_keys = _sensor_run_keys(dagster_dev)
    assert len(run_keys) == len(set(run_keys)), f"a run key launched twice: {run_keys}"


def _sensor_ticks(dagster_dev: DagsterDev) -> list[dict]:
    data = dagster_dev.graphql(
        """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
             ... on Sensor { sensorState { ticks(limit: 100) { timestamp runKeys runIds } } }
           } }""",
        selector={
            "repositoryLocationName": "ecom_assets",
            "repositoryName": "__repository__",
            "sensorName": "ecom_vendor_changes",
        },
    )
    return data["sensorOrError"]["sensorState"]["ticks"]


def _sensor_run_keys(dagster_dev: DagsterDev) -> list[str]:
    """The run key of every run the sensor launched."""
    data = dagster_dev.graphql(
        """{ runsOrError(filter: {tags: [{key: "ecom/trigger", value: "vendor_changes"}]}) {
             ... on Runs { results { tags { key value } } } } }"""
    )
    return [
        tag["value"]
        for run in data["runsOrError"]["results"]
        for tag in run["tags"]
        if tag["key"] == "dagster/run_key"
    ]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root and offline: no sandbox, and none of the background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_a_browser_materializes_a_partition_from_the_asset_page(
    dagster_dev: DagsterDev, tmp_path: Path
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    partition = "2026-01-03"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{dagster_dev.url}/assets/ecom/order_payments")
        materialize = page.get_by_role("button", name="Materialize…")
        materialize.wait_for(timeout=60_000)
        # The newsletter prompt of a first visit, which may take a moment to appear.
        with contextlib.suppress(PlaywrightTimeout):
            page.get_by_role("button", name="Skip").click(timeout=10_000)
        materialize.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="Show all partitions").click()
        partitions = dialog.locator("input").first
        partitions.fill(partition)
        partitions.press("Enter")
        dialog.get_by_role("button", name="Launch 1 run").click()

        def launched_run() -> str | None:
            data = dagster_dev.graphql(
                """query($value: String!) { runsOrError(filter: {tags: [
                     {key: "dagster/partition", value: $value}]}) {
                     ... on Runs { results { runId } } } }""",
                value=partition,
            )
            results = data["runsOrError"]["results"]
            return results[0]["runId"] if results else None

        run_id = str(dagster_dev.wait_for("the run the browser launched", launched_run))
        assert dagster_dev.wait_for_run(run_id) == "SUCCESS", dagster_dev.logs()
        page.goto(f"{dagster_dev.url}/assets/ecom/order_payments")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(tmp_path / "asset-page.png"))
        page.get_by_text(partition).first.wait_for(timeout=30_000)
        browser.close()

    expected = dagster_dev.sandbox.dataset.records(
        "order_payments", f"{partition}T00:00:00Z", "2026-01-04T00:00:00Z"
    )
    loaded = rows(
        dagster_dev.database,
        "select count(*) from ecom.order_payments where updated_at >= ? and updated_at < ?",
        f"{partition} 00:00:00+00", "2026-01-04 00:00:00+00",
    )
    assert loaded == [(len(expected),)]
    assert (tmp_path / "asset-page.png").stat().st_size > 10_000


def test_the_daemon_retries_a_run_failed_by_an_outage_but_not_one_the_vendor_rejected(
    dagster_dev: DagsterDev,
) -> None:
    # The sensor's probes would take the faults meant for these runs.
    sensor_id = dagster_dev.graphql(f"{{ sensorOrError(sensorSelector: {SENSOR_SELECTOR}) "
                                    "{ ... on Sensor { id } } }")["sensorOrError"]["id"]
    dagster_dev.graphql("mutation($id: String) { stopSensor(id: $id) { __typename } }",
                        id=sensor_id)
    time.sleep(2)  # a tick already under way finishes
    dagster_dev.wait_for("the sensor's runs to finish", lambda: not _unfinished_runs(dagster_dev))
    sandbox = dagster_dev.sandbox

    # A request the vendor rejects fails the same way every time: not re-executed.
    sandbox.faults.add("order_payments", Fault.status(401))
    rejected_run = launch(dagster_dev, "order_payments", "2026-01-04")
    assert dagster_dev.wait_for_run(rejected_run) == "FAILURE"
    assert _tags(dagster_dev, rejected_run)["dagster/will_retry"] == "false"

    # An outage longer than the run's own budget of 3 retries fails the run...
    sandbox.faults.add("order_payments", Fault.status(503, retry_after="0"), times=4)
    outage_run = launch(dagster_dev, "order_payments", "2026-01-03")
    assert dagster_dev.wait_for_run(outage_run) == "FAILURE"
    assert _tags(dagster_dev, outage_run)["dagster/will_retry"] == "true"
    # ...and the daemon re-executes it, which loads the day.
    retry_run = dagster_dev.wait_for(
        "the daemon to re-execute the failed run", lambda: _child_run(dagster_dev, outage_run)
    )
    assert dagster_dev.wait_for_run(str(retry_run)) == "SUCCESS", dagster_dev.logs()
    expected = vendor_ids(
        sandbox, "order_payments", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"
    )
    loaded = {
        r[0]
        for r in rows(
            dagster_dev.database,
            "select id from ecom.order_payments where updated_at >= ? and updated_at < ?",
            "2026-01-03 00:00:00+00",
            "2026-01-04 00:00:00+00",
        )
    }
    assert loaded == expected
    # The daemon handles failures in order: past the outage run, it has passed the rejected one.
    assert _child_run(dagster_dev, rejected_run) is None


SENSOR_SELECTOR = (
    '{repositoryLocationName: "ecom_assets", repositoryName: "__repository__", '
    'sensorName: "ecom_vendor_changes"}'
)


def _unfinished_runs(dagster_dev: DagsterDev) -> list[dict]:
    data = dagster_dev.graphql(
        """{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) {
             ... on Runs { results { runId } } } }"""
    )
    return data["runsOrError"]["results"]


def _tags(dagster_dev: DagsterDev, run_id: str) -> dict[str, str]:
    data = dagster_dev.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }",
        id=run_id,
    )
    return {tag["key"]: tag["value"] for tag in data["runOrError"]["tags"]}


def _child_run(dagster_dev: DagsterDev, parent_run_id: str) -> str | None:
    data = dagster_dev.graphql(
        """query($parent: String!) {
             runsOrError(filter: {tags: [{key: "dagster/parent_run_id", value: $parent}]}) {
               ... on Runs { results { runId } } } }""",
        parent=parent_run_id,
    )
    results = data["runsOrError"]["results"]
    return results[0]["runId"] if results else None
