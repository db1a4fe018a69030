"""A live shop: records keep changing while every run reads them, and nothing is ever lost.

The sandbox changes random records at a set rate (each change moves the record's `updated_at` to
now, so it leaves its window and the records behind it shift one offset), the way a busy shop's
API does all day.
"""

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import ExecuteInProcessResult

from ecom_assets.contract import CONTRACTS, parse_timestamp
from ecom_assets.ingest.full_refresh import StagedRefresh
from ecom_assets.ingest.pages import MAX_PAGE_SIZE
from ecom_assets.ingest.reader import EMPTY_PASSES, WindowReader
from ecom_assets.ingest.window import look_back
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import OMIT, Fault, SandboxServer
from ecom_assets_tests.support import (
    Sync,
    check_evaluations,
    checks_passed,
    day,
    failure_message,
    money,
    rows,
    utc_today,
    vendor_ids,
)

RESOURCE = ("order_payments",)


@pytest.fixture
def live_shop(request, api_key: str, monkeypatch, duckdb_path: Path) -> Iterator[SandboxServer]:
    spec, rate = request.param
    with SandboxServer(spec, api_key=api_key, changes_per_second=rate).start() as server:
        monkeypatch.setenv("ECOM_API_BASE_URL", server.base_url)
        monkeypatch.setenv("ECOM_API_KEY", api_key)
        yield server




def vendor_rows(sandbox: SandboxServer, since=None, before=None) -> dict[str, tuple]:
    return {
        r["id"]: (money(r["amount"]), r["updated_at"])
        for r in sandbox.window("order_payments", since, before)
    }


def table_rows(database: Path) -> dict[str, tuple]:
    return {
        record_id: (amount, updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        for record_id, amount, updated_at in rows(
            database, "select id, amount, updated_at from ecom.order_payments"
        )
    }




# 30 days of 5,000 order payments each, while 100 records a second change: enough for some
# parts of the window to move while they are paged, however fast the machine reads them
# (about 10 parts in a run of 10 s; at 10 a second, 1 to 3, and none in one CI run).
BACKFILL = SandboxSpec.recent(days=30, size=150_000)


@pytest.mark.parametrize("live_shop", [(BACKFILL, 100)], indirect=True)
def test_a_30_day_backfill_succeeds_while_records_change_and_converges_to_the_vendor(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path
) -> None:
    first_day = BACKFILL.start.strftime("%Y-%m-%d")

    result = sync(partition_range=(first_day, utc_today()), resources=RESOURCE)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert all(checks_passed(result).values()), checks_passed(result)
    # One materialization per partition of the range, with the run's numbers.
    materialization = result.asset_materializations_for_node("ecom_vendor_sync")[0]
    assert materialization.metadata["window_parts_paged_again"].value > 0, "records moved"
    # Once the shop is quiet, a refresh of today brings the records that moved there.
    with live_shop.live.paused():
        assert sync(utc_today(), resources=RESOURCE).success
        assert table_rows(duckdb_path) == vendor_rows(live_shop)


# One busy day of 20,000 records, 2 of which change every second.
BUSY_DAY = SandboxSpec(size=20_000, days=1)


@pytest.mark.parametrize("live_shop", [(BUSY_DAY, 2)], indirect=True)
def test_a_busy_day_is_read_whole_while_records_change(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path
) -> None:
    day = BUSY_DAY.start.strftime("%Y-%m-%d")

    result = sync(day, resources=RESOURCE)

    assert result.success
    assert checks_passed(result)["reconciled_with_vendor"]
    # Every record the vendor still files under that day is in the table, in that version.
    in_day = vendor_rows(live_shop, BUSY_DAY.start, BUSY_DAY.start + timedelta(days=1))
    loaded = table_rows(duckdb_path)
    assert {i: loaded.get(i) for i in in_day} == in_day


# A shop whose every record is today's: each change hits a record today's runs load.
@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=1, size=3_000), 10)],
                         indirect=True)
def test_todays_partition_refreshed_twice_while_records_change_passes_every_check(
    sync: Sync, live_shop: SandboxServer
) -> None:
    for _ in range(2):
        result = sync(utc_today(), resources=RESOURCE)
        assert result.success
        assert all(checks_passed(result).values()), checks_passed(result)
        time.sleep(1)  # records change in between too


@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=5, size=3_000), 10)],
                         indirect=True)
