"""The schema contract: typed tables, quarantined defects, blocking checks, schema evolution."""

import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterInstance, asset

from ecom_assets.contract import CONTRACTS
from ecom_assets.defs.assets import RETRY_ON_FAILURE_TAG
from ecom_assets.defs.checks import CHECKS
from ecom_assets.ingest import reader
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import OMIT, SandboxServer
from ecom_assets_tests.support import (
    Sync,
    day,
    partition_key,
    rows,
    sync_reading_an_older_copy,
)

PAYMENTS = AssetKey(["ecom", "order_payments"])
PRODUCTS = AssetKey(["ecom", "products"])


@asset(deps=[PAYMENTS])
def payments_report() -> None:
    """Stands for anything downstream that must never consume a bad load."""


def evaluations(result) -> dict[tuple[str, str], object]:
    return {
        (e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()
    }


def column_types(database: Path, table: str) -> dict[str, tuple[str, bool]]:
    return {
        name: (data_type, nullable == "YES")
        for name, data_type, nullable in rows(
            database,
            "select column_name, data_type, is_nullable from information_schema.columns "
            "where table_schema = 'ecom' and table_name = ?",
            table,
        )
    }


def test_duckdb_types_and_not_null_constraints_equal_the_contract(
    sync: Sync, duckdb_path: Path
) -> None:
    assert sync(partition_key(1)).success

    for contract in CONTRACTS.values():
        actual = column_types(duckdb_path, contract.name)
        for field in contract.fields:
            assert actual[field.name] == (field.type.sql_type("duckdb"), field.nullable), field.name


@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=1000, days=5, unknown_fields=False)])
def test_a_clean_load_passes_every_check_and_the_instance_records_them(
    sync: Sync, instance: DagsterInstance
) -> None:
    result = sync(partition_key(1))

    assert result.success
    results = evaluations(result)
    assert len(results) == len(CONTRACTS) * len(CHECKS)
    assert all(e.passed for e in results.values()), [k for k, e in results.items() if not e.passed]
    # What the UI reads: the latest evaluation of each check, from the instance.
    key = AssetCheckKey(PAYMENTS, "reconciled_with_vendor")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    evaluation = record.event.asset_check_evaluation
    assert evaluation.passed
    assert evaluation.metadata["rows_written"].value == evaluation.metadata["vendor_total"].value


DEFECTS = [
    pytest.param({"customer_id": None}, "customer_id", "required field is null", id="null"),
    pytest.param({"amount": "twelve"}, "amount", "not a decimal", id="unconvertible"),
    pytest.param({"amount": {"value": 12}}, "amount", "got an object", id="type-change"),
    pytest.param({"created_at": "yesterday"}, "created_at", "not an RFC 3339", id="bad-time"),
    pytest.param(
        {"created_at": "20260102T100000Z"}, "created_at", "not an RFC 3339", id="iso-basic-time"
    ),
    pytest.param({"updated_at": None}, "updated_at", "required field is null", id="null-cursor"),
    pytest.param(
        {"updated_at": "2026-W01-5T10:00:00Z"}, "updated_at", "not an RFC 3339",
        id="malformed-cursor",
    ),
    pytest.param({"id": OMIT}, "id", "required field is missing", id="missing-id"),
    pytest.param(
        {"status": "chargeback"}, "status",
        "'chargeback' is not one of failed, pending, refunded, succeeded", id="outside-enum",
    ),
]


