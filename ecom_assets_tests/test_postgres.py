"""The same assets with PostgreSQL as the warehouse (`ECOM_DESTINATION=postgres`), against a
real server on loopback: loads, re-runs, full refresh, checks, quarantine and the writer lock."""

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from ecom_assets.contract import CONTRACTS
from ecom_assets.ingest import Warehouse
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests.postgres import PostgresServer
from ecom_assets_tests.support import (
    PROJECT_DIR,
    Sync,
    day,
    partition_key,
    sync_reading_an_older_copy,
    vendor_ids,
)

CLEAN_SPEC = SandboxSpec(size=1000, days=5, unknown_fields=False)


pytestmark = pytest.mark.system


@pytest.fixture
def warehouse_db(
    postgres_server: PostgresServer, postgres_database: str, sync: Sync, monkeypatch
) -> str:
    """Point the project at a fresh PostgreSQL database, the way a user configures it."""
    sync.destination = "postgres"
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", postgres_server.dsn(postgres_database)
    )
    return postgres_database


def ids(server: PostgresServer, database: str, table: str) -> list[str]:
    return [row[0] for row in server.execute(database, f"select id from ecom.{table}")]


def check_results(result) -> dict[tuple[str, str], bool]:
    return {
        (e.asset_key.path[-1], e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }


@pytest.mark.parametrize("sandbox_spec", [CLEAN_SPEC])
def test_a_partition_lands_with_the_contract_types_and_every_check_passes(
    sync: Sync, sandbox: SandboxServer, postgres_server: PostgresServer, warehouse_db: str
) -> None:
    result = sync(partition_key(1))

    assert result.success
    for name, contract in CONTRACTS.items():
        assert sorted(ids(postgres_server, warehouse_db, name)) == sorted(
            vendor_ids(sandbox, name, day(1), day(2))
        )
        columns = {
            column: (data_type.upper(), nullable == "YES")
            for column, data_type, nullable in postgres_server.execute(
                warehouse_db,
                "select column_name, data_type, is_nullable from information_schema.columns "
                "where table_schema = 'ecom' and table_name = %s",
                name,
            )
        }
        for field in contract.fields:
            expected_type = field.type.sql_type("postgres").split("(")[0]  # NUMERIC(18,2)
            assert columns[field.name] == (expected_type, field.nullable), field.name
    checks = check_results(result)
    assert len(checks) == 12 and all(checks.values()), checks
    [materialization] = [
        m for m in result.asset_materializations_for_node("ecom_vendor_sync")
        if m.asset_key.path[-1] == "products"
    ]
    assert materialization.metadata["dagster/partition_row_count"].value == len(
        vendor_ids(sandbox, "products", day(1), day(2))
    )


def test_a_range_then_a_rerun_of_one_day_leave_exactly_the_vendor_rows(
    sync: Sync, sandbox: SandboxServer, postgres_server: PostgresServer, warehouse_db: str
) -> None:
    assert sync(partition_range=(partition_key(0), partition_key(2))).success
    assert sync(partition_key(1)).success

    for name in CONTRACTS:
        loaded = ids(postgres_server, warehouse_db, name)
        assert len(loaded) == len(set(loaded)), "no duplicates after the re-run"
        assert set(loaded) == vendor_ids(sandbox, name, day(0), day(3))


def test_a_full_refresh_replaces_the_table_with_what_the_vendor_has(
    sync: Sync, sandbox: SandboxServer, postgres_server: PostgresServer, warehouse_db: str
) -> None:
    assert sync(partition_key(1), resources=("products",)).success
    # A row the vendor no longer has: only a full refresh removes it.
    postgres_server.execute(
        warehouse_db,
        "update ecom.products set id = 'prod_deleted_by_vendor' where id = "
        "(select min(id) from ecom.products) returning id",
    )

    result = sync(partition_key(0), resources=("products",), config={"full_refresh": True})

    assert result.success
    assert sorted(ids(postgres_server, warehouse_db, "products")) == sorted(
        r["id"] for r in sandbox.dataset.all("products")
    )


def test_defective_records_are_quarantined_and_the_checks_fail(
    sync: Sync, sandbox: SandboxServer, postgres_server: PostgresServer, warehouse_db: str
) -> None:
    victim, other, third, noted = sandbox.dataset.records("order_payments", day(1), day(2))[3:7]
    sandbox.corrupt("order_payments", victim["id"], currency=None)
    sandbox.corrupt("order_payments", other["id"], amount="twelve")
    # PostgreSQL cannot store a NUL in text, and dlt's INSERT statements drop it silently.
    sandbox.corrupt("order_payments", third["id"], customer_id="cus_\x00X")
    sandbox.corrupt("order_payments", noted["id"], note="a\x00b")

    result = sync(partition_key(1), resources=("order_payments",))

    assert not result.success  # the blocking checks fail the run, after the load
    checks = check_results(result)
    assert not checks[("order_payments", "no_quarantined_records")]
    assert checks[("order_payments", "reconciled_with_vendor")]
    assert checks[("order_payments", "schema_types")] and checks[("order_payments", "unique_id")]
    quarantined = postgres_server.execute(
        warehouse_db,
        "select record_id, violations from ecom.order_payments_quarantine order by record_id",
    )
    defective = {victim["id"], other["id"], third["id"]}
    assert {row[0] for row in quarantined} == defective
    violations = {v["field"] for _, vs in quarantined for v in _as_list(vs)}
    assert violations == {"currency", "amount", "customer_id"}
    loaded = set(ids(postgres_server, warehouse_db, "order_payments"))
    expected = vendor_ids(sandbox, "order_payments", day(1), day(2))
    assert loaded | defective == expected, "every record is somewhere"
    assert not loaded & defective
    assert postgres_server.execute(
        warehouse_db, "select note from ecom.order_payments where id = %s", noted["id"]
    ) == [("a\\u0000b",)], "an unknown field keeps the NUL as its escape"


def test_an_older_copy_read_by_a_later_run_is_quarantined_and_the_newer_row_stays(
    sync: Sync, sandbox: SandboxServer, postgres_server: PostgresServer, warehouse_db: str
) -> None:
    record, result = sync_reading_an_older_copy(sync, sandbox)

    assert not check_results(result)[("order_payments", "no_quarantined_records")]
    [(amount,)] = postgres_server.execute(
        warehouse_db, "select amount from ecom.order_payments where id = %s", record["id"]
    )
    assert str(amount) != "1.00", "the newer row stays"
    [(violations,)] = postgres_server.execute(
        warehouse_db, "select violations from ecom.order_payments_quarantine where record_id = %s",
        record["id"],
    )
    assert "the table holds a later version" in _as_list(violations)[0]["reason"]
    # The comparison, and dlt's merge, look ids up in an index rather than scan the table.
    assert postgres_server.execute(
        warehouse_db, "select indexdef from pg_indexes where schemaname = 'ecom' "
        "and tablename = 'order_payments'"
    ) == [("CREATE INDEX order_payments__id ON ecom.order_payments USING btree (id)",)]


def test_a_loader_that_does_not_own_the_table_compares_without_an_index(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path, monkeypatch, caplog
) -> None:
    # A role granted reading and writing, not ownership, as warehouses often give loaders.
    role = f"loader_{postgres_database}"
    for sql in (
        f"create role {role} login password 'loader-pw'",
        "create schema ecom",
        "create table ecom.order_payments (id text, updated_at timestamptz)",
        "insert into ecom.order_payments values ('pay_1', '2026-01-02T00:00:00Z')",
        f"grant usage on schema ecom to {role}",
        f"grant select, insert, update, delete on ecom.order_payments to {role}",
    ):
        postgres_server.execute(postgres_database, sql)
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS",
        f"postgresql://{role}:loader-pw@127.0.0.1:{postgres_server.port}/{postgres_database}",
    )
    warehouse = Warehouse("postgres", pipelines_dir=tmp_path / "pipelines")
    older = datetime(2026, 1, 1, tzinfo=UTC)

    pipeline = warehouse.pipeline("run")

    ids, stamps = pa.array(["pay_1"]), pa.array([older], pa.timestamp("us", tz="UTC"))
    held = [warehouse.held_newer(pipeline, "order_payments", "id", "updated_at", ids, stamps)
            for _ in range(2)]  # two batches

    assert held == [{"pay_1": datetime(2026, 1, 2, tzinfo=UTC)}] * 2
    assert caplog.text.count('No index on "ecom"."order_payments" (id) could be created '
                             "(InsufficientPrivilege)") == 1, "tried once"
    # The same table in another database, which the loader owns, gets its index.
    owned = postgres_server.create_database()
    postgres_server.execute(owned, f"alter database {owned} owner to {role}")
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS",
        f"postgresql://{role}:loader-pw@127.0.0.1:{postgres_server.port}/{owned}",
    )
    pipeline = warehouse.pipeline("another")
    pipeline.run([{"id": "pay_1", "updated_at": older}], table_name="order_payments")
    warehouse.held_newer(pipeline, "order_payments", "id", "updated_at", ids, stamps)
    assert ("order_payments__id",) in postgres_server.execute(
        owned, "select indexname from pg_indexes where tablename = 'order_payments'"
    )