def test_a_full_refresh_that_waits_for_the_writer_lock_loses_no_record_that_changed(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path
) -> None:
    first_day = (datetime.now(UTC) - timedelta(days=4)).strftime("%Y-%m-%d")
    assert sync(partition_range=(first_day, utc_today()), resources=RESOURCE).success
    results = []
    # Another run holds the writer lock for two seconds, while records keep changing.
    with duckdb_path.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        refresh = threading.Thread(target=lambda: results.append(sync(
            partition_range=(first_day, utc_today()), resources=RESOURCE,
            config={"full_refresh": True},
        )))
        refresh.start()
        time.sleep(2)
        fcntl.flock(lock, fcntl.LOCK_UN)
        refresh.join(timeout=120)

    assert results and results[0].success
    with live_shop.live.paused():
        vendor = vendor_rows(live_shop)
        loaded = table_rows(duckdb_path)
    missing = vendor.keys() - loaded.keys()
    assert not missing, f"{len(missing)} records the vendor has are missing"
    assert loaded.keys() <= vendor.keys(), "nothing the vendor does not have"


def test_a_full_refresh_against_a_vendor_that_suddenly_serves_nothing_is_refused(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    assert sync(partition_range=("2026-01-01", "2026-01-05"), resources=RESOURCE).success
    before = rows(duckdb_path, "select * from ecom.order_payments order by id")
    assert len(before) == 1000
    sandbox.serve_empty("order_payments")

    refused = sync("2026-01-01", resources=RESOURCE, config={"full_refresh": True})

    assert not refused.success
    message = failure_message(refused)
    assert "Refusing the full refresh, nothing was replaced: ecom.order_payments: the " \
        "refresh would empty it (1000 of 1000 rows; at most 50% may go" in message
    assert "run config `allow_removing_rows: true`" in message
    assert rows(duckdb_path, "select * from ecom.order_payments order by id") == before

    replaced = sync("2026-01-01", resources=RESOURCE,
                    config={"full_refresh": True, "allow_removing_rows": True})

    assert replaced.success
    assert rows(duckdb_path, "select count(*) from ecom.order_payments") == [(0,)]


def answer_nothing_where(
    patch: pytest.MonkeyPatch, sandbox: SandboxServer, out: Callable[[datetime], bool]
) -> None:
    """An outage: the vendor answers `{"data": [], "total": 0}` for each part of a window whose
    `updated_since` `out` says is out, on every pass."""
    page = sandbox.live.page

    def answering_nothing_where_out(resource, since, before, offset, limit):
        if since and out(datetime.fromisoformat(since)):
            return None
        return page(resource, since, before, offset, limit)

    patch.setattr(sandbox.live, "page", answering_nothing_where_out)


def test_a_full_refresh_keeps_a_record_that_changed_again_while_its_changes_were_read(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync(partition_range=("2026-01-01", "2026-01-05"), resources=RESOURCE).success
    victim = sandbox.dataset.all("order_payments")[10]["id"]
    reset, changes, page = StagedRefresh.reset, StagedRefresh.changes, sandbox.live.page
    rounds = {"resets": 0, "changes": 0, "changed_again": False}
    lock = threading.Lock()

    def change_the_victim() -> None:
        time.sleep(0.002)  # a millisecond past the end of the window being read
        sandbox.update_now("order_payments", victim)

    def reset_then_change(refresh: StagedRefresh) -> None:  # the main read's window is fixed
        reset(refresh)
        rounds["resets"] += 1
        if rounds["resets"] == 1:
            change_the_victim()

    def counted_changes(refresh: StagedRefresh, contracts: list) -> list:
        rounds["changes"] += 1
        return changes(refresh, contracts)

    def changing_again_as_the_first_round_reads(*args) -> dict | None:
        with lock:  # the round's first requests wait for the change
            if rounds["changes"] == 1 and not rounds["changed_again"]:
                rounds["changed_again"] = True
                change_the_victim()
        return page(*args)

    monkeypatch.setattr(StagedRefresh, "reset", reset_then_change)
    monkeypatch.setattr(StagedRefresh, "changes", counted_changes)
    monkeypatch.setattr(sandbox.live, "page", changing_again_as_the_first_round_reads)

    result = sync("2026-01-01", resources=RESOURCE, config={"full_refresh": True})

    assert result.success and rounds["changed_again"]
    assert table_rows(duckdb_path)[victim] == vendor_rows(sandbox)[victim]
    assert rows(duckdb_path, "select count(*) from ecom.order_payments") == [(1000,)]


# 12,000 records are read in parts of at most 5,000; the last day's are under the 50% guard.
@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=12_000, days=4)])
@pytest.mark.parametrize("backfilled", [True, False], ids=["after-a-backfill", "first-load"])
def test_a_full_refresh_while_an_outage_answers_a_day_with_nothing_replaces_nothing(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch: pytest.MonkeyPatch,
    backfilled: bool,
) -> None:
    # The vendor's count of the window shows the records its answers for the last day hide.
    partitions = ("2026-01-01", "2026-01-04")
    table = "select id, amount, updated_at from ecom.order_payments order by id"
    if backfilled:
        assert sync(partition_range=partitions, resources=RESOURCE).success
    before = rows(duckdb_path, table) if backfilled else None
    with monkeypatch.context() as outage:  # the parts of the last day answered empty
        answer_nothing_where(outage, sandbox, lambda since: since >= day(3))
        refreshed = sync(partition_range=partitions, resources=RESOURCE,
                         config={"full_refresh": True})

    assert not refreshed.success
    assert "more than its parts listed" in failure_message(refreshed)
    if backfilled:
        assert rows(duckdb_path, table) == before, "nothing was replaced"
    else:
        with pytest.raises(Exception, match="order_payments"):  # no table: nothing loaded
            rows(duckdb_path, table)


