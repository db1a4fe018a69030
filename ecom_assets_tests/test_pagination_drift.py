"""Records updated while a window is paged: offsets shift, yet no record goes missing."""

import logging
from datetime import UTC, datetime
from pathlib import Path

from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import Sync, day, partition_key, rows


def test_a_record_moving_mid_window_is_read_where_the_vendor_files_it_and_nothing_is_missed(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, caplog
) -> None:
    window = sandbox.dataset.records("order_payments", day(1), day(2))
    moved = window[10]  # on the first page, already fetched when it moves
    # After the first page, a user updates the record: it leaves the window and every record
    # behind it shifts one offset down, so a naive pager skips the record now at offset 99.
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add(
        "order_payments", Fault.act(lambda: sandbox.update_now("order_payments", moved["id"]))
    )

    caplog.set_level(logging.INFO, logger="ecom_assets")
    result = sync(partition_key(1), resources=("order_payments",))

    assert result.success
    assert "the vendor's total changed" in caplog.text and "paging it again" in caplog.text
    ids = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert sorted(ids) == sorted(r["id"] for r in window if r["id"] != moved["id"])
    [materialization] = result.asset_materializations_for_node("ecom_vendor_sync")
    assert materialization.metadata["vendor_total"].value == len(window) - 1
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert all(check.passed for check in checks.values())
    # The vendor now files the record under today: today's partition brings its new version.
    assert sync(datetime.now(UTC).strftime("%Y-%m-%d"), resources=("order_payments",)).success
    [(updated_at,)] = rows(
        duckdb_path, "select updated_at from ecom.order_payments where id = ?", moved["id"]
    )
    assert updated_at.date() == datetime.now(UTC).date()


def test_a_window_changing_on_every_request_is_split_until_it_holds_still(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    window = sandbox.dataset.records("order_payments", day(1), day(2))
    moving = iter(window[::2])
    # Every page request moves another record of the window out of it.
    sandbox.faults.add("order_payments", Fault.act(
        lambda: sandbox.update_now("order_payments", next(moving)["id"])
    ), times=60)

    result = sync(partition_key(1), resources=("order_payments",))

    assert result.success
    remaining = {r["id"] for r in sandbox.window("order_payments", day(1), day(2))}
    loaded = {r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")}
    assert remaining <= loaded, "every record still in the window was read"
    [materialization] = result.asset_materializations_for_node("ecom_vendor_sync")
    assert materialization.metadata["window_parts_paged_again"].value > 0


def test_a_page_repeating_ids_of_another_is_paged_again_and_nothing_is_missed(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    window = sandbox.dataset.records("order_payments", day(1), day(2))
    # One page comes back with the first page's records instead of its own, `total` intact:
    # the records counted add up, the ids do not.
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.body({"data": window[:100], "total": len(window)}))

    result = sync(partition_key(1), resources=("order_payments",))

    assert result.success
    ids = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert sorted(ids) == sorted(r["id"] for r in window)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["reconciled_with_vendor"].passed
