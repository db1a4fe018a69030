"""The change sensor and the daily schedule, evaluated against the sandbox vendor."""

import json
import time as time_module
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from ecom_assets.contract import CONTRACTS, parse_timestamp
from ecom_assets.defs.ecom import build_definitions
from ecom_assets.defs.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from ecom_assets.defs.resources import VendorApiResource
from ecom_assets.ingest import probe
from ecom_assets.ingest.vendor_session import VendorSession
from ecom_assets.ingest.window import floor_ms, look_back, rfc3339
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets.settings import DEFAULTS, read_settings
from ecom_assets_tests.support import Sync, day, partition_key, rows, utc_today, vendor_ids

PAYMENTS, PRODUCTS = AssetKey(["ecom", "order_payments"]), AssetKey(["ecom", "products"])
RESOURCES = tuple(CONTRACTS)
ALL = {AssetKey(["ecom", name]) for name in RESOURCES}
DEFINITIONS = build_definitions(settings=read_settings({"ECOM_PARTITIONS_START": "2026-01-01"}))
SENSOR = DEFINITIONS.resolve_sensor_def("ecom_vendor_changes")
LOOK_BACK = look_back(timedelta(minutes=DEFAULTS.late_arrival_minutes))


@pytest.fixture
def live_sandbox(api_key: str) -> Iterator[SandboxServer]:
    # The shop changes only when the test says so (`live.tick()` or `update_now`).
    with SandboxServer(SandboxSpec.recent(days=2, size=200), api_key=api_key,
                       live_interval_s=3600, live_per_tick=3).start() as server:
        yield server


def evaluate(sandbox: SandboxServer, api_key: str, cursor: str | None) -> SensorResult:
    context = build_sensor_context(
        cursor=cursor,
        resources={"vendor_api": VendorApiResource(
            base_url=sandbox.base_url, api_key=api_key, retry_backoff_factor=0.01
        )},
    )
    return SENSOR(context)