# 12,000 records are read in parts of at most 5,000; the last day's are under the 50% guard.
@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=12_000, days=4)])
def test_a_full_refresh_pages_again_the_parts_an_outage_answered_empty_once_counted(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync(partition_range=("2026-01-01", "2026-01-04"), resources=RESOURCE).success
    table = "select id, amount, updated_at from ecom.order_payments order by id"
    before = rows(duckdb_path, table)
    # An outage answers the parts of the last day with nothing, on every pass, until the
    # reader asks the vendor's count of the window (a request for one record).
    outage, page = {"on": True}, sandbox.live.page

    def nothing_for_the_last_day_until_counted(resource, since, before, offset, limit):
        if limit == 1:
            outage["on"] = False
        if outage["on"] and since and datetime.fromisoformat(since) >= day(3):
            return None
        return page(resource, since, before, offset, limit)

    monkeypatch.setattr(sandbox.live, "page", nothing_for_the_last_day_until_counted)

    refreshed = sync("2026-01-01", resources=RESOURCE, config={"full_refresh": True})

    assert refreshed.success, failure_message(refreshed)
    assert not outage["on"], "the outage lasted through the refresh's read of the window"
    assert rows(duckdb_path, table) == before


@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=12_000, days=4)])
def test_a_sensor_refresh_reads_whole_a_day_that_a_backfill_read_empty(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync(partition_range=("2026-01-01", "2026-01-03"), resources=RESOURCE).success
    with monkeypatch.context() as outage:  # on every pass of the last day's backfill
        answer_nothing_where(outage, sandbox, lambda since: since >= day(3))
        backfill = sync("2026-01-04", resources=RESOURCE)
    assert backfill.success  # the whole day answered empty: nothing to weigh a count against
    [last_day] = backfill.asset_materializations_for_node("ecom_vendor_sync")
    assert last_day.metadata["days_read_empty"].value == ["2026-01-04"]

    # The backfill marked its whole window reconciled; the change sensor's refresh of the
    # last day (a late arrival there) still reads all of that day.
    refresh = sync("2026-01-04", resources=RESOURCE, config={"changes_only": True})

    assert refresh.success
    expected = vendor_ids(sandbox, "order_payments", day(0), day(4))
    assert {r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")} == expected


# 12,000 records in a day: read in parts of at most 5,000.
@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=12_000, days=1)])
def test_a_day_an_outage_answers_empty_in_part_fails_its_run_and_loads_whole_after(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as outage:  # on every pass, all parts but the first
        answer_nothing_where(outage, sandbox, lambda since: since > day(0))
        partly = sync("2026-01-01", resources=RESOURCE)
    # The vendor's count of the day shows the records the parts answered empty hide.
    assert not partly.success
    assert "more than its parts listed" in failure_message(partly)
    table = "select id from ecom.order_payments"
    with pytest.raises(Exception, match="order_payments"):  # no table: nothing loaded
        rows(duckdb_path, table)

    refresh = sync("2026-01-01", resources=RESOURCE)

    assert refresh.success
    expected = vendor_ids(sandbox, "order_payments", day(0), day(1))
    assert {r[0] for r in rows(duckdb_path, table)} == expected


def test_a_millisecond_of_records_that_keep_changing_loads_in_pages_of_a_thousand(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk = int((day(1) + timedelta(hours=5)).timestamp() * 1000)  # a bulk update at 05:00
    crowd = [sandbox.live.create("order_payments", updated_ms=bulk) for _ in range(300)]
    page = sandbox.live.page
    changed: list[str] = []

    def one_changes_as_each_page_of_100_is_read(resource, since, before, offset, limit):
        if limit < MAX_PAGE_SIZE and since and datetime.fromisoformat(since).timestamp() * 1000 \
                <= bulk < datetime.fromisoformat(before).timestamp() * 1000:
            changed.append(crowd[len(changed) % len(crowd)])
            sandbox.update_now("order_payments", changed[-1])
        return page(resource, since, before, offset, limit)

    monkeypatch.setattr(sandbox.live, "page", one_changes_as_each_page_of_100_is_read)

    result = sync("2026-01-02", resources=RESOURCE)

    assert result.success and all(checks_passed(result).values())
    assert changed, "records of the millisecond changed while it was paged"
    loaded = {r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")}
    in_the_day = {r["id"] for r in sandbox.window("order_payments", day(1), day(2))}
    # What changed during the run may be in its earlier version: its change is the next run's.
    assert in_the_day <= loaded and loaded - in_the_day <= set(changed)


def test_a_first_load_outlasts_an_outage_that_answers_every_pass_of_its_day_with_nothing(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    # A fraction of a second of `{"data": [], "total": 0}`: every pass of the day (one part),
    # the pass when the rest is read, and the first count of every record the vendor holds.
    sandbox.faults.add("order_payments", Fault.body({"data": [], "total": 0}),
                       times=EMPTY_PASSES + 2)

    result = sync("2026-01-02", resources=RESOURCE)

    assert result.success and all(checks_passed(result).values())
    assert {r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")} == vendor_ids(
        sandbox, "order_payments", day(1), day(2)
    )


def test_a_day_read_again_while_the_vendor_serves_nothing_fails_and_keeps_its_rows(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    assert sync("2026-01-02", resources=RESOURCE).success
    before = rows(duckdb_path, "select * from ecom.order_payments order by id")
    sandbox.serve_empty("order_payments")  # an outage that outlasts the passes

    result = sync("2026-01-02", resources=RESOURCE)

    assert not result.success
    assert "Blocking checks failed: order_payments reconciled_with_vendor" in failure_message(
        result
    )
    evaluation = check_evaluations(result)["reconciled_with_vendor"]
    assert evaluation.metadata["vendor_holds"].value == 0
    assert (
        f"the vendor answered that it holds no records at all, while the table holds "
        f"{len(before)}: an outage or a misrouted tenant answers so, and nothing was removed"
    ) in evaluation.metadata["problems"].value
    assert rows(duckdb_path, "select * from ecom.order_payments order by id") == before


def test_a_full_refresh_of_both_assets_refuses_to_empty_one_while_the_other_changes(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    assert sync(partition_range=("2026-01-01", "2026-01-05")).success
    products = rows(duckdb_path, "select * from ecom.products order by id")
    sandbox.serve_empty("products")
    # A payment that changes now is read again by the refresh's follow-up round: a second load.
    sandbox.update_now("order_payments", sandbox.window("order_payments")[0]["id"])

    refused = sync("2026-01-01", config={"full_refresh": True})

    assert not refused.success
    assert "Refusing the full refresh, nothing was replaced: ecom.products: the refresh " \
        "would empty it" in failure_message(refused)
    assert rows(duckdb_path, "select * from ecom.products order by id") == products


@pytest.mark.parametrize(("defect", "with_its_id"), [
    ({"amount": "twelve"}, True),
    ({"id": OMIT}, False),  # no id to tell which row it is: no row the refresh missed goes
    ({"id": 749}, False),
], ids=["defective-amount", "id-missing", "id-a-number"])
def test_a_full_refresh_keeps_the_last_valid_row_of_a_record_now_defective(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, defect: dict, with_its_id: bool
) -> None:
    assert sync(partition_range=("2026-01-01", "2026-01-05"), resources=RESOURCE).success
    victim = sandbox.dataset.all("order_payments")[10]
    sandbox.corrupt("order_payments", victim["id"], **defect)

    result = sync("2026-01-01", resources=RESOURCE, config={"full_refresh": True})

    assert not checks_passed(result)["no_quarantined_records"]
    assert checks_passed(result)["reconciled_with_vendor"]
    assert rows(duckdb_path, "select amount from ecom.order_payments where id = ?",
                victim["id"]) == [(money(victim["amount"]),)]
    assert rows(duckdb_path, "select count(*) from ecom.order_payments") == [(1000,)]
    assert rows(duckdb_path, "select record_id from ecom.order_payments_quarantine") == [
        (victim["id"] if with_its_id else None,)
    ]


CHANGES_ONLY = {"changes_only": True}  # the run config of the change sensor's runs


@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=1, size=5_000), 0)],
                         indirect=True)
def test_a_sensor_refresh_reads_only_what_changed_since_the_day_was_reconciled(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path
) -> None:
    # Today's records lie between midnight UTC and now: shortly after midnight, the refresh's
    # look back for late arrivals (10 minutes) would span most of them.
    sync = replace(sync, late_arrival_minutes=0)
    # Without a reconciled mark the sensor's refresh reads the whole day.
    whole = sync(utc_today(), resources=RESOURCE, config=CHANGES_ONLY)
    whole_window = whole.asset_materializations_for_node("ecom_vendor_sync")[0].metadata
    assert whole_window["window"].value.startswith(f"[{utc_today()}T00:00:00.000Z, ")
    changed = live_shop.window("order_payments")[:20]
    for record in changed:
        live_shop.update_now("order_payments", record["id"])

    result = sync(utc_today(), resources=RESOURCE, config=CHANGES_ONLY)

    assert result.success and all(checks_passed(result).values())
    metadata = result.asset_materializations_for_node("ecom_vendor_sync")[0].metadata
    # From the mark less the look-back (the vendor's clocks): the changes and the records the
    # look-back spans, which are most of the day only in its first minutes.
    since, before = metadata["window"].value.strip("[)").split(", ")
    reconciled = datetime.fromtimestamp(whole_window["reconciled_through"].value, UTC)
    assert parse_timestamp(since) == reconciled - look_back(timedelta(0))
    assert metadata["records_received"].value == len(live_shop.window(
        "order_payments", since, before
    ))
    assert {r["id"] for r in changed} <= {r["id"] for r in live_shop.window(
        "order_payments", since, before
    )}
    [(today_rows,)] = rows(duckdb_path, "select count(*) from ecom.order_payments")
    assert metadata["dagster/partition_row_count"].value == today_rows, "the day's, not the read's"
    with live_shop.live.paused():
        assert table_rows(duckdb_path) == vendor_rows(live_shop)


@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=1, size=2_000), 0)],
                         indirect=True)
