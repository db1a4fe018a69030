"""Retries, rate limits and broken responses: what the user sees, and that nothing is lost."""

import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import duckdb
import pytest
import requests

from ecom_assets.contract import CONTRACTS
from ecom_assets.ingest.vendor_session import RetryPolicy, VendorSession, retry_after_seconds
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import Sync, day, failure_message, partition_key, rows


def requests_for(sandbox: SandboxServer, resource: str) -> list[tuple]:
    return [entry for entry in sandbox.request_log if entry[0] == resource]


def test_429_with_retry_after_and_a_short_5xx_burst_still_load_everything(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    sandbox.faults.add("order_payments", Fault.status(429, retry_after="1"))
    for status in (500, 502, 503):  # three failures in a row: exactly the retry budget
        sandbox.faults.add("products", Fault.status(status))

    started = time.monotonic()
    result = sync(partition_key(1))

    assert result.success
    # Backoff here is 0.01 s, so only the vendor's Retry-After explains a one-second wait.
    assert time.monotonic() - started >= 1.0
    for resource in CONTRACTS:
        expected = {r["id"] for r in sandbox.dataset.records(resource, day(1), day(2))}
        loaded = {r[0] for r in rows(duckdb_path, f"select id from ecom.{resource}")}
        assert loaded == expected


def test_an_outage_answering_nothing_three_times_in_a_row_loses_no_record(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    # `{"data": [], "total": 0}` is also what a day without records answers: only a run of
    # agreeing passes tells the two apart.
    sandbox.faults.add("order_payments", Fault.body({"data": [], "total": 0}), times=3)

    result = sync(partition_key(1), resources=("order_payments",))

    assert result.success
    expected = {r["id"] for r in sandbox.dataset.records("order_payments", day(1), day(2))}
    assert {r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")} == expected


def test_a_5xx_burst_longer_than_the_retry_budget_fails_clearly_and_loads_nothing(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    # The first products page fails four times: the first attempt and all three retries.
    sandbox.faults.add("products", Fault.status(504), times=4)

    result = sync(partition_key(1))

    assert not result.success
    message = failure_message(result)
    assert "products offset 0: still failing after 3 retries: HTTP 504" in message
    # Nothing partial: neither table was written, order_payments included.
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        tables = connection.execute(
            "select table_name from information_schema.tables where table_schema = 'ecom' "
            "and table_name in ('order_payments', 'products')"
        ).fetchall()
    assert tables == []


def test_a_wrong_key_fails_at_once_without_retries_and_without_the_key(
    sync: Sync, sandbox: SandboxServer, monkeypatch
) -> None:
    wrong_key = "wrong-key-that-must-not-leak-123"
    monkeypatch.setenv("ECOM_API_KEY", wrong_key)

    result = sync(partition_key(1), resources=("order_payments",))

    assert not result.success
    message = failure_message(result)
    assert "rejected the request with HTTP 401" in message
    assert "not retried" in message
    assert wrong_key not in message
    assert len(requests_for(sandbox, "order_payments")) == 1


def test_an_error_body_echoing_the_url_does_not_leak_the_key(
    sync: Sync, sandbox: SandboxServer, api_key: str, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request line, key included, at DEBUG
    sandbox.faults.add("order_payments", Fault.status(503, echo_url=True))
    sandbox.faults.add("order_payments", Fault.status(400, echo_url=True))

    result = sync(partition_key(1), resources=("order_payments",))

    assert not result.success
    message = failure_message(result)
    assert "HTTP 400" in message
    assert api_key not in message
    for event in result.all_events:
        assert api_key not in str(event)
    assert "GET /v1/order_payments?" in caplog.text
    assert api_key not in caplog.text


def test_a_200_without_data_fails_the_run_with_a_clear_error(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    sandbox.faults.add("order_payments", Fault.body({"total": 150}))

    result = sync(partition_key(1), resources=("order_payments",))

    assert not result.success
    message = failure_message(result)
    assert "order_payments [2026-01-02T00:00:00.000Z, 2026-01-03T00:00:00.000Z) offset 0: " \
        "200 response without a list under 'data' (got null)" in message
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        assert connection.execute(
            "select count(*) from information_schema.tables where table_name = 'order_payments'"
        ).fetchall() == [(0,)]


@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=10_000, days=2)])
def test_a_page_that_ignores_limit_is_accepted_and_paging_continues_after_it(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, caplog
) -> None:
    # The first page of the day brings 3,000 records for limit=100.
    sandbox.faults.add("order_payments", Fault.ignore_limit(3000))

    result = sync(partition_key(0), resources=("order_payments",))

    assert result.success
    assert "2026-01-02T00:00:00.000Z) offset 0: 3000 records for limit 100" in caplog.text
    expected = [r["id"] for r in sandbox.dataset.records("order_payments", day(0), day(1))]
    assert len(expected) > 3000
    loaded = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert sorted(loaded) == sorted(expected)  # every record once: none skipped, none twice
    served_offsets = [entry[1] for entry in requests_for(sandbox, "order_payments")]
    assert 3000 in served_offsets  # paging resumed right after the oversized page
    assert served_offsets.count(0) == 1 and "paging it again" not in caplog.text
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["reconciled_with_vendor"] and checks["no_quarantined_records"]


def test_a_vendor_that_caps_pages_below_limit_loads_everything_in_one_pass(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, caplog
) -> None:
    sandbox.faults.add("order_payments", Fault.ignore_limit(50), times=1000)

    result = sync(partition_key(1), resources=("order_payments",))

    assert result.success
    expected = [r["id"] for r in sandbox.dataset.records("order_payments", day(1), day(2))]
    loaded = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert sorted(loaded) == sorted(expected)
    assert "paging it again" not in caplog.text
    # Pages fetched ahead follow the vendor's page size: each offset is asked for once.
    served_offsets = [entry[1] for entry in requests_for(sandbox, "order_payments")]
    assert len(served_offsets) == len(set(served_offsets)) <= len(expected) // 50 + 1


def _http_date_from_now(offset: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + offset, usegmt=True)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (timedelta(hours=1), 3600.0),
        # No wait given: the exponential backoff applies instead of three retries at once.
        ("0", None),
        (-timedelta(minutes=5), None),
        ("soon", None),
        ("", None),
    ],
    ids=["seconds", "http-date", "zero", "date-in-the-past", "garbage", "empty"],
)
def test_retry_after_in_seconds_or_as_an_http_date(
    header: str | timedelta, seconds: float | None
) -> None:
    response = requests.Response()
    # An HTTP date is written when the test runs: collection may be minutes earlier.
    response.headers["Retry-After"] = (
        _http_date_from_now(header) if isinstance(header, timedelta) else header
    )

    waited = retry_after_seconds(response)

    if seconds is None or seconds < 10:
        assert waited == seconds
    else:  # an HTTP date has whole seconds
        assert seconds - 2 <= waited <= seconds


def test_a_retry_after_beyond_the_ceiling_fails_fast_with_a_rate_limit_error(
    sync: Sync, sandbox: SandboxServer
) -> None:
    sandbox.faults.add("order_payments", Fault.status(429, retry_after="3600"))

    started = time.monotonic()
    result = sync(partition_key(1), resources=("order_payments",))

    assert not result.success
    assert "asked to wait 3600 s, more than the 120 s ceiling" in failure_message(result)
    assert time.monotonic() - started < 60, "it did not sleep for an hour"


def test_the_retry_after_ceiling_bounds_what_the_vendor_asks_not_the_own_backoff(
    sandbox: SandboxServer, api_key: str
) -> None:
    sandbox.faults.add("products", Fault.status(503), times=1)  # no Retry-After
    policy = RetryPolicy(backoff_factor=0.2, max_retry_after=0.1)

    with VendorSession(api_key, policy) as session:
        request = requests.Request(
            "GET", f"{sandbox.base_url}/v1/products", params={"api_key": api_key}
        ).prepare()
        response = session.send_with_retries(request)

    assert response.status_code == 200
