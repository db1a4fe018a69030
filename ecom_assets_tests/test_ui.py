"""End to end through the real processes: `dg dev` (webserver and daemon) on loopback.

One `dg dev` serves the project, after a backfill of the sandbox's days as `make demo` does: a
run launched through the webserver's GraphQL API the way the UI's Materialize button launches
it, the sensor launching runs from the real daemon while the live sandbox changes records, and
a real browser using the asset page.
"""

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from ecom_assets.launch import launch_command, start_dg_dev, stop_dg_dev
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import (
    DagsterDev,
    free_port,
    project_env,
    rows,
    skip_or_fail,
)

pytestmark = pytest.mark.system

SPEC = SandboxSpec.recent(days=5, size=1000)
FIRST_DAY = SPEC.start.date()
API_KEY = "ui-test-key-5c1d"


def day(offset: int) -> str:
    return (FIRST_DAY + timedelta(days=offset)).isoformat()


def vendor_day_ids(sandbox: SandboxServer, resource: str, key: str) -> set[str]:
    """The ids the vendor files under day `key` now."""
    start = datetime.fromisoformat(key).replace(tzinfo=UTC)
    return {r["id"] for r in sandbox.window(resource, start, start + timedelta(days=1))}


def loaded_day_ids(database: Path, resource: str, key: str) -> set[str]:
    start = datetime.fromisoformat(key).replace(tzinfo=UTC)
    return {r[0] for r in rows(
        database, f"select id from ecom.{resource} where updated_at >= ? and updated_at < ?",
        start, start + timedelta(days=1),
    )}


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    tmp = tmp_path_factory.mktemp("ui")
    # A live shop, as under `make ui`.
    live = SandboxServer(SPEC, api_key=API_KEY, changes_per_second=0.5, creates_per_second=0.5)
    with live.start() as sandbox:
        env = project_env(
            tmp, sandbox, API_KEY, ECOM_SENSOR_INTERVAL_SECONDS="5",
            ECOM_PARTITIONS_START=FIRST_DAY.isoformat(),
        )
        # `make demo` first: every day of the sandbox loaded, every check passed.
        backfill = subprocess.run(
            launch_command("ecom/order_payments,ecom/products",
                           f"{FIRST_DAY}...{datetime.now(UTC).date()}"),
            env=env, cwd=env["DAGSTER_HOME"], capture_output=True, text=True, timeout=300,
        )
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        port = free_port()
        log = tmp / "dg-dev.log"
        with log.open("w") as output:
            dg_dev = start_dg_dev(port, env, stdout=output, stderr=subprocess.STDOUT)
        server = DagsterDev(f"http://127.0.0.1:{port}", Path(env["DAGSTER_HOME"]),
                            Path(env["ECOM_DUCKDB_PATH"]), sandbox, log)
        try:
            server.wait_for("the webserver and the code location", server.loaded)
            yield server
        finally:
            stop_dg_dev(dg_dev)


def test_materialize_a_partition_through_the_webserver(dagster_dev: DagsterDev) -> None:
    run_id = dagster_dev.launch("products", day(1))

    assert dagster_dev.wait_for_run(run_id) == "SUCCESS", dagster_dev.logs()
    # Records of that day updated since have moved to today: the day is what the vendor has.
    assert vendor_day_ids(dagster_dev.sandbox, "products", day(1)) <= loaded_day_ids(
        dagster_dev.database, "products", day(1)
    )
    with DagsterInstance.from_config(str(dagster_dev.dagster_home)) as instance:
        key = AssetCheckKey(AssetKey(["ecom", "products"]), "reconciled_with_vendor")
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    [evaluation] = [
        r.event.asset_check_evaluation for r in history
        if r.run_id == run_id and r.event and r.event.asset_check_evaluation
    ]
    assert evaluation.passed and evaluation.partition == day(1)


def _sensor_runs(dagster_dev: DagsterDev) -> list[dict]:
    data = dagster_dev.graphql(
        """{ runsOrError(filter: {tags: [{key: "ecom/trigger", value: "vendor_changes"}]}) {
             ... on Runs { results { runId status jobName } } } }"""
    )
    return data["runsOrError"]["results"]


