"""The production setup on real processes: `dagster-webserver` and `dagster-daemon` with the
instance of deploy/dagster.yaml (storage in PostgreSQL, the queued run coordinator, pools, run
retries) and PostgreSQL as the warehouse, all on loopback."""

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecom_assets.launch import PROJECT_DIR
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests.postgres import PASSWORD, USER, PostgresServer
from ecom_assets_tests.support import (
    DagsterDev,
    free_port,
    project_env,
    start_processes,
    stop_processes,
    vendor_ids,
)

pytestmark = pytest.mark.system

API_KEY = "production-test-key-77e1"


@dataclass
class Production(DagsterDev):
    dagster_db: str = ""  # Dagster's storage
    warehouse_db: str = ""  # the tables


@pytest.fixture(scope="module")
def production(tmp_path_factory, postgres_server: PostgresServer) -> Iterator[Production]:
    tmp = tmp_path_factory.mktemp("production")
    dagster_db, warehouse_db = postgres_server.create_database(), postgres_server.create_database()
    port = free_port()
    live = SandboxServer(
        SandboxSpec(size=1000, days=5), api_key=API_KEY, live_interval_s=2, live_per_tick=2
    )
    with live.start() as sandbox:
        env = {
            **project_env(tmp, sandbox, API_KEY),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(postgres_server.port),
            "DAGSTER_PG_USERNAME": USER,
            "DAGSTER_PG_PASSWORD": PASSWORD,
            "DAGSTER_PG_DB": dagster_db,
            "ECOM_DESTINATION": "postgres",
            "DESTINATION__POSTGRES__CREDENTIALS": postgres_server.dsn(warehouse_db),
            "ECOM_SENSOR_INTERVAL_SECONDS": "5",
        }
        shutil.copy(PROJECT_DIR / "deploy" / "dagster.yaml",
                    Path(env["DAGSTER_HOME"]) / "dagster.yaml")
        bin_dir = Path(sys.executable).parent
        workspace = str(PROJECT_DIR / "workspace.yaml")
        processes = start_processes([
            [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1",
             "-p", str(port)],
            [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
        ], env, tmp / "dagster.log")
        server = Production(
            f"http://127.0.0.1:{port}", Path(env["DAGSTER_HOME"]), Path(), sandbox,
            tmp / "dagster.log", dagster_db, warehouse_db,
        )
        try:
            server.wait_for("the webserver and the code location", server.loaded)
            yield server
        finally:
            stop_processes(processes)


def test_a_run_launched_through_the_webserver_is_queued_run_and_loaded_into_postgres(
    production: Production, postgres_server: PostgresServer
) -> None:
    run_id = production.launch("products", "2026-01-02")

    # Only the daemon takes runs off the queue: success means it dequeued and launched it.
    assert production.wait_for_run(run_id) == "SUCCESS", production.logs()
    expected = vendor_ids(
        production.sandbox, "products", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
    )
    loaded_ids = {
        row[0]
        for row in postgres_server.execute(
            production.warehouse_db,
            "select id from ecom.products where updated_at >= %s and updated_at < %s",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
        )
    }
    assert loaded_ids == expected
    # The run, its events and its checks live in PostgreSQL, not in files under DAGSTER_HOME.
    [(runs,)] = postgres_server.execute(
        production.dagster_db, "select count(*) from runs where run_id = %s", run_id
    )
    assert runs == 1
    [(check_events,)] = postgres_server.execute(
        production.dagster_db,
        "select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
        run_id,
        "ASSET_CHECK_EVALUATION",
    )
    assert check_events == 6


def test_the_daemon_ticks_the_sensor_and_its_run_lands_the_live_records(
    production: Production, postgres_server: PostgresServer
) -> None:
    def sensor_run_succeeded() -> bool:
        data = production.graphql(
            """{ runsOrError(filter: {tags: [{key: "ecom/trigger", value: "vendor_changes"}]}) {
                 ... on Runs { results { status } } } }"""
        )
        return any(r["status"] == "SUCCESS" for r in data["runsOrError"]["results"])

    production.wait_for("a sensor-launched run to succeed", sensor_run_succeeded)
    [(ticks,)] = postgres_server.execute(production.dagster_db, "select count(*) from job_ticks")
    assert ticks >= 1
    live_ids = {r["id"] for r in production.sandbox.live.records("products", None, None)}
    loaded_ids = {
        row[0] for row in postgres_server.execute(
            production.warehouse_db, "select id from ecom.products"
        )
    }
    assert live_ids & loaded_ids, "records the live vendor created are in the table"


def test_the_key_is_nowhere_in_dagsters_storage_nor_in_the_warehouse(
    production: Production, postgres_server: PostgresServer
) -> None:
    run_id = production.launch("order_payments", "2026-01-03")
    assert production.wait_for_run(run_id) == "SUCCESS", production.logs()
    for database in (production.dagster_db, production.warehouse_db):
        tables = postgres_server.execute(
            database,
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('pg_catalog', 'information_schema')",
        )
        assert tables
        for schema, table in tables:
            [(hits,)] = postgres_server.execute(
                database,
                f'select count(*) from "{schema}"."{table}" as t where t::text like %s',
                f"%{API_KEY}%",
            )
            assert hits == 0, f"the key is in {database}.{schema}.{table}"
    # Nor in what the webserver and the daemon logged, and neither is the database password.
    log = production.log.read_text(errors="replace")
    assert API_KEY not in log and PASSWORD not in log
