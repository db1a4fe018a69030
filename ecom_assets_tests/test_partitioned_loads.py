"""Partitions load exactly the vendor's records for their window, once, whatever is re-run."""

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from dlt.common.destination import Destination

from ecom_assets.contract import CONTRACTS, FieldType
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import (
    Sync,
    day,
    money,
    partition_key,
    rows,
    timestamp,
)


def expected_rows(sandbox: SandboxServer, resource: str, first: int, last: int) -> dict:
    """The sandbox's own records for days [first, last], typed as the contract says."""
    contract = CONTRACTS[resource]
    records = sandbox.dataset.records(resource, day(first), day(last + 1))
    typed = {}
    for record in records:
        values = []
        for field in contract.fields:
            value = record.get(field.name)
            if value is not None and field.type is FieldType.MONEY:
                value = money(value)
            elif value is not None and field.type is FieldType.TIMESTAMP:
                value = timestamp(value)
            values.append(value)
        typed[record["id"]] = tuple(values)
    return typed


def loaded_rows(database: Path, resource: str) -> dict:
    contract = CONTRACTS[resource]
    columns = ", ".join(
        # JSON columns come back as text; compare the decoded list.
        f"cast({f.name} as varchar)" if f.type is FieldType.TEXT_LIST else f.name
        for f in contract.fields
    )
    loaded = {}
    for row in rows(database, f"select {columns} from ecom.{resource}"):
        values = []
        for field, value in zip(contract.fields, row, strict=True):
            if field.type is FieldType.TEXT_LIST and value is not None:
                value = json.loads(value)
            elif field.type is FieldType.TIMESTAMP:
                value = value.astimezone(UTC)
            values.append(value)
        loaded[row[0]] = tuple(values)
    return loaded


@pytest.mark.parametrize("resource", CONTRACTS)
def test_one_partition_loads_exactly_that_days_records(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, resource: str
) -> None:
    result = sync(partition_key(2), resources=(resource,))

    assert result.success
    expected = expected_rows(sandbox, resource, 2, 2)
    assert len(expected) > 100, "the day must span more than one page"
    assert loaded_rows(duckdb_path, resource) == expected
    materialization = result.asset_materializations_for_node("ecom_vendor_sync")[0]
    assert materialization.metadata["dagster/partition_row_count"].value == len(expected)
    assert materialization.metadata["vendor_total"].value == len(expected)