def test_the_sensor_in_the_daemon_refreshes_what_changed_and_stays_quiet_when_nothing_does(
    dagster_dev: DagsterDev,
) -> None:
    dagster_dev.wait_for(
        "a sensor-launched run to succeed",
        lambda: any(r["status"] == "SUCCESS" for r in _sensor_runs(dagster_dev)),
    )
    assert {r["jobName"] for r in _sensor_runs(dagster_dev)} == {"ecom_refresh"}
    created = {r["id"] for r in dagster_dev.sandbox.window("products", datetime.now(UTC)
                                                            - timedelta(hours=1))}
    loaded = {r[0] for r in rows(dagster_dev.database, "select id from ecom.products")}
    assert created & loaded, "records the live vendor changed are in the table"

    # Once the vendor holds still, ticks skip: no run is launched for what was loaded.
    with dagster_dev.sandbox.live.paused():
        dagster_dev.wait_for("the sensor's runs to finish",
                             lambda: not _unfinished_runs(dagster_dev))
        settled = len(_sensor_runs(dagster_dev))
        time.sleep(15)  # three ticks
        quiet = len(_sensor_runs(dagster_dev))
    assert quiet <= settled + 1, "at most one run for a change made just before the pause"


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


def test_a_browser_sees_a_green_calm_asset_page_and_materializes_a_day_from_it(
    dagster_dev: DagsterDev, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        skip_or_fail("Chromium is not installed: run `make system-packages` as root "
                     "(Debian's chromium), then the browser tests run")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    partition = day(2)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{dagster_dev.url}/assets/ecom/order_payments")
        materialize = page.get_by_role("button", name="Materialize…")
        materialize.wait_for(timeout=60_000)
        # The newsletter prompt of a first visit, which may take a moment to appear.
        with contextlib.suppress(PlaywrightTimeout):
            page.get_by_role("button", name="Skip").click(timeout=10_000)
        # The demo's asset page: freshness and every check green.
        page.get_by_text("Passing").first.wait_for(timeout=60_000)
        assert "Fails if more than 25 hours since last materialization" in page.inner_text("body")
        page.screenshot(path=str(tmp_path / "asset-page.png"))

        # The picker's defaults (the last 90 days) hold the sandbox's days.
        materialize.click()
        dialog = page.get_by_role("dialog")
        partitions = dialog.get_by_role("textbox").first
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

        # Each check's history: one evaluation per partition, none skipped.
        page.goto(f"{dagster_dev.url}/assets/ecom/order_payments?view=checks"
                  "&checkDetail=reconciled_with_vendor")
        page.get_by_text("Execution history", exact=True).click()
        page.get_by_text(partition).first.wait_for(timeout=30_000)
        history = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "check-history.png"))
        browser.close()

    assert "Skipped" not in history and "Failed" not in history
    assert all(day(n) in history for n in range(3)), "an evaluation per partition"
    with DagsterInstance.from_config(str(dagster_dev.dagster_home)) as instance:
        keys = [AssetCheckKey(AssetKey(["ecom", "order_payments"]), name) for name in (
            "schema_types", "not_null", "unique_id", "no_quarantined_records",
            "reconciled_with_vendor", "known_fields_only",
        )]
        # The latest evaluation of each (a sensor run may be evaluating the next).
        latest = [
            next(r.event.asset_check_evaluation for r in
                 instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
                 if r.event and r.event.asset_check_evaluation)
            for key in keys
        ]
    assert all(evaluation.passed for evaluation in latest), "all green"
    assert vendor_day_ids(dagster_dev.sandbox, "order_payments", partition) <= loaded_day_ids(
        dagster_dev.database, "order_payments", partition
    )
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
    rejected_run = dagster_dev.launch("order_payments", day(4))
    assert dagster_dev.wait_for_run(rejected_run) == "FAILURE"
    assert _tags(dagster_dev, rejected_run)["dagster/will_retry"] == "false"

    # An outage longer than the run's own budget of 3 retries fails the run...
    sandbox.faults.add("order_payments", Fault.status(503, retry_after="1"), times=4)
    outage_run = dagster_dev.launch("order_payments", day(3))
    assert dagster_dev.wait_for_run(outage_run) == "FAILURE"
    assert _tags(dagster_dev, outage_run)["dagster/will_retry"] == "true"
    # ...and the daemon re-executes it, which loads the day.
    retry_run = dagster_dev.wait_for(
        "the daemon to re-execute the failed run", lambda: _child_run(dagster_dev, outage_run)
    )
    assert dagster_dev.wait_for_run(str(retry_run)) == "SUCCESS", dagster_dev.logs()
    assert vendor_day_ids(sandbox, "order_payments", day(3)) <= loaded_day_ids(
        dagster_dev.database, "order_payments", day(3)
    )
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