@pytest.mark.parametrize(("defect", "field", "reason"), DEFECTS)
def test_a_defective_record_is_quarantined_its_page_still_loads_and_downstream_stops(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, defect, field, reason
) -> None:
    served = sandbox.dataset.records("order_payments", day(1), day(2))
    victim = served[150]  # on the second page
    sandbox.corrupt("order_payments", victim["id"], **defect)

    result = sync(partition_key(1), resources=("order_payments",), downstream=[payments_report])

    assert not result.success
    # The valid records, the victim's page-mates included, are loaded; the victim is not.
    loaded = {r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")}
    assert loaded == {r["id"] for r in served} - {victim["id"]}
    # The victim is in quarantine with the reason, its raw record and its window.
    quarantined = rows(
        duckdb_path,
        "select record_id, violations, raw_record, window_start from "
        "ecom.order_payments_quarantine",
    )
    assert len(quarantined) == 1
    record_id, violations, raw_record, window_start = quarantined[0]
    assert record_id == (None if field == "id" else victim["id"])
    [violation] = json.loads(violations)
    assert violation["field"] == field and reason in violation["reason"]
    assert json.loads(raw_record)["order_id"] == victim["order_id"]
    assert window_start == day(1)
    # Nothing silently dropped: loaded + quarantined = what the vendor served.
    [materialization] = result.asset_materializations_for_node("ecom_vendor_sync")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["records_loaded"] + metadata["records_quarantined"] == len(served)
    assert (metadata["records_loaded"], metadata["records_quarantined"]) == (len(loaded), 1)
    # The blocking checks fail with ERROR severity and nothing downstream runs.
    results = evaluations(result)
    failed = results[("order_payments", "no_quarantined_records")]
    assert not failed.passed and failed.severity == AssetCheckSeverity.ERROR
    assert failed.metadata["sample_ids"].value == ("none" if field == "id" else victim["id"])
    # Nothing the vendor listed is missing: the victim is in quarantine.
    assert results[("order_payments", "reconciled_with_vendor")].passed
    assert results[("order_payments", "schema_types")].passed, "the column was never widened"
    assert result.asset_materializations_for_node("payments_report") == []
    assert column_types(duckdb_path, "order_payments")["amount"] == ("DECIMAL(18,2)", False)
    # Fetching again brings the same defect: the daemon's run retries leave this run failed.
    assert sync.instance.get_run_by_id(result.run_id).tags[RETRY_ON_FAILURE_TAG] == "false"


def test_an_unknown_field_becomes_a_column_and_the_warn_check_lists_it(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    records = sandbox.dataset.records("products", day(1), day(2))
    victim, other = records[3], records[4]
    sandbox.corrupt("products", victim["id"], loyalty_tier="gold")
    sandbox.corrupt("products", other["id"], loyalty_tier={"level": 2})

    result = sync(partition_key(1), resources=("products",), downstream=[])

    assert result.success, "a WARN check does not block"
    assert RETRY_ON_FAILURE_TAG not in sync.instance.get_run_by_id(result.run_id).tags
    tiers = dict(rows(duckdb_path, "select id, loyalty_tier from ecom.products"))
    # Kept as they came: a string as itself, anything else as its JSON text.
    assert (tiers[victim["id"]], tiers[other["id"]]) == ("gold", '{"level": 2}')
    check = evaluations(result)[("products", "known_fields_only")]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["unknown_fields_this_run"].value == "loyalty_tier"


def test_a_field_the_contract_does_not_know_keeps_its_column_in_every_later_load(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    first = sandbox.dataset.records("order_payments", day(1), day(2))[3]
    second = sandbox.dataset.records("order_payments", day(2), day(3))[3]
    sandbox.corrupt("order_payments", first["id"], fraudScore="0.10")
    assert sync(partition_key(1), resources=("order_payments",)).success
    # A later day brings the field again, beside a new one whose name its column has.
    sandbox.corrupt("order_payments", second["id"], fraudScore="0.20", fraud_score="high")

    result = sync(partition_key(2), resources=("order_payments",))

    assert result.success, "a WARN check does not block"
    loaded = {
        record_id: values for record_id, *values in rows(
            duckdb_path, "select id, fraud_score, vendor_fraud_score from ecom.order_payments"
        )
    }
    # Each column holds one vendor field in every row: fraudScore, then fraud_score.
    assert loaded[first["id"]] == ["0.10", None]
    assert loaded[second["id"]] == ["0.20", "high"]
    check = evaluations(result)[("order_payments", "known_fields_only")]
    assert check.metadata["unknown_fields_this_run"].value == (
        "fraudScore -> fraud_score, fraud_score -> vendor_fraud_score"
    )


def test_a_full_refresh_keeps_the_column_of_each_unknown_field_for_the_loads_after_it(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    first, second = (
        sandbox.dataset.records("order_payments", day(n), day(n + 1))[3] for n in (1, 2)
    )
    # Two spellings of one new field: the refresh gives the second a numbered column.
    sandbox.corrupt("order_payments", first["id"], customerId="cus-a", **{"customer-id": "cus-b"})
    assert sync(partition_key(1), resources=("order_payments",),
                config={"full_refresh": True}).success
    sandbox.corrupt("order_payments", second["id"], customerId="cus-c")

    assert sync(partition_key(2), resources=("order_payments",)).success

    loaded = {
        record_id: values for record_id, *values in rows(
            duckdb_path,
            "select id, vendor_customer_id, vendor_customer_id_2 from ecom.order_payments",
        )
    }
    assert loaded[first["id"]] == ["cus-b", "cus-a"]
    assert loaded[second["id"]] == [None, "cus-c"], "customerId in its own column"


def test_an_older_copy_of_a_record_read_by_a_later_run_never_overwrites_the_newer_row(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    record, result = sync_reading_an_older_copy(sync, sandbox)

    assert not result.success
    [(amount, updated_at)] = rows(
        duckdb_path, "select amount, updated_at from ecom.order_payments where id = ?",
        record["id"],
    )
    assert amount != Decimal("1.00") and updated_at >= day(2), "the newer row stays"
    [(violations,)] = rows(
        duckdb_path, "select violations from ecom.order_payments_quarantine where record_id = ?",
        record["id"],
    )
    assert "the table holds a later version of this id" in json.loads(violations)[0]["reason"]
    results = evaluations(result)
    assert not results[("order_payments", "no_quarantined_records")].passed
    assert results[("order_payments", "reconciled_with_vendor")].passed


def test_a_full_refresh_decides_a_twin_by_its_window_whatever_the_table_holds(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refresh reads its window in parts of a few days, as it reads a large shop: the two
    # copies lie in two parts (within one, both would go to quarantine).
    monkeypatch.setattr(reader, "MAX_UNIT_RECORDS", 200)
    monkeypatch.setattr(reader, "SPLIT_TARGET_RECORDS", 150)
    record = sandbox.dataset.records("order_payments", day(1), day(2))[3]
    later = sandbox.dataset.records("order_payments", day(2), day(3))[5]["updated_at"]
    sandbox.duplicate("order_payments", record["id"], amount="1.00", updated_at=later)
    # Read alone, the later copy looks like any record of its day.
    assert sync(partition_key(2), resources=("order_payments",)).success

    sync(partition_key(1), resources=("order_payments",), config={"full_refresh": True})

    # Both copies lie in the refresh's window: the copy filed first loads, as in any window.
    [(amount,)] = rows(
        duckdb_path, "select amount from ecom.order_payments where id = ?", record["id"]
    )
    assert amount != Decimal("1.00")
    [(violations,)] = rows(
        duckdb_path, "select violations from ecom.order_payments_quarantine where record_id = ?",
        record["id"],
    )
    assert "duplicate id" in json.loads(violations)[0]["reason"]


def test_the_reconciliation_counts_only_the_runs_window(
    sync: Sync, sandbox: SandboxServer
) -> None:
    assert sync(partition_range=(partition_key(0), partition_key(3)), resources=("products",))

    result = sync(partition_key(1), resources=("products",))

    assert result.success
    total = evaluations(result)[("products", "reconciled_with_vendor")]
    one_day = len(sandbox.dataset.records("products", day(1), day(2)))
    assert total.metadata["vendor_total"].value == one_day
    assert total.metadata["rows_written"].value == one_day
    assert total.metadata["rows_in_window"].value == one_day
    assert len(sandbox.dataset.records("products", day(0), day(4))) > one_day


def test_the_table_checks_fail_when_the_table_breaks_the_contract(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    assert sync(partition_key(1), resources=("order_payments",)).success
    # What a bad manual fix or another writer could do to the table.
    with duckdb.connect(str(duckdb_path)) as connection:
        connection.execute("alter table ecom.order_payments add column amount__v_text varchar")
        connection.execute("alter table ecom.order_payments alter column currency drop not null")
        connection.execute(
            "insert into ecom.order_payments by name select * replace "
            "('pay_tampered' as id, null as currency) from ecom.order_payments limit 1"
        )
        for _ in range(2):  # one id twice, on a day outside the run's window
            connection.execute(
                "insert into ecom.order_payments by name select * replace "
                "('pay_twice' as id, timestamptz '2026-01-01 12:00:00+00' as updated_at) "
                "from ecom.order_payments limit 1"
            )

    result = sync(partition_key(1), resources=("order_payments",))

    assert not result.success
    results = evaluations(result)
    for check in ("schema_types", "not_null", "unique_id"):
        evaluation = results[("order_payments", check)]
        assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR, check
    problems = results[("order_payments", "schema_types")].metadata["problems"].value
    assert "amount__v_text: dlt variant column" in problems
    assert "currency: nullable=True, contract says False" in problems
    assert results[("order_payments", "not_null")].metadata["nulls_by_column"].value == (
        "currency: 1"
    )
    assert results[("order_payments", "unique_id")].metadata["duplicate_ids"].value == 1