def a_second_ago() -> str:
    return json.dumps({name: {"since": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
                       for name in RESOURCES})


def test_one_run_per_tick_refreshes_what_changed_and_a_tick_evaluated_again_repeats_it(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    quiet = evaluate(live_sandbox, api_key, a_second_ago())
    assert quiet.run_requests == [] and "no changes" in quiet.skip_reason.skip_message

    live_sandbox.live.tick()
    result = evaluate(live_sandbox, api_key, a_second_ago())
    again = evaluate(live_sandbox, api_key, a_second_ago())

    [run] = result.run_requests
    assert run.partition_key == utc_today()
    assert set(run.asset_selection) == ALL, "every resource, one run"
    assert run.tags["ecom/trigger"] == "vendor_changes"
    assert run.run_config == {"ops": {"ecom_vendor_sync": {"config": {"changes_only": True}}}}
    assert [r.run_key for r in again.run_requests] == [run.run_key], "a re-evaluated tick"
    # Later ticks see the same vendor: no run. A new change: a new run.
    assert evaluate(live_sandbox, api_key, result.cursor).run_requests == []
    live_sandbox.live.tick()
    [next_run] = evaluate(live_sandbox, api_key, result.cursor).run_requests
    assert next_run.run_key != run.run_key


def test_a_late_arrival_behind_the_latest_change_reloads_its_day(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    cursor = a_second_ago()
    live_sandbox.live.tick()
    first = evaluate(live_sandbox, api_key, cursor)
    assert first.run_requests
    # A record filed half a second in the past, behind the latest change already seen.
    filed = datetime.now(UTC) - timedelta(milliseconds=500)
    live_sandbox.live.create("products", updated_ms=int(filed.timestamp() * 1000))

    [late] = evaluate(live_sandbox, api_key, first.cursor).run_requests

    assert late.asset_selection == [PRODUCTS] and late.partition_key == utc_today()


def changes_of_a_tick_ago(sandbox: SandboxServer, api_key: str) -> tuple[SensorResult, list]:
    """A tick that saw three new products, filed 300, 200 and 100 ms ago, and those products."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    for ago in (300, 200, 100):
        filed = datetime.now(UTC) - timedelta(milliseconds=ago)
        sandbox.live.create("products", updated_ms=int(filed.timestamp() * 1000))
    seen = evaluate(sandbox, api_key, a_second_ago())
    assert seen.run_requests
    assert evaluate(sandbox, api_key, seen.cursor).run_requests == [], "nothing new"
    return seen, sandbox.window("products", since)


def just_after(record: dict) -> int:
    """The epoch millisecond after the record's `updated_at`."""
    return int(parse_timestamp(record["updated_at"]).timestamp() * 1000) + 1


def a_late_update(sandbox: SandboxServer, products: list) -> None:
    """The oldest product updated again, filed late behind the latest change."""
    sandbox.live.update("products", products[0]["id"], just_after(products[1]))


def a_deletion_and_a_late_arrival(sandbox: SandboxServer, products: list) -> None:
    sandbox.delete("products", products[1]["id"])
    sandbox.live.create("products", updated_ms=just_after(products[0]))


# Neither moves the latest change, nor the count.
@pytest.mark.parametrize("change", [a_late_update, a_deletion_and_a_late_arrival])
def test_a_change_behind_the_latest_one_that_keeps_the_count_reloads_its_day(
    live_sandbox: SandboxServer, api_key: str, change: Callable[[SandboxServer, list], None]
) -> None:
    seen, products = changes_of_a_tick_ago(live_sandbox, api_key)
    change(live_sandbox, products)

    [late] = evaluate(live_sandbox, api_key, seen.cursor).run_requests

    assert late.asset_selection == [PRODUCTS] and late.partition_key == utc_today()


def test_a_tick_evaluated_again_after_a_late_update_gets_a_run_of_its_own(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    seen, products = changes_of_a_tick_ago(live_sandbox, api_key)
    live_sandbox.delete("products", products[1]["id"])
    [before] = evaluate(live_sandbox, api_key, seen.cursor).run_requests
    # The same tick evaluated again (its cursor was not kept) after a late update that keeps
    # the latest change and the count.
    a_late_update(live_sandbox, products)

    [after] = evaluate(live_sandbox, api_key, seen.cursor).run_requests

    assert after.run_key != before.run_key, "Dagster launches a run key once"


def test_an_unchanged_vendor_launches_nothing_whatever_lies_at_the_look_backs_start(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    # A record in every millisecond around where the next tick's listing starts (now less
    # the look-back, kept to the millisecond).
    start = datetime.now(UTC) - timedelta(minutes=15)
    for ms in range(-100, 400):
        live_sandbox.live.create("products", updated_ms=int(start.timestamp() * 1000) + ms)
    cursor = evaluate(live_sandbox, api_key, a_day_ago()).cursor

    for _ in range(3):
        result = evaluate(live_sandbox, api_key, cursor)
        assert result.run_requests == [], result.run_requests
        cursor = result.cursor


def test_a_busy_shops_listing_stops_at_its_first_page_and_refreshes(
    live_sandbox: SandboxServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, _ = changes_of_a_tick_ago(live_sandbox, api_key)  # three products
    monkeypatch.setattr(probe, "PROBE_PAGE_SIZE", 2)
    monkeypatch.setattr(probe, "MAX_LISTED", 2)
    asked = len(live_sandbox.request_log)

    [run] = evaluate(live_sandbox, api_key, seen.cursor).run_requests

    assert run.asset_selection == [PRODUCTS] and run.partition_key == utc_today()
    assert len(live_sandbox.request_log) - asked == len(RESOURCES), "one request per resource"


def test_a_listing_cut_short_by_an_empty_page_launches_nothing_and_is_asked_again(
    live_sandbox: SandboxServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, _ = changes_of_a_tick_ago(live_sandbox, api_key)  # three products
    monkeypatch.setattr(probe, "PROBE_PAGE_SIZE", 2)
    live_sandbox.faults.add("products", Fault.stall(0))  # the first page as it is
    live_sandbox.faults.add("products", Fault.body({"data": [], "total": 0}))

    cut = evaluate(live_sandbox, api_key, seen.cursor)
    again = evaluate(live_sandbox, api_key, cut.cursor)

    assert cut.run_requests == [] and "an empty page after the first" in (
        cut.skip_reason.skip_message
    )
    assert again.run_requests == [], "the vendor did not change"


def test_a_change_stamped_ahead_of_our_clock_is_refreshed_once_its_time_has_come(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    seen, _ = changes_of_a_tick_ago(live_sandbox, api_key)
    ahead = datetime.now(UTC) + timedelta(seconds=1)
    live_sandbox.live.create("products", updated_ms=int(ahead.timestamp() * 1000))

    not_yet = evaluate(live_sandbox, api_key, seen.cursor)
    time_module.sleep(max(0.0, (ahead - datetime.now(UTC)).total_seconds()) + 0.05)
    [run] = evaluate(live_sandbox, api_key, not_yet.cursor).run_requests

    assert not_yet.run_requests == []
    assert run.asset_selection == [PRODUCTS] and run.partition_key == utc_today()


def test_a_tick_that_sees_an_earlier_vendor_state_again_still_gets_a_run_of_its_own(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    live_sandbox.live.tick()
    first = evaluate(live_sandbox, api_key, a_second_ago())
    changed = {name: live_sandbox.window(name, since) for name in RESOURCES}
    for name, records in changed.items():
        live_sandbox.delete(name, records[1]["id"])  # neither the earliest nor the latest
    deleted = evaluate(live_sandbox, api_key, first.cursor)
    # Late arrivals behind the latest changes bring the counts back to what the first tick saw.
    for name, records in changed.items():
        earliest, latest = (parse_timestamp(records[i]["updated_at"]) for i in (0, -1))
        filed = earliest + (latest - earliest) / 2
        live_sandbox.live.create(name, updated_ms=int(filed.timestamp() * 1000))

    late = evaluate(live_sandbox, api_key, deleted.cursor)

    keys = [r.run_key for tick in (first, deleted, late) for r in tick.run_requests]
    assert len(keys) == 3 and len(set(keys)) == 3, "the daemon skips a run key it has seen"


def cursor_of_a_tick(sandbox: SandboxServer, api_key: str, ago: timedelta) -> str:
    """The cursor a tick `ago` stored, the vendor unchanged since."""
    now = datetime.now(UTC)
    since = floor_ms(now - ago - LOOK_BACK)
    cursor = {}
    for name in RESOURCES:
        with VendorSession(api_key) as session:
            listing = probe.list_changes(sandbox.base_url, session, CONTRACTS[name], since, now)
        cursor[name] = {"since": rfc3339(since), "seen": listing.fingerprint(), "requested": 0}
    return json.dumps(cursor)


@pytest.mark.parametrize(("tick_ago", "stamped_ago"), [
    (timedelta(minutes=1), LOOK_BACK + timedelta(seconds=10)),  # late, within the look-back
    (timedelta(hours=1), timedelta(minutes=30)),  # on time, for a sensor ticking hourly
], ids=["late-arrival", "hourly-sensor"])
def test_a_listing_an_outage_answers_empty_keeps_the_cursor_and_the_change_it_hid_runs(
    live_sandbox: SandboxServer, api_key: str, tick_ago: timedelta, stamped_ago: timedelta
) -> None:
    cursor = cursor_of_a_tick(live_sandbox, api_key, tick_ago)
    assert evaluate(live_sandbox, api_key, cursor).run_requests == []
    stamped = datetime.now(UTC) - stamped_ago
    live_sandbox.live.create("products", updated_ms=int(stamped.timestamp() * 1000))
    live_sandbox.faults.add("products", Fault.body({"data": [], "total": 0}))

    outage = evaluate(live_sandbox, api_key, cursor)
    [run] = evaluate(live_sandbox, api_key, outage.cursor).run_requests

    assert outage.run_requests == []
    assert run.asset_selection == [PRODUCTS]


def test_a_first_tick_that_lists_nothing_starts_the_cursor_where_it_listed(
    sandbox: SandboxServer, api_key: str
) -> None:
    first = evaluate(sandbox, api_key, None)  # the sandbox's records are months old: quiet
    since = parse_timestamp(json.loads(first.cursor)["products"]["since"])
    # Filed just after where the first tick listed from, before where the next tick would
    # start without a cursor: late, or missed by a sensor ticking less often than the look-back.
    sandbox.live.create("products", updated_ms=int(since.timestamp() * 1000) + 1)
    time_module.sleep(0.05)

    [run] = evaluate(sandbox, api_key, first.cursor).run_requests

    assert first.run_requests == [] and run.asset_selection == [PRODUCTS]


def test_a_listing_naming_total_twice_is_asked_again_next_tick(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    seen, _ = changes_of_a_tick_ago(live_sandbox, api_key)
    live_sandbox.faults.add("products", Fault.raw(200, '{"data": [], "total": 0, "total": 3}'))

    result = evaluate(live_sandbox, api_key, seen.cursor)

    assert result.run_requests == []
    assert "products offset 0: a response naming total twice" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["products"] == json.loads(seen.cursor)["products"]


def test_one_resource_the_vendor_fails_does_not_stop_the_other(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    live_sandbox.live.tick()
    live_sandbox.faults.add("order_payments", Fault.status(503, echo_url=True), times=4)

    result = evaluate(live_sandbox, api_key, a_second_ago())

    [run] = result.run_requests
    assert set(run.asset_selection) == ALL - {PAYMENTS}
    assert api_key not in (result.cursor or "")


def test_the_vendor_failing_every_resource_skips_the_tick_without_the_key(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    for resource in RESOURCES:
        live_sandbox.faults.add(resource, Fault.status(503, echo_url=True), times=4)

    result = evaluate(live_sandbox, api_key, None)

    message = result.skip_reason.skip_message
    assert "order_payments" in message and "503" in message and api_key not in message


@pytest.mark.parametrize(
    "updated_at",
    [None, 12345, "not-a-date", "9999-12-31T23:59:59.999Z", "2999-01-01T00:00:00.000Z"],
    ids=["null", "number", "malformed", "year-9999", "far-future"],
)
@pytest.mark.parametrize("end", ["earliest", "latest"])
def test_a_defective_timestamp_is_skipped_and_the_cursor_stays_in_the_present(
    live_sandbox: SandboxServer, api_key: str, updated_at: object, end: str
) -> None:
    cursor = a_second_ago()
    live_sandbox.live.tick()
    live_sandbox.live.tick()
    changed = live_sandbox.window("products", datetime.now(UTC) - timedelta(seconds=5))
    victim = changed[0] if end == "earliest" else changed[-1]
    live_sandbox.corrupt("products", victim["id"], updated_at=updated_at)

    result = evaluate(live_sandbox, api_key, cursor)

    [run] = result.run_requests
    assert run.partition_key == utc_today() and PRODUCTS in run.asset_selection
    for state in json.loads(result.cursor).values():
        assert state["since"] <= datetime.now(UTC).isoformat().replace("+00:00", "Z")


FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)


def a_day_ago() -> str:
    since = rfc3339(datetime.now(UTC) - timedelta(days=1))
    return json.dumps({name: {"since": since} for name in RESOURCES})


def test_records_filed_in_the_far_future_do_not_hide_todays_changes_nor_trigger_every_tick(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    # A vendor that sorts them by their `updated_at` lists them after every real change.
    for _ in range(5):
        live_sandbox.live.create("products", updated_ms=int(FAR_FUTURE.timestamp() * 1000))
    live_sandbox.update_now("products", live_sandbox.window("products")[0]["id"])
    cursor = {**json.loads(a_second_ago()), "products": json.loads(a_day_ago())["products"]}

    result = evaluate(live_sandbox, api_key, json.dumps(cursor))

    [run] = result.run_requests
    assert utc_today() in (run.partition_key, run.tags.get("dagster/asset_partition_range_end"))
    assert evaluate(live_sandbox, api_key, result.cursor).run_requests == []


def test_defective_timestamps_at_the_end_of_the_listing_still_refresh_through_today(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    cursor = a_day_ago()
    for _ in range(3):  # 9 changes: valid ones before the defective
        live_sandbox.live.tick()
    # More than the probe skips, in the places of the latest changes (the sandbox keeps them).
    for resource in RESOURCES:
        for record in live_sandbox.window(resource, datetime.now(UTC) - timedelta(days=1))[-5:]:
            live_sandbox.corrupt(resource, record["id"], updated_at="9999-12-31T23:59:59.999Z")

    result = evaluate(live_sandbox, api_key, cursor)

    [run] = result.run_requests
    assert utc_today() in (run.partition_key, run.tags.get("dagster/asset_partition_range_end"))
    assert evaluate(live_sandbox, api_key, result.cursor).run_requests == [], "no new change"


@pytest.mark.parametrize(
    "cursor", ["{not json", "[1, 2]", '{"products": 7}', '{"products": {"requested": "3"}}']
)
def test_a_corrupt_cursor_is_reset_with_a_clear_log_line(
    live_sandbox: SandboxServer, api_key: str, cursor: str, capfd
) -> None:
    result = evaluate(live_sandbox, api_key, cursor)

    logged = capfd.readouterr().err
    assert "The sensor's cursor could not be read" in logged
    assert "watching for changes from now on" in logged
    assert isinstance(json.loads(result.cursor), dict)


@pytest.mark.unit
def test_the_daily_schedule_reloads_yesterday_and_skips_a_day_before_the_first_partition() -> (
    None
):
    schedule = build_definitions(
        settings=read_settings({"ECOM_PARTITIONS_START": "2026-01-06"})
    ).resolve_schedule_def("ecom_daily_refresh")

    with instance_for_test() as instance:
        [request] = schedule(build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 7, 0, 15, tzinfo=UTC)))
        on_first_day = schedule(build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 6, 0, 15, tzinfo=UTC)))

    assert request.partition_key == "2026-01-06"
    assert "2026-01-05 is before the first partition, 2026-01-06" in on_first_day.skip_message
    assert date.fromisoformat(request.partition_key) >= date(2026, 1, 6)


@pytest.mark.unit
@pytest.mark.parametrize(("late_minutes", "cron", "tick", "day_reconciled"), [
    ("10", "15 0 * * *", datetime(2026, 1, 7, 0, 15, tzinfo=UTC), "2026-01-06"),
    ("60", "5 1 * * *", datetime(2026, 1, 7, 1, 5, tzinfo=UTC), "2026-01-06"),
    ("1440", "5 0 * * *", datetime(2026, 1, 8, 0, 5, tzinfo=UTC), "2026-01-06"),
])
def test_the_daily_schedule_reconciles_a_day_once_its_late_arrivals_are_in(
    late_minutes: str, cron: str, tick: datetime, day_reconciled: str
) -> None:
    """A day's records can land until its end plus the look-back (the late-arrival minutes and
    5 minutes for the vendor's clocks): a day reconciled earlier would miss one filed after."""
    schedule = build_definitions(settings=read_settings({
        "ECOM_PARTITIONS_START": "2026-01-01", "ECOM_LATE_ARRIVAL_MINUTES": late_minutes,
    })).resolve_schedule_def("ecom_daily_refresh")

    with instance_for_test() as instance:
        [request] = schedule(build_schedule_context(instance=instance,
                                                    scheduled_execution_time=tick))

    assert (schedule.cron_schedule, request.partition_key) == (cron, day_reconciled)


@pytest.fixture
def sync_on_disk(vendor_env: None, tmp_path: Path) -> Iterator[Sync]:
    """A sync recording into an instance on disk, which a schedule's context can open."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        yield Sync(instance, tmp_path / "warehouse.duckdb")


@pytest.mark.parametrize("outage_over", [True, False], ids=["outage over", "still empty"])
def test_a_day_an_outage_answered_empty_on_every_pass_is_read_again_by_the_next_daily_run(
    sync_on_disk: Sync, sandbox: SandboxServer, outage_over: bool
) -> None:
    sync, duckdb_path = sync_on_disk, sync_on_disk.duckdb_path
    sandbox.serve_empty("order_payments")  # an outage outlasting every pass of the run
    read_empty = sync(partition_key(1), resources=["order_payments"])
    # Nothing in the run tells it from a day without records: it succeeds, loading nothing.
    assert read_empty.success
    assert payment_ids(duckdb_path) == set()
    [materialization] = read_empty.asset_materializations_for_node("ecom_vendor_sync")
    assert materialization.metadata["days_read_empty"].value == [partition_key(1)]

    sandbox.serve_empty("order_payments", not outage_over)
    tonight = next_tick()
    [yesterday, read_again] = daily_run_requests(sync, tonight)
    assert yesterday.partition_key == (tonight - timedelta(days=1)).date().isoformat()
    assert (read_again.partition_key, read_again.asset_selection) == (partition_key(1), [PAYMENTS])
    again = sync(read_again.partition_key, resources=["order_payments"], tags=read_again.tags)

    assert again.success
    expected = vendor_ids(sandbox, "order_payments", day(1), day(2)) if outage_over else set()
    assert payment_ids(duckdb_path) == expected
    # Read again, the day is what it is: empty still, it is believed and not read once more.
    assert daily_run_requests(sync, tonight) == [yesterday]


def test_days_read_empty_in_a_row_are_read_again_in_one_run_until_a_reading_succeeds(
    sync_on_disk: Sync, sandbox: SandboxServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync, days = sync_on_disk, (partition_key(1), partition_key(3))
    sandbox.serve_empty("order_payments")
    assert sync(partition_range=days, resources=["order_payments"]).success
    sandbox.serve_empty("order_payments", False)
    tonight = next_tick()

    [_, read_again] = daily_run_requests(sync, tonight)
    assert read_again.partition_key is None
    assert (read_again.tags[PARTITION_RANGE_START], read_again.tags[PARTITION_RANGE_END]) == days
    # Still running at the next tick, it is not asked for again.
    running = a_run(sync.instance, read_again.tags, DagsterRunStatus.STARTED)
    assert len(daily_run_requests(sync, tonight + timedelta(days=1))) == 1
    sync.instance.delete_run(running.run_id)
    # Failed before it loaded anything, it is asked for again by the next tick...
    monkeypatch.setenv("ECOM_API_KEY", "a-key-the-vendor-rejects")
    assert not sync(partition_range=days, resources=["order_payments"],
                    tags=read_again.tags).success
    [_, asked_again] = daily_run_requests(sync, tonight + timedelta(days=1))
    assert asked_again.tags == read_again.tags
    # ...and no more once it succeeded.
    monkeypatch.setenv("ECOM_API_KEY", api_key)
    assert sync(partition_range=days, resources=["order_payments"],
                tags=read_again.tags).success
    assert len(daily_run_requests(sync, tonight + timedelta(days=2))) == 1
    assert len(payment_ids(sync.duckdb_path)) == len(
        vendor_ids(sandbox, "order_payments", day(1), day(4))
    )


def test_a_day_read_empty_a_fortnight_before_the_tick_is_read_again_until_a_reading_succeeds(
    sync_on_disk: Sync, sandbox: SandboxServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = sync_on_disk
    sandbox.serve_empty("order_payments")
    assert sync(partition_key(1), resources=["order_payments"]).success
    sandbox.serve_empty("order_payments", False)
    tick = next_tick() + timedelta(days=14)  # the daemon was down, or the schedule off

    [_, read_again] = daily_run_requests(sync, tick)

    assert (read_again.partition_key, read_again.asset_selection) == (partition_key(1), [PAYMENTS])
    # Failed, it is asked for again by the next tick, a fortnight or more after the day was read.
    monkeypatch.setenv("ECOM_API_KEY", "a-key-the-vendor-rejects")
    assert not sync(partition_key(1), resources=["order_payments"], tags=read_again.tags).success
    [_, asked_again] = daily_run_requests(sync, tick + timedelta(days=1))
    assert asked_again.partition_key == partition_key(1)
    monkeypatch.setenv("ECOM_API_KEY", api_key)
    assert sync(partition_key(1), resources=["order_payments"], tags=read_again.tags).success
    assert len(daily_run_requests(sync, tick + timedelta(days=2))) == 1


def a_run(instance: DagsterInstance, tags: dict[str, str], status: DagsterRunStatus) -> DagsterRun:
    """A run of the refresh job in `instance`, as the daemon records one it launched."""
    return instance.add_run(
        DagsterRun(job_name="ecom_refresh", run_id=str(uuid.uuid4()), tags=tags, status=status)
    )


def next_tick() -> datetime:
    """The daily schedule's next tick, 00:15 UTC."""
    now = datetime.now(UTC)
    tick = datetime.combine(now.date(), time(0, 15), UTC)
    return tick if tick > now else tick + timedelta(days=1)


def payment_ids(database: Path) -> set[str]:
    tables = rows(database, "select table_name from information_schema.tables")
    if ("order_payments",) not in tables:  # the first load had nothing to create it with
        return set()
    return {r[0] for r in rows(database, "select id from ecom.order_payments")}


def daily_run_requests(sync: Sync, tick: datetime) -> list[RunRequest]:
    schedule = DEFINITIONS.resolve_schedule_def("ecom_daily_refresh")
    return schedule(build_schedule_context(instance=sync.instance, scheduled_execution_time=tick))
