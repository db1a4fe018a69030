"""The sandbox vendor API over real HTTP: the contract, its data set and its faults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from ecom_assets.contract import CONTRACTS, FieldType
from ecom_assets.sandbox.data import RESOURCES, Dataset, SandboxSpec
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import SANDBOX_KEY, vendor_get, vendor_window

# About a thousand records a day over five days: each day spans many pages.
SPEC = SandboxSpec(size=5000, days=5)
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
MONEY_STRING = re.compile(r"-?[0-9]+\.[0-9]{2}")
MONEY_FIELD = {
    name: next(f.name for f in c.fields if f.type is FieldType.MONEY)
    for name, c in CONTRACTS.items()
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SPEC, api_key=SANDBOX_KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def no_leftover_faults(server: SandboxServer) -> Iterator[None]:
    yield
    server.faults.clear()


def test_rejects_a_missing_or_wrong_key_without_echoing_it(server, session):
    for params in ({"api_key": ""}, {"api_key": "not-the-key"}):
        response = vendor_get(session, server, "products", **params)
        assert response.status_code == 401
        assert response.json() == {
            "error": "unauthorized",
            "message": "invalid or missing api_key",
        }
        assert "not-the-key" not in response.text
    response = session.get(f"{server.base_url}/v1/products", timeout=5)
    assert response.status_code == 401


def test_unknown_path_is_a_json_404(server, session):
    response = vendor_get(session, server, "no_such_resource")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("resource", RESOURCES)
def test_pages_cover_the_window_exactly_once_in_order(server, session, resource):
    since, before = SPEC.start + DAY, SPEC.start + 3 * DAY
    expected = server.dataset.records(resource, since, before)
    assert 0 < len(expected) < SPEC.size

    records, totals = vendor_window(
        session,
        server,
        resource,
        limit=97,  # pages that do not divide the window evenly
        updated_since=since.isoformat(),
        updated_before=before.isoformat(),
    )

    assert records == expected
    assert totals == {len(expected)}
    assert len({record["id"] for record in records}) == len(records)
    assert [(r["updated_at"], r["id"]) for r in records] == sorted(
        (r["updated_at"], r["id"]) for r in records
    )


def test_page_fields_and_a_page_past_the_end(server, session):
    response = vendor_get(session, server, "products", offset=0, limit=3)
    assert response.headers["Content-Length"] == str(len(response.content))
    page = response.json()
    assert (page["total"], page["offset"], page["limit"]) == (SPEC.size, 0, 3)
    assert page["data"] == server.dataset.all("products")[:3]

    past_end = vendor_get(session, server, "products", offset=SPEC.size + 10).json()
    assert past_end["data"] == []
    assert past_end["total"] == SPEC.size


@pytest.mark.parametrize("resource", RESOURCES)
def test_whole_data_set_is_in_updated_at_id_order_with_ties(server, resource):
    records = server.dataset.all(resource)
    keys = [(r["updated_at"], r["id"]) for r in records]
    assert keys == sorted(keys)
    # The pinned boundary records include two with the same updated_at.
    assert len({r["updated_at"] for r in records}) < len(records)


@pytest.mark.parametrize("resource", RESOURCES)
def test_since_is_inclusive_and_before_exclusive_at_exact_boundaries(server, session, resource):
    midnight = "2026-01-02T00:00:00.000Z"
    last_ms_before = "2026-01-01T23:59:59.999Z"
    at_midnight = [r for r in server.dataset.all(resource) if r["updated_at"] == midnight]
    assert len(at_midnight) == 2  # a tie, ordered by id
    assert any(r["updated_at"] == last_ms_before for r in server.dataset.all(resource))

    # The same instant in every accepted spelling.
    for spelling in (
        "2026-01-02T00:00:00Z",
        "2026-01-02T00:00:00.000Z",
        "2026-01-02T00:00:00+00:00",
        "2026-01-02T01:00:00.000000+01:00",
    ):
        after = vendor_get(session, server, resource, updated_since=spelling, limit=3).json()
        assert after["data"][:2] == at_midnight
        until = vendor_get(session, server, resource, updated_before=spelling).json()
        last = vendor_get(
            session, server, resource, updated_before=spelling, offset=until["total"] - 1
        )
        assert last.json()["data"][0]["updated_at"] == last_ms_before
        assert after["total"] + until["total"] == SPEC.size

    # Sub-millisecond bounds: .9985 still includes .999, and before .0001 includes .000.
    inside = vendor_get(
        session,
        server,
        resource,
        updated_since="2026-01-01T23:59:59.9985Z",
        updated_before="2026-01-02T00:00:00.0001Z",
    ).json()
    assert [r["updated_at"] for r in inside["data"]] == [last_ms_before, midnight, midnight]


def test_empty_and_inverted_windows(server, session):
    empty = vendor_get(session, server, "products", updated_since="2030-01-01T00:00:00Z").json()
    assert empty == {"data": [], "total": 0, "offset": 0, "limit": 100}
    inverted = vendor_get(
        session,
        server,
        "products",
        updated_since="2026-01-03T00:00:00Z",
        updated_before="2026-01-02T00:00:00Z",
    ).json()
    assert inverted["total"] == 0


@pytest.mark.parametrize("resource", RESOURCES)
def test_records_have_the_contract_shape_and_no_other_field(server, resource):
    records = server.dataset.all(resource)
    contract = CONTRACTS[resource]
    if resource == "order_payments":
        assert {r["status"] for r in records} == {"pending", "succeeded", "failed", "refunded"}
        assert None in {r["payment_method"] for r in records}
    elif resource == "products":
        assert all(isinstance(r["active"], bool) for r in records)
        # tags is optional but never null (its type has no null): absent now and then.
        assert all(len(r["tags"]) <= 3 for r in records if "tags" in r)
        assert 0 < sum("tags" not in r for r in records) < len(records) / 2
        assert None in {r["description"] for r in records}
        names = {r["name"] for r in records}
        assert "Café crème 250 g" in names
        assert any(ord(char) > 0xFFFF for name in names for char in name)  # an emoji
    for record in records:
        # A clean sandbox (the default) sends the contract's fields and no other.
        assert list(record) == [
            f.name for f in contract.fields if f.null_allowed or f.name in record
        ]
        assert TIMESTAMP.fullmatch(record["updated_at"])
        assert TIMESTAMP.fullmatch(record["created_at"])
        assert record["created_at"] <= record["updated_at"]
        assert "2026-01-01" <= record["updated_at"] < "2026-01-06"


@pytest.mark.parametrize(
    ("resource", "extra", "shape"),
    [("order_payments", "gateway_reference", r"gw_[0-9a-f]{12}"),
     ("products", "warehouse_code", r"[A-Z]{3}-[0-9]")],
)
def test_unknown_fields_switch_adds_a_field_the_contract_does_not_list(resource, extra, shape):
    spec = SandboxSpec(size=300, days=2, unknown_fields=True)
    with SandboxServer(spec, api_key=SANDBOX_KEY) as noisy, requests.Session() as session:
        page = vendor_get(session, noisy, resource, limit=300).json()["data"]
    contract_fields = [field.name for field in CONTRACTS[resource].fields]
    assert all(
        list(record) == [*(f for f in contract_fields if f in record), extra] for record in page
    )
    assert all(re.fullmatch(shape, record[extra]) for record in page)
    # The contract's fields are the same as without the switch.
    clean = Dataset(SandboxSpec(size=300, days=2)).all(resource)
    assert [{k: r[k] for k in contract_fields if k in r} for r in page] == clean


def test_non_ascii_text_survives_the_wire(server, session):
    records, _ = vendor_window(session, server, "products", limit=1000)
    assert records == server.dataset.all("products")


@pytest.mark.parametrize("resource", RESOURCES)
def test_money_is_exact_with_two_decimals_and_sometimes_a_string(server, session, resource):
    field = MONEY_FIELD[resource]
    # Parse the wire text with Decimal so float conversion cannot hide extra digits.
    response = vendor_get(session, server, resource, limit=1000)
    page = json.loads(response.text, parse_float=Decimal)["data"]
    values = [record[field] for record in page]
    strings = [value for value in values if isinstance(value, str)]
    assert 0 < len(strings) < len(values)
    assert all(MONEY_STRING.fullmatch(value) for value in strings)
    for value in values:
        amount = Decimal(value) if isinstance(value, str) else Decimal(str(value))
        assert amount == amount.quantize(Decimal("0.01"))
        assert amount > 0


def test_same_seed_same_data_other_seed_other_data():
    spec = SandboxSpec(size=1500, seed=7)
    assert Dataset(spec) == Dataset(spec)
    assert Dataset(spec) != Dataset(SandboxSpec(size=1500, seed=8))


def test_dataset_bounds_accept_strings_and_aware_datetimes():
    dataset = Dataset(SandboxSpec(size=300, days=3))
    since = datetime(2026, 1, 2, tzinfo=UTC)
    assert dataset.records("products", since) == dataset.records("products", "2026-01-02T00:00:00Z")
    with pytest.raises(ValueError, match="unknown resource"):
        dataset.records("no_such_resource")
    with pytest.raises(ValueError):
        dataset.records("products", datetime(2026, 1, 2))  # naive: ambiguous


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "1.5"},
        {"updated_since": "2026-01-01"},
        {"updated_since": "2026-01-01T00:00:00"},  # no offset
        {"updated_before": "2026-13-01T00:00:00Z"},
        {"updated_before": "yesterday"},
    ],
)
def test_invalid_parameters_are_400(server, session, params):
    response = vendor_get(session, server, "order_payments", **params)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_status_fault_with_retry_after_is_consumed_once(server, session):
    server.faults.add("order_payments", Fault.status(429, retry_after="2"))

    # Another resource and an unauthorised request do not consume it.
    assert vendor_get(session, server, "products").status_code == 200
    assert vendor_get(session, server, "order_payments", api_key="wrong").status_code == 401
    assert server.faults.pending("order_payments") == 1

    limited = vendor_get(session, server, "order_payments")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json() == {"error": "too_many_requests", "message": "Too Many Requests"}
    assert vendor_get(session, server, "order_payments").status_code == 200
    assert server.faults.pending() == 0


def test_faults_are_served_in_order_and_repeat_as_asked(server, session):
    server.faults.add("products", Fault.status(503), times=2)
    server.faults.add("products", Fault.status(502))
    statuses = [vendor_get(session, server, "products").status_code for _ in range(4)]
    assert statuses == [503, 503, 502, 200]


def test_echo_url_fault_leaks_the_key_like_real_vendors_do(server, session):
    # The point of this fault: error bodies may echo the URL, api_key included, so clients
    # must scrub the key before logging or raising.
    server.faults.add("order_payments", Fault.status(400, echo_url=True))
    response = vendor_get(session, server, "order_payments", limit=5)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "/v1/order_payments?" in message
    assert f"api_key={SANDBOX_KEY}" in message
    # Ordinary errors never echo it.
    assert SANDBOX_KEY not in vendor_get(session, server, "order_payments", limit=0).text


def test_body_faults_replace_the_page(server, session):
    server.faults.add("products", Fault.body({"total": 5}))
    server.faults.add("products", Fault.body({"data": None, "total": 5}))
    first, second = vendor_get(session, server, "products"), vendor_get(session, server, "products")
    assert (first.status_code, first.json()) == (200, {"total": 5})
    assert (second.status_code, second.json()) == (200, {"data": None, "total": 5})
    assert len(vendor_get(session, server, "products").json()["data"]) == 100


def test_raw_fault_sends_malformed_json(server, session):
    server.faults.add("products", Fault.raw(200, '{"data": [{"id": "prd_'))
    response = vendor_get(session, server, "products")
    assert response.status_code == 200
    assert response.text == '{"data": [{"id": "prd_'
    with pytest.raises(requests.JSONDecodeError):
        response.json()
    assert vendor_get(session, server, "products").json()["total"] == SPEC.size


def test_stall_fault_trips_a_client_timeout_then_serves_normally(server, session):
    url = f"{server.base_url}/v1/products"
    server.faults.add("products", Fault.stall(0.6))
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(url, params={"api_key": SANDBOX_KEY}, timeout=0.2)
    assert vendor_get(session, server, "products").status_code == 200

    server.faults.add("products", Fault.stall(0.1))
    started = time.monotonic()
    stalled = vendor_get(session, server, "products", limit=10)
    assert time.monotonic() - started >= 0.1
    assert stalled.json()["data"] == server.dataset.all("products")[:10]


def test_request_log_records_requests_but_never_the_key(server, session):
    vendor_get(session, server, "order_payments", offset=200, limit=50)
    vendor_get(session, server, "order_payments", api_key="wrong")
    log = server.request_log
    assert [record[:4] for record in log[-2:]] == [
        ("order_payments", 200, 50, 200),
        ("order_payments", None, None, 401),
    ]
    assert log[-2].arrived_at <= log[-1].arrived_at
    assert SANDBOX_KEY not in repr(log) and "wrong" not in repr(log)


def test_keep_alive_session_pages_through_20k_records():
    # A smoke check, not a benchmark: 200 pages on one connection, every id arrives.
    spec = SandboxSpec(size=20_000)
    with SandboxServer(spec, api_key=SANDBOX_KEY) as big, requests.Session() as session:
        records, totals = vendor_window(session, big, "order_payments", limit=100)
        pools = session.get_adapter(big.base_url).poolmanager.pools
        # RecentlyUsedContainer refuses plain iteration, hence keys().
        connections_opened = sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118
    assert totals == {20_000}
    assert {r["id"] for r in records} == {f"pay_{n:08d}" for n in range(1, 20_001)}
    assert connections_opened == 1


def test_latency_is_added_to_every_request(session):
    with SandboxServer(SandboxSpec(size=10, latency_ms=50), api_key=SANDBOX_KEY) as slow:
        started = time.monotonic()
        response = vendor_get(session, slow, "products")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.05


def test_stop_closes_keep_alive_connections():
    with requests.Session() as session:
        with SandboxServer(SandboxSpec(size=10), api_key=SANDBOX_KEY) as short_lived:
            url = f"{short_lived.base_url}/v1/products"
            assert session.get(url, params={"api_key": SANDBOX_KEY}, timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(url, params={"api_key": SANDBOX_KEY}, timeout=5)


LISTENING = re.compile(
    r"sandbox listening on (?P<url>http://127\.0\.0\.1:\d+) \("
    + ", ".join(f"{name}=50" for name in CONTRACTS)
    + r" records, (?P<first>\d{4}-\d{2}-\d{2})\.\.(?P<last>\d{4}-\d{2}-\d{2}), "
    r"updated_at in \[(?P<start>\S+), (?P<end>\S+)\)(?P<extras>.*)\)\n"
)


def start_command_line(*args: str, secret: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ecom_assets.sandbox", "--port", "0", "--size", "50", *args],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "ECOM_API_KEY": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_command_line_serves_recent_data_until_a_signal_without_printing_the_key(signum):
    secret = "cli-secret-9c2e"
    before_start = datetime.now(UTC)
    process = start_command_line("--days", "2", secret=secret)
    try:
        line = process.stdout.readline()
        match = LISTENING.fullmatch(line)
        assert match, line
        # Recent by default: yesterday and today, up to the moment it started.
        after_start = datetime.now(UTC)
        assert match["last"] in {f"{before_start:%Y-%m-%d}", f"{after_start:%Y-%m-%d}"}
        last_day = datetime.fromisoformat(match["last"])
        assert match["first"] == f"{last_day - DAY:%Y-%m-%d}"
        assert match["start"] == f"{match['first']}T00:00:00.000Z"
        end = datetime.fromisoformat(match["end"])
        assert before_start - MS <= end <= after_start + MS  # ms precision
        response = requests.get(
            f"{match['url']}/v1/products", params={"api_key": secret, "limit": 1000}, timeout=5
        )
        page = response.json()
        assert page["total"] == 50
        assert all(match["start"] <= r["updated_at"] < match["end"] for r in page["data"])
        assert any(r["updated_at"].startswith(match["last"]) for r in page["data"])
        process.send_signal(signum)
        started = time.monotonic()
        stdout, stderr = process.communicate(timeout=10)
        # Promptly, not at a timeout (its serving threads stop within a second; a margin for
        # a loaded machine).
        assert time.monotonic() - started < 5, "it exits within seconds of the signal"
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert secret not in line + stdout + stderr


def test_command_line_pins_the_start_and_turns_on_the_live_shop_and_switches():
    secret = "cli-secret-77ab"
    process = start_command_line(
        "--days", "2", "--start", "2026-01-01", "--unknown-fields", "--fresh",
        "--changes-per-second", "100", "--creates-per-second", "200",
        "--late-arrival-ms", "1000", secret=secret,
    )
    try:
        line = process.stdout.readline()
        match = LISTENING.fullmatch(line)
        assert match, line
        assert (match["first"], match["last"]) == ("2026-01-01", "2026-01-02")
        assert (match["start"], match["end"]) == (
            "2026-01-01T00:00:00.000Z", "2026-01-03T00:00:00.000Z"
        )
        assert match["extras"] == (
            ", 100 changes/s, 200 creates/s, late arrivals up to 1000 ms, fresh pages, "
            "unknown fields"
        )
        url, params = f"{match['url']}/v1/order_payments", {"api_key": secret, "limit": 1000}
        deadline, total = time.monotonic() + 4, 50
        with requests.Session() as session:
            while total <= 60 and time.monotonic() < deadline:  # the shop creates records
                page = session.get(url, params=params, timeout=5).json()
                total = page["total"]
        assert total > 60
        assert all("gateway_reference" in record for record in page["data"])
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert secret not in line + stdout + stderr