def test_a_sensor_refresh_reads_a_record_filed_late_by_a_clock_behind_ours(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path
) -> None:
    assert sync(utc_today(), resources=RESOURCE).success
    # Filed 12 minutes back: 10 minutes late (ECOM_LATE_ARRIVAL_MINUTES), by a clock 2 minutes
    # behind ours, before the day's mark of where it was reconciled.
    midnight = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
    filed = max(datetime.now(UTC) - timedelta(minutes=12), midnight + timedelta(seconds=1))
    late = live_shop.live.create("order_payments", int(filed.timestamp() * 1000))

    assert sync(utc_today(), resources=RESOURCE, config=CHANGES_ONLY).success

    assert rows(duckdb_path, "select id from ecom.order_payments where id = ?", late) == [(late,)]


@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=2, size=4_000), 0)],
                         indirect=True)
def test_a_sensor_refresh_across_midnight_reads_yesterday_only_since_it_was_reconciled(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path
) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    days = (yesterday, utc_today())
    whole = sync(partition_range=days, resources=RESOURCE)
    assert whole.success
    for record in live_shop.window("order_payments")[:20]:
        live_shop.update_now("order_payments", record["id"])

    result = sync(partition_range=days, resources=RESOURCE, config=CHANGES_ONLY)

    assert result.success and all(checks_passed(result).values())
    metadata = result.asset_materializations_for_node("ecom_vendor_sync")[0].metadata
    assert not metadata["window"].value.startswith(f"[{yesterday}T00:00:00.000Z, ")
    read_whole = whole.asset_materializations_for_node("ecom_vendor_sync")[0].metadata
    # The look-back's part before the open one is empty: five passes agree on that.
    assert metadata["pages_fetched"].value < read_whole["pages_fetched"].value / 5
    assert table_rows(duckdb_path) == vendor_rows(live_shop)


