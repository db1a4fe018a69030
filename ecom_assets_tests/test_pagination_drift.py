"""Records updated while a window is paged: offsets shift, yet no record goes missing."""

from pathlib import Path

from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.conftest import Sync, day, failure_message, partition_key, rows


def test_a_record_moving_mid_window_makes_the_window_paged_again_and_nothing_is_missed(
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

    result = sync(partition_key(1), resources=("order_payments",))

    ids = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert len(ids) == len(set(ids)), "the second pass left no duplicates"
    assert set(ids) == {r["id"] for r in window}, "every record of the window is there"
    assert "paging the window again from offset 0" in caplog.text
    [materialization] = result.asset_materializations_for_node("ecom_vendor_sync")
    assert materialization.metadata["vendor_total"].value == len(window) - 1
    # The table still holds the moved record's version from before the update (its new version
    # is today's partition's to load), and the reconciliation says so.
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["matches_vendor_total"].metadata["difference"].value == 1
    others = set(checks) - {"matches_vendor_total", "known_fields_only"}  # the last one WARNs
    assert all(checks[name].passed for name in others)


def test_a_window_that_never_holds_still_fails_with_a_clear_error(
    sync: Sync, sandbox: SandboxServer
) -> None:
    window = sandbox.dataset.records("order_payments", day(1), day(2))

    def move_one() -> None:
        record = window[len(sandbox.request_log) % 50]
        sandbox.update_now("order_payments", record["id"])

    # Every page request moves another record of the window.
    sandbox.faults.add("order_payments", Fault.act(move_one), times=100)

    result = sync(partition_key(1), resources=("order_payments",))

    assert not result.success
    assert "did not hold still over 3 passes" in failure_message(result)


def test_a_page_repeating_ids_of_another_is_paged_again_and_nothing_is_missed(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    window = sandbox.dataset.records("order_payments", day(1), day(2))
    # One page comes back with the first page's records instead of its own, `total` intact:
    # the records counted add up, the ids do not.
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.body({"data": window[:100], "total": len(window)}))

    result = sync(partition_key(1), resources=("order_payments",))

    assert result.asset_materializations_for_node("ecom_vendor_sync")
    ids = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert sorted(ids) == sorted(r["id"] for r in window)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["matches_vendor_total"].passed
