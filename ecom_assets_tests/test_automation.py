"""The new-data sensor and the daily schedule, evaluated against the sandbox."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetKey,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)

from ecom_assets.defs.resources import ChangeSensorSettings, VendorApiResource
from ecom_assets.defs.schedules import ecom_daily_refresh
from ecom_assets.defs.sensors import ecom_vendor_changes
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import Fault, SandboxServer


@pytest.fixture
def live_sandbox(api_key: str):
    # The feed ticks only when the test says so.
    with SandboxServer(
        SandboxSpec(size=200, days=2), api_key=api_key, live_interval_s=3600, live_per_tick=3
    ).start() as server:
        yield server


def evaluate(sandbox: SandboxServer, api_key: str, cursor: str | None):
    context = build_sensor_context(
        cursor=cursor,
        resources={
            "vendor_api": VendorApiResource(
                base_url=sandbox.base_url, api_key=api_key, retry_backoff_factor=0.01
            ),
            "change_sensor": ChangeSensorSettings(lookback_minutes=10),
        },
    )
    return ecom_vendor_changes(context)


def test_the_sensor_requests_one_run_for_the_changed_day_and_repeats_itself_exactly(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    cursor = json.dumps({r: started.isoformat() for r in ("order_payments", "products")})
    assert isinstance(evaluate(live_sandbox, api_key, cursor), SkipReason)

    live_sandbox.live.tick()
    result = evaluate(live_sandbox, api_key, cursor)
    again = evaluate(live_sandbox, api_key, cursor)

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    [run] = result.run_requests
    assert isinstance(run, RunRequest) and run.partition_key == today
    assert set(run.asset_selection) == {
        AssetKey(["ecom", "order_payments"]),
        AssetKey(["ecom", "products"]),
    }
    assert [r.run_key for r in again.run_requests] == [run.run_key], "a re-evaluated tick"
    new_cursor = json.loads(result.cursor)
    assert new_cursor["products"] > started.isoformat()

    # Later ticks see the same changes through the lookback: the same run key, so no new run.
    assert [r.run_key for r in evaluate(live_sandbox, api_key, result.cursor).run_requests] == [
        run.run_key
    ]
    live_sandbox.live.tick()
    [next_run] = evaluate(live_sandbox, api_key, result.cursor).run_requests
    assert next_run.run_key != run.run_key


def test_a_vendor_error_skips_the_tick_with_a_reason_and_keeps_the_cursor(
    live_sandbox: SandboxServer, api_key: str
) -> None:
    live_sandbox.faults.add("order_payments", Fault.status(503, echo_url=True), times=4)

    result = evaluate(live_sandbox, api_key, None)

    assert isinstance(result, SkipReason)
    assert "order_payments" in result.skip_message and "503" in result.skip_message
    assert api_key not in result.skip_message


def test_the_daily_schedule_reloads_yesterday_after_midnight_utc() -> None:
    context = build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 6, 0, 15, tzinfo=UTC)
    )
    request = ecom_daily_refresh(context)
    assert request.partition_key == "2026-01-05"