def sync_losing_a_listed_record(sync: Sync, partition: str, monkeypatch) -> ExecuteInProcessResult:
    """A sync of `partition` of order_payments whose reader counts one record more than it
    passes on, as if one the vendor listed had been lost: it does not reconcile."""
    accept = WindowReader._accept

    def listed_one_more(self, unit, listing, identities, copies) -> None:
        accept(self, unit, listing, identities, copies)
        self.report.listed += 1

    with monkeypatch.context() as patch:
        patch.setattr(WindowReader, "_accept", listed_one_more)
        return sync(partition, resources=RESOURCE)


@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=1, size=2_000), 0)],
                         indirect=True)
def test_a_refresh_that_did_not_reconcile_leaves_the_next_one_to_read_the_whole_day(
    sync: Sync, live_shop: SandboxServer, monkeypatch
) -> None:
    unreconciled = sync_losing_a_listed_record(sync, utc_today(), monkeypatch)
    assert not checks_passed(unreconciled)["reconciled_with_vendor"]

    result = sync(utc_today(), resources=RESOURCE, config=CHANGES_ONLY)

    metadata = result.asset_materializations_for_node("ecom_vendor_sync")[0].metadata
    assert metadata["window"].value.startswith(f"[{utc_today()}T00:00:00.000Z, ")
    assert result.success and all(checks_passed(result).values())