def _as_list(violations: object) -> list[dict]:
    return json.loads(violations) if isinstance(violations, str) else list(violations)


def test_two_writers_of_one_postgres_dataset_take_turns(
    postgres_server: PostgresServer, warehouse_db: str, tmp_path: Path
) -> None:
    warehouse = Warehouse(destination="postgres", pipelines_dir=tmp_path / "dlt")
    second_entered = threading.Event()

    def second_writer() -> None:
        with warehouse.writer("second", ["products"]):
            second_entered.set()

    with warehouse.writer("first", ["order_payments"]):
        thread = threading.Thread(target=second_writer)
        thread.start()
        # It waits on the server's advisory lock for as long as the first writer holds it.
        assert not second_entered.wait(timeout=2)
    thread.join(timeout=30)
    assert second_entered.is_set()


def test_the_assets_name_postgres_as_their_kind_and_show_its_column_types() -> None:
    script = (
        "from dagster import AssetKey\n"
        "from ecom_assets.defs.ecom import build_definitions\n"
        "key = AssetKey(['ecom', 'order_payments'])\n"
        "spec = build_definitions().resolve_assets_def(key).specs_by_key[key]\n"
        "schema = spec.metadata['dagster/column_schema'].schema\n"
        "print(sorted(spec.kinds), {c.name: c.type for c in schema.columns}['amount'])\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "ECOM_DESTINATION": "postgres"},
        cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
    ).stdout
    assert output.strip() == "['dlt', 'postgres'] NUMERIC(18,2)"
