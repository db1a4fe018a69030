"""Defective records and a busy warehouse: every record lands or is quarantined, no window fails.

One test per defect the contract names; each shows what the user sees (rows, quarantine, check
metadata, the run's message) and that no record silently disappears.
"""

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from simplejson import RawJSON

from ecom_assets.ingest import Warehouse
from ecom_assets.ingest.warehouse import _wait_for_release
from ecom_assets.sandbox import Twice
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests.support import (
    Sync,
    check_evaluations,
    day,
    failure_message,
    money,
    partition_key,
    rows,
)

PAYMENTS = ("order_payments",)




def loaded_ids(database: Path) -> set[str]:
    return {r[0] for r in rows(database, "select id from ecom.order_payments")}


def window_ids(sandbox: SandboxServer) -> set[str]:
    return {r["id"] for r in sandbox.dataset.records("order_payments", day(1), day(2))}


@pytest.mark.parametrize(
    ("fields", "reason", "raw_fragment"),
    [
        ({"amount": float("nan")}, "not a finite number", '"amount": NaN'),
        ({"amount": float("inf")}, "not a finite number", '"amount": Infinity'),
        ({"amount": float("-inf")}, "not a finite number", '"amount": -Infinity'),
        # Values Python would take that the contract does not; the new field's lone surrogate
        # must not keep the record from quarantine either.
        ({"amount": "1_000.50", "note": "\ud800"},
         "not a decimal string with at most 2 fractional digits", '"amount": "1_000.50"'),
        ({"customer_id": "cus_\ud800", "note": "\ud800"}, "not valid Unicode: a lone surrogate",
         '"customer_id": "cus_\\ud800"'),
        ({"id": "pay_\ud800", "note": "\ud800"}, "not valid Unicode: a lone surrogate",
         '"id": "pay_\\ud800"'),
        ({"customer_id": "cus_\x00X"}, "a NUL character", '"customer_id": "cus_\\u0000X"'),
        # Beyond the range of Python's decimal arithmetic.
        ({"amount": Decimal("1E+1000000")}, "out of range for DECIMAL(18,2): 1E+1000000",
         '"amount": 1E+1000000'),
        # Valid either way: a reader keeping the last value would load 12.5 without a word.
        ({"amount": Twice(10, Decimal("12.5"))}, "named twice in the record, with different",
         '"amount": 10, "amount": 12.5'),
        ({"meta": RawJSON('{"source":"a","source":"b"}')},
         "holds an object that names a key twice", '"meta": {"source": "a", "source": "b"}'),
    ],
    ids=["nan", "inf", "-inf", "money-string-off-the-contract", "lone-surrogate",
         "lone-surrogate-in-the-id", "nul", "money-beyond-decimal-arithmetic",
         "a-field-named-twice", "an-object-naming-a-key-twice"],
)
def test_a_defective_value_is_quarantined_and_the_window_loads(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, fields: dict, reason: str,
    raw_fragment: str,
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"], **fields)

    result = sync(partition_key(1), resources=PAYMENTS)

    assert loaded_ids(duckdb_path) == window_ids(sandbox) - {victim["id"]}
    [(violations, raw)] = rows(
        duckdb_path, "select violations, raw_record from ecom.order_payments_quarantine"
    )
    assert json.loads(violations)[0]["reason"].startswith(reason)
    assert raw_fragment in raw
    assert not check_evaluations(result)["no_quarantined_records"].passed
    assert check_evaluations(result)["reconciled_with_vendor"].passed


def test_a_record_echoing_the_key_is_stored_without_it(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, api_key: str, tmp_path: Path
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"],
                    source=f"GET /v1/order_payments?api_key={api_key}", note=f"key {api_key}",
                    **{f"api_key={api_key}": "a field named after the key"})

    result = sync(partition_key(1), resources=PAYMENTS)

    assert result.success and loaded_ids(duckdb_path) == window_ids(sandbox)
    assert rows(duckdb_path, "select source, note from ecom.order_payments where id = ?",
                victim["id"]) == [("GET /v1/order_payments?api_key=***", "key ***")]
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert [str(path) for path in files if api_key.encode() in path.read_bytes()] == []


def test_a_field_named_twice_is_quarantined_without_the_key_either_copy_echoes(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, api_key: str, tmp_path: Path
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"],
                    source=Twice(f"GET /v1/order_payments?api_key={api_key}", "web"))

    sync(partition_key(1), resources=PAYMENTS)

    assert loaded_ids(duckdb_path) == window_ids(sandbox) - {victim["id"]}
    [(raw,)] = rows(duckdb_path, "select raw_record from ecom.order_payments_quarantine")
    assert '"source": "GET /v1/order_payments?api_key=***", "source": "web"' in raw
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert [str(path) for path in files if api_key.encode() in path.read_bytes()] == []


def test_a_non_finite_number_in_an_unknown_field_is_kept_as_text_and_reported(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"], fraud_score=float("nan"))

    result = sync(partition_key(1), resources=PAYMENTS)

    assert result.success, "a WARN check only"
    assert loaded_ids(duckdb_path) == window_ids(sandbox)
    assert rows(duckdb_path, "select fraud_score from ecom.order_payments where id = ?",
                victim["id"]) == [("NaN",)]
    known = check_evaluations(result)["known_fields_only"]
    assert known.metadata["non_finite_values_kept_as_text"].value == "fraud_score: 1"


@pytest.mark.parametrize("name", ["note\ud800", "note\x00"], ids=["lone-surrogate", "nul"])
def test_an_unknown_field_whose_name_cannot_be_stored_gets_a_column(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, name: str
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"], **{name: "kept"})

    result = sync(partition_key(1), resources=PAYMENTS)
    again = sync(partition_key(1), resources=PAYMENTS)  # the column recorded is found again

    assert result.success and again.success and loaded_ids(duckdb_path) == window_ids(sandbox)
    assert rows(duckdb_path, "select notex from ecom.order_payments where id = ?",
                victim["id"]) == [("kept",)]
    assert "notex" in check_evaluations(again)["known_fields_only"].metadata[
        "unknown_fields_this_run"].value


@pytest.mark.parametrize(("field", "value", "stored"), [
    # A lone surrogate or a NUL in an unknown field: kept as its escape.
    ("note", "a\ud800b", "a\\ud800b"), ("note", "a\x00b", "a\\u0000b"),
    # Money written with an exponent: its value in cents.
    ("amount", Decimal("0E+17"), Decimal("0.00")),
    ("amount", Decimal("1.25E+3"), Decimal("1250.00")),
], ids=["lone-surrogate", "nul", "money-0E+17", "money-1.25E+3"])
def test_a_value_sent_in_another_form_loads_as_what_it_stands_for(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, field: str, value: object,
    stored: object,
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"], **{field: value})

    result = sync(partition_key(1), resources=PAYMENTS)

    assert result.success and loaded_ids(duckdb_path) == window_ids(sandbox)
    assert rows(duckdb_path, f"select {field} from ecom.order_payments where id = ?",
                victim["id"]) == [(stored,)]


def test_twin_spellings_of_contract_fields_get_their_own_columns(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt(
        "order_payments", victim["id"], customerId="CUS-X", ID="X-1", **{"updated-at": "x"}
    )

    result = sync(partition_key(1), resources=PAYMENTS)

    assert result.success
    assert loaded_ids(duckdb_path) == window_ids(sandbox)
    [row] = rows(
        duckdb_path,
        "select customer_id, vendor_customer_id, vendor_id, vendor_updated_at "
        "from ecom.order_payments where id = ?", victim["id"],
    )
    assert row == (victim["customer_id"], "CUS-X", "X-1", "x")
    known_fields = check_evaluations(result)["known_fields_only"]
    mapping = known_fields.metadata["unknown_fields_this_run"].value
    assert mapping == "ID -> vendor_id, customerId -> vendor_customer_id, " \
        "updated-at -> vendor_updated_at"


def test_a_field_without_a_name_is_kept_without_a_traceback(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"], **{"": "nameless"})

    result = sync(partition_key(1), resources=PAYMENTS)

    assert result.success
    assert rows(duckdb_path, "select vendor_field from ecom.order_payments where id = ?",
                victim["id"]) == [("nameless",)]


@pytest.mark.parametrize(
    ("position", "copy"),
    [
        (99, {"amount": "1.00"}),  # a page boundary
        (10, {"amount": "1.00", "updated_at": "2026-01-02T20:00:00.000Z"}),
    ],
    ids=["next-to-it", "filed-hours-later"],
)
def test_an_id_served_twice_with_different_content_quarantines_both_and_blocks(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, position: int, copy: dict
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[position]
    sandbox.duplicate("order_payments", victim["id"], **copy)

    result = sync(partition_key(1), resources=PAYMENTS)

    assert not result.success
    assert loaded_ids(duckdb_path) == window_ids(sandbox) - {victim["id"]}
    quarantined = rows(
        duckdb_path, "select record_id, violations from ecom.order_payments_quarantine"
    )
    assert [r[0] for r in quarantined] == [victim["id"]] * 2
    assert all("duplicate id" in json.loads(v)[0]["reason"] for _, v in quarantined)
    assert not check_evaluations(result)["no_quarantined_records"].passed
    assert check_evaluations(result)["reconciled_with_vendor"].passed


# A day of about 6,000 records is read in parts of at most 5,000. The copy is filed late on
# 2026-01-02: in another part of the first copy's day, or on the next day of a backfill.
@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=12_000, days=2)])
@pytest.mark.parametrize("first_day", [1, 0], ids=["same-day", "next-day"])
def test_twins_in_two_parts_of_a_window_load_the_first_quarantine_the_other_and_block(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, first_day: int
) -> None:
    victim = sandbox.dataset.records("order_payments", day(first_day), day(2))[10]
    sandbox.duplicate("order_payments", victim["id"], amount="1.00",
                      updated_at="2026-01-02T20:00:00.000Z")

    result = sync(partition_range=(partition_key(first_day), partition_key(1)),
                  resources=PAYMENTS)

    assert not result.success
    assert loaded_ids(duckdb_path) == {
        r["id"] for r in sandbox.dataset.records("order_payments", day(first_day), day(2))
    }
    [(amount,)] = rows(
        duckdb_path, "select amount from ecom.order_payments where id = ?", victim["id"]
    )
    [(raw, violations)] = rows(
        duckdb_path, "select raw_record, violations from ecom.order_payments_quarantine"
    )
    assert amount == money(victim["amount"]), "the copy filed first"
    assert json.loads(raw)["amount"] == "1.00"
    assert json.loads(violations)[0]["reason"] == (
        "duplicate id: the vendor also served this id, with other content, filed earlier in "
        "the window; only the copy filed first can be loaded"
    )
    evaluations = check_evaluations(result)
    assert not evaluations["no_quarantined_records"].passed
    assert evaluations["reconciled_with_vendor"].passed


def test_a_defective_record_seen_by_many_runs_is_one_quarantine_row(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    victim = sandbox.dataset.records("order_payments", day(1), day(2))[5]
    sandbox.corrupt("order_payments", victim["id"], amount="twelve")

    sync(partition_key(1), resources=PAYMENTS)
    [(first_seen, last_seen)] = rows(
        duckdb_path, "select first_seen_at, last_seen_at from ecom.order_payments_quarantine"
    )
    sync(partition_key(1), resources=PAYMENTS)
    sync(partition_range=(partition_key(0), partition_key(2)), resources=PAYMENTS)

    [(first_again, last_again)] = rows(
        duckdb_path, "select first_seen_at, last_seen_at from ecom.order_payments_quarantine"
    )
    assert first_again == first_seen and last_again > last_seen


HOLD_DUCKDB = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1], read_only=sys.argv[3] == "read-only")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_duckdb(database: Path, seconds: float, mode: str = "read-write") -> subprocess.Popen:
    """Another process (a user's duckdb shell, a BI tool) holding the warehouse file."""
    database.parent.mkdir(parents=True, exist_ok=True)
    if mode == "read-only":
        duckdb.connect(str(database)).close()  # a read-only connection needs the file
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DUCKDB, str(database), str(seconds), mode],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_run_waits_for_another_process_to_release_duckdb_then_loads(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, caplog
) -> None:
    holder = hold_duckdb(duckdb_path, 3)
    started = time.monotonic()

    result = sync(partition_key(1), resources=PAYMENTS)

    holder.wait()
    assert result.success and time.monotonic() - started >= 2
    assert f"(PID {holder.pid})" in caplog.text and "to release" in caplog.text
    assert loaded_ids(duckdb_path) == window_ids(sandbox)


@pytest.mark.parametrize("mode", ["read-write", "read-only"])
def test_a_run_fails_naming_the_process_that_keeps_duckdb(
    sandbox: SandboxServer, duckdb_path: Path, vendor_env: None, instance, mode: str
) -> None:
    holder = hold_duckdb(duckdb_path, 30, mode)
    try:
        result = Sync(instance, duckdb_path, duckdb_lock_wait_seconds=2)(
            partition_key(1), resources=PAYMENTS
        )
    finally:
        holder.kill()

    message = failure_message(result)
    assert f"(PID {holder.pid}) and was not released within 2 s" in message
    assert "ECOM_DUCKDB_LOCK_WAIT_SECONDS" in message and "duckdb -readonly" in message


def test_a_waiting_run_opens_duckdb_when_the_holder_lets_go_not_at_every_poll(
    duckdb_path: Path, tmp_path: Path, monkeypatch
) -> None:
    # A failed open costs DuckDB about 7 ms of CPU. The run asks the operating system instead,
    # which costs microseconds, every millisecond: it opens the file in the moment a reader
    # that reopens it at once lets go of it.
    holder = hold_duckdb(duckdb_path, 2, "read-only")
    opened: list[str] = []
    connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda path: opened.append(path) or connect(path))

    Warehouse(duckdb_path=duckdb_path, pipelines_dir=tmp_path / "dlt")._open_when_free().close()

    holder.wait()
    assert len(opened) == 2  # refused while held, then opened


def test_a_wait_for_a_file_that_is_gone_leaves_it_to_duckdb(tmp_path: Path) -> None:
    # Removed between DuckDB's refusal and the wait (a user deleting the warehouse): the next
    # `duckdb.connect` opens or reports it, rather than the wait failing with an error of its own.
    _wait_for_release(tmp_path / "gone.duckdb", until=time.monotonic() + 60)


KEEP_READING_DUCKDB = """
import sys, time, duckdb
while True:  # a dashboard refreshing: whenever it can open the file, it reads for a while
    try:
        with duckdb.connect(sys.argv[1], read_only=True):
            time.sleep(0.5)
        # and opens it again at once: the file is free for a moment only
    except duckdb.Error:
        time.sleep(0.01)
"""


def test_a_reader_polling_the_warehouse_cannot_take_it_from_a_run_that_writes(
    sandbox: SandboxServer, duckdb_path: Path, vendor_env: None, instance
) -> None:
    # At most 10 s of waiting (the fixture's 60 s would only make a failure slower): a run
    # that tried to open the file every half second missed its free moments for minutes on a
    # loaded machine.
    sync = Sync(instance, duckdb_path, duckdb_lock_wait_seconds=10)
    sync(partition_key(0), resources=PAYMENTS)  # the file exists for the reader to open
    reader = subprocess.Popen([sys.executable, "-c", KEEP_READING_DUCKDB, str(duckdb_path)])
    try:
        results = [sync(partition_key(day), resources=PAYMENTS) for day in (1, 2)]
    finally:
        reader.kill()

    assert [failure_message(r) for r in results if not r.success] == []
    assert loaded_ids(duckdb_path) >= window_ids(sandbox)