@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=1, size=2_000), 0)],
                         indirect=True)
def test_a_sensor_refresh_reads_whole_only_the_resource_whose_day_was_not_reconciled(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path, monkeypatch
) -> None:
    # Shortly after midnight UTC the look back for late arrivals would reach midnight.
    sync, today = replace(sync, late_arrival_minutes=0), utc_today()
    assert sync(today).success  # both resources reconciled through the run's end
    unreconciled = sync_losing_a_listed_record(sync, today, monkeypatch)
    assert not checks_passed(unreconciled)["reconciled_with_vendor"]
    for resource in CONTRACTS:
        live_shop.update_now(resource, live_shop.window(resource)[0]["id"])

    result = sync(today, config=CHANGES_ONLY)

    assert result.success and all(checks_passed(result).values())
    read = {m.asset_key.path[-1]: m.metadata["window"].value
            for m in result.asset_materializations_for_node("ecom_vendor_sync")}
    midnight = f"[{today}T00:00:00.000Z, "
    assert read["order_payments"].startswith(midnight)
    assert not read["products"].startswith(midnight), "products was reconciled: read its changes"
    [load] = {m.metadata["dlt_load_id"].value
              for m in result.asset_materializations_for_node("ecom_vendor_sync")}
    assert ", " not in load, "one dlt run reads each resource's window"
    with live_shop.live.paused():
        assert table_rows(duckdb_path) == vendor_rows(live_shop)
        [(products,)] = rows(duckdb_path, "select count(*) from ecom.products")
        assert products == len(live_shop.window("products"))


@pytest.mark.parametrize("live_shop", [(SandboxSpec.recent(days=1, size=2_000), 0)],
                         indirect=True)
def test_a_day_read_while_the_vendor_served_nothing_is_read_whole_by_the_next_refresh(
    sync: Sync, live_shop: SandboxServer, duckdb_path: Path
) -> None:
    live_shop.serve_empty("order_payments")  # an outage that outlasts the passes
    during = sync(utc_today(), resources=RESOURCE)
    assert during.success, "an empty answer cannot be told from a day without records"
    marked = during.asset_materializations_for_node("ecom_vendor_sync")[0].metadata
    assert "reconciled_through" not in marked and marked["records_loaded"].value == 0
    live_shop.serve_empty("order_payments", False)

    result = sync(utc_today(), resources=RESOURCE, config=CHANGES_ONLY)

    metadata = result.asset_materializations_for_node("ecom_vendor_sync")[0].metadata
    assert metadata["window"].value.startswith(f"[{utc_today()}T00:00:00.000Z, ")
    assert result.success and all(checks_passed(result).values())
    with live_shop.live.paused():
        assert table_rows(duckdb_path) == vendor_rows(live_shop)