def test_money_as_strings_and_numbers_loads_to_the_same_exact_decimals(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    records = sandbox.dataset.records("order_payments", day(0), day(1))
    as_strings = {r["id"]: money(r["amount"]) for r in records if isinstance(r["amount"], str)}
    as_numbers = {r["id"]: money(r["amount"]) for r in records if not isinstance(r["amount"], str)}
    assert as_strings and as_numbers

    assert sync(partition_key(0), resources=("order_payments",)).success

    loaded = dict(rows(duckdb_path, "select id, amount from ecom.order_payments"))
    assert loaded == {**as_strings, **as_numbers}


def test_a_range_loads_in_one_run_and_reruns_change_nothing(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    result = sync(partition_range=(partition_key(0), partition_key(3)))

    assert result.success
    assert result.dagster_run.tags["dagster/asset_partition_range_end"] == partition_key(3)
    for resource in CONTRACTS:
        union = expected_rows(sandbox, resource, 0, 3)
        assert loaded_rows(duckdb_path, resource) == union

    before = {resource: loaded_rows(duckdb_path, resource) for resource in CONTRACTS}

    assert sync(partition_key(1)).success
    assert sync(partition_range=(partition_key(0), partition_key(3))).success

    for resource in CONTRACTS:
        ids = [r[0] for r in rows(duckdb_path, f"select id from ecom.{resource}")]
        assert len(ids) == len(set(ids)), "no duplicates"
        assert loaded_rows(duckdb_path, resource) == before[resource], "nothing changed"


def test_only_a_run_of_one_partition_says_how_many_rows_the_partition_holds(
    sync: Sync, sandbox: SandboxServer, instance: DagsterInstance
) -> None:
    def partition_row_counts() -> list[int | None]:
        counts = []
        for index in range(3):
            [record] = instance.fetch_materializations(AssetRecordsFilter(
                AssetKey(["ecom", "order_payments"]), asset_partitions=[partition_key(index)]
            ), 1).records
            count = record.asset_materialization.metadata.get("dagster/partition_row_count")
            counts.append(None if count is None else count.value)
        return counts

    # One materialization stands for every partition of a range: the range's count is no
    # partition's.
    assert sync(partition_range=(partition_key(0), partition_key(2)),
                resources=("order_payments",)).success
    assert partition_row_counts() == [None, None, None]

    assert sync(partition_key(1), resources=("order_payments",)).success
    day_rows = len(sandbox.dataset.records("order_payments", day(1), day(2)))
    assert partition_row_counts() == [None, day_rows, None]


def test_an_empty_partition_materializes_with_zero_rows(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    # The sandbox's data covers five days; the tenth day has nothing.
    result = sync(partition_key(10))

    assert result.success
    for materialization in result.asset_materializations_for_node("ecom_vendor_sync"):
        assert materialization.metadata["dagster/partition_row_count"].value == 0
        assert materialization.metadata["records_received"].value == 0


def test_a_run_resolves_the_configuration_of_its_destinations_capabilities_once(
    sync: Sync, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dlt asks for them about 13 times a run, and resolved that configuration from every
    # provider each time, 10 ms each: half of what a run with nothing to load costs beyond
    # Dagster and the libraries.
    partial_resolutions = []
    resolve = Destination.configuration

    def counted(self: Destination, initial_config: Any, accept_partial: bool = False) -> Any:
        partial_resolutions.append(accept_partial)
        return resolve(self, initial_config, accept_partial)

    monkeypatch.setattr(Destination, "configuration", counted)

    result = sync(partition_key(0))

    assert result.success
    assert partial_resolutions.count(True) == 1


# A run in a fresh process, as `dg launch` and the sensor's runs are: which modules it loads.
RUN_IN_FRESH_PROCESS = """
import sys
from pathlib import Path
from dagster import DagsterInstance
from ecom_assets_tests.support import Sync
home, warehouse, *partitions = sys.argv[1:]
with DagsterInstance.ephemeral(tempdir=home) as instance:
    for partition in partitions:
        result = Sync(instance, Path(warehouse))(partition, resources=["order_payments"])
        print(result.success, "pyarrow" in sys.modules)
"""


@pytest.mark.system
def test_a_run_with_nothing_to_load_never_imports_arrow(
    vendor_env: None, tmp_path: Path, duckdb_path: Path
) -> None:
    # Most sensor refreshes find nothing: importing Arrow would add a tenth of a second to
    # each. The first run that loads records imports it.
    result = subprocess.run(
        [sys.executable, "-c", RUN_IN_FRESH_PROCESS, str(tmp_path), str(duckdb_path),
         partition_key(10), partition_key(0)],
        capture_output=True, text=True, timeout=180,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["True False", "True True"]


def test_full_refresh_replaces_each_table_with_everything_the_vendor_has(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    assert sync(partition_key(0)).success
    # A row the vendor no longer has: a full refresh must drop it.
    with duckdb.connect(str(duckdb_path)) as connection:
        connection.execute(
            "insert into ecom.products select * replace ('prd_gone' as id) from ecom.products "
            "limit 1"
        )

    result = sync(partition_key(0), config={"full_refresh": True})

    assert result.success
    for resource in CONTRACTS:
        ids = {r[0] for r in rows(duckdb_path, f"select id from ecom.{resource}")}
        assert ids == {r["id"] for r in sandbox.dataset.all(resource)}


def test_a_failed_full_refresh_leaves_the_old_table_intact(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    assert sync(partition_key(0), resources=("products",)).success
    before = rows(duckdb_path, "select * from ecom.products order by id")
    # Three pages arrive, then the vendor fails for longer than any page's retry budget,
    # however the concurrent page fetches share out the failures.
    sandbox.faults.add("products", Fault.stall(0), times=3)
    sandbox.faults.add("products", Fault.status(503), times=100)

    result = sync(partition_key(0), resources=("products",), config={"full_refresh": True})

    assert not result.success
    assert rows(duckdb_path, "select * from ecom.products order by id") == before


def test_a_full_refresh_whose_records_move_while_paged_keeps_every_record_once(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    assert sync(partition_key(0), resources=("order_payments",)).success
    # After the first page, a record is updated: the window's offsets shift, and the record
    # leaves the refresh's window for the present.
    moved = sandbox.dataset.all("order_payments")[10]
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add(
        "order_payments", Fault.act(lambda: sandbox.update_now("order_payments", moved["id"]))
    )

    result = sync(partition_key(0), resources=("order_payments",), config={"full_refresh": True})

    assert result.success
    ids = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert sorted(ids) == sorted(r["id"] for r in sandbox.dataset.all("order_payments"))
    [(updated_at,)] = rows(
        duckdb_path, "select updated_at from ecom.order_payments where id = ?", moved["id"]
    )
    assert updated_at.date() == datetime.now(UTC).date(), "in its latest version"
