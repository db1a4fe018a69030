"""The sandbox's records come from the API contract: its types, its enums, its resources, a
third resource declared right here; data relative to today; fresh and cached modes alike."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ecom_assets.contract import CONTRACTS, Field, FieldType, ResourceContract
from ecom_assets.sandbox import data as sandbox_data
from ecom_assets.sandbox.data import (
    SANDBOX_RESOURCES,
    Code,
    Dataset,
    SandboxResource,
    SandboxSpec,
    parse_timestamp_ms,
)
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import SANDBOX_KEY, vendor_get, vendor_window

SPEC = SandboxSpec(size=2000, days=4)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
MONEY_STRING = re.compile(r"-?[0-9]+\.[0-9]{2}")

REFUNDS = ResourceContract(
    name="refunds",
    path="/v1/refunds",
    description="Refunds of payments.",
    fields=(
        Field("id", FieldType.TEXT, False, "Primary key, e.g. ref_000042."),
        Field("payment_id", FieldType.TEXT, False, "The refunded payment."),
        Field("amount", FieldType.MONEY, False, "Amount refunded."),
        Field("reason", FieldType.TEXT, True, "Why, if the customer said."),
        Field("created_at", FieldType.TIMESTAMP, False, "When it was created (UTC)."),
        Field("updated_at", FieldType.TIMESTAMP, False, "Last change (UTC)."),
    ),
)
REFUNDS_SANDBOX = SandboxResource(
    id_prefix="ref_",
    id_width=6,
    values={"reason": ("damaged", "late delivery", "changed my mind")},
    codes={"payment_id": Code("pay_", 8, share=1.0)},
    money=(100, 5_000),
    null_share=0.3,
)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset(SPEC)


def check_value(field: Field, value: Any, tags: tuple[str, ...]) -> None:
    """`value` is a valid value of `field` as the contract types it."""
    match field.type:
        case FieldType.TEXT:
            assert isinstance(value, str) and value
            if field.allowed is not None:
                assert value in field.allowed
        case FieldType.MONEY:
            assert isinstance(value, (int, float, str)) and not isinstance(value, bool)
            if isinstance(value, str):
                assert MONEY_STRING.fullmatch(value)
            amount = Decimal(str(value))
            assert amount == amount.quantize(Decimal("0.01")) and amount > 0
        case FieldType.TIMESTAMP:
            assert TIMESTAMP.fullmatch(value)
        case FieldType.BOOLEAN:
            assert isinstance(value, bool)
        case FieldType.TEXT_LIST:
            assert isinstance(value, list) and len(value) <= 3
            assert len(set(value)) == len(value) and set(value) <= set(tags)


@pytest.mark.parametrize("resource", list(CONTRACTS))
def test_every_record_holds_the_contracts_fields_typed_as_it_says(dataset, resource):
    contract = CONTRACTS[resource]
    records = dataset.all(resource)
    tags = tuple(SANDBOX_RESOURCES[resource].tags)
    for record in records:
        # Every field, in the contract's order; an optional one whose type has no null is
        # left out instead.
        assert list(record) == [f.name for f in contract.fields if f.name in record]
        for field in contract.fields:
            if field.name not in record:
                assert field.nullable and not field.null_allowed, (field.name, record)
                continue
            value = record[field.name]
            if value is None:
                assert field.nullable and field.null_allowed, (field.name, record)
            else:
                check_value(field, value, tags)
        assert record["created_at"] <= record["updated_at"]
    for field in contract.fields:
        values = [record.get(field.name) for record in records]
        if field.nullable:  # null (or absent) now and then, not always
            assert 0 < values.count(None) < len(values) / 2, field.name
        if field.allowed is not None:  # every allowed value occurs
            assert set(values) == field.allowed
        if field.type is FieldType.BOOLEAN:
            assert set(values) == {True, False}
        if field.type is FieldType.MONEY:  # a number usually, a decimal string sometimes
            strings = [value for value in values if isinstance(value, str)]
            assert 0 < len(strings) < len(values) / 5
    # Some records were never modified, most were.
    unmodified = sum(r["created_at"] == r["updated_at"] for r in records)
    assert 0.1 < unmodified / len(records) < 0.3


def test_ids_and_codes_keep_their_shapes_and_ids_sort_in_sequence_order(dataset):
    payments, products = dataset.all("order_payments"), dataset.all("products")
    assert {r["id"] for r in payments} == {f"pay_{n:08d}" for n in range(1, SPEC.size + 1)}
    assert {r["id"] for r in products} == {f"prd_{n:07d}" for n in range(1, SPEC.size + 1)}
    assert all(re.fullmatch(r"ord_\d{8}", r["order_id"]) for r in payments)
    assert all(re.fullmatch(r"cus_\d{6}", r["customer_id"]) for r in payments)
    # Fewer orders than payments (retries), fewer customers still.
    orders, customers = {r["order_id"] for r in payments}, {r["customer_id"] for r in payments}
    assert len(customers) < len(orders) < len(payments)
    # The SKU is the product's own number.
    assert all(r["product_id"] == f"SKU-{int(r['id'][4:]):06d}" for r in products)
    for records in (payments, products):
        ids = [r["id"] for r in records]
        assert sorted(ids) == sorted(ids, key=lambda i: int(i[4:]))


def test_text_with_quotes_backslashes_newlines_and_emoji_survives_the_wire(session):
    with SandboxServer(SandboxSpec(size=500, days=2), api_key=SANDBOX_KEY) as server:
        records, _ = vendor_window(session, server, "/v1/products", limit=200)
        expected = server.dataset.all("products")
    assert records == expected
    descriptions = {r["description"] for r in records}
    assert 'Our "house" favourite.' in descriptions
    assert "Two lines:\nfirst, then second." in descriptions
    assert "Path-like text C:\\goods\\item" in descriptions
    assert "Smørrebrød board" in {r["name"] for r in records}


def test_a_third_resource_declared_in_the_test_is_generated_and_paged_over_http(session):
    spec = SandboxSpec(size=1200, days=3)
    server = SandboxServer(
        spec,
        api_key=SANDBOX_KEY,
        contracts={**CONTRACTS, "refunds": REFUNDS},
        resources={"refunds": REFUNDS_SANDBOX},
    )
    with server:
        assert server.resources == (*CONTRACTS, "refunds")
        since, before = "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
        expected = server.dataset.records("refunds", since, before)
        assert 0 < len(expected) < spec.size
        records, totals = vendor_window(
            session, server, "/v1/refunds", limit=37, updated_since=since, updated_before=before
        )
        assert records == expected
        assert totals == {len(expected)}
        # Faults and the live shop know the new resource like the others.
        server.faults.add("refunds", Fault.status(503))
        assert vendor_get(session, server, "/v1/refunds").status_code == 503
        server.update_now("refunds", expected[0]["id"])
        after = vendor_get(
            session, server, "/v1/refunds", updated_since=since, updated_before=before
        )
        assert after.json()["total"] == len(expected) - 1
        assert [r["id"] for r in server.live.records("refunds", None, None)] == [
            expected[0]["id"]
        ]
        everything = vendor_get(session, server, "/v1/refunds", limit=1000).json()
    assert everything["total"] == spec.size
    all_refunds = server.dataset.all("refunds")
    assert {r["id"] for r in all_refunds} == {f"ref_{n:06d}" for n in range(1, spec.size + 1)}
    for record in all_refunds:
        assert list(record) == [field.name for field in REFUNDS.fields]
        assert re.fullmatch(r"pay_\d{8}", record["payment_id"])
        assert record["reason"] in {None, "damaged", "late delivery", "changed my mind"}
        assert 100 <= Decimal(str(record["amount"])) * 100 <= 5_000
        assert record["created_at"] <= record["updated_at"]
    assert None in {r["reason"] for r in all_refunds}


def test_a_contract_without_sandbox_values_is_refused():
    with pytest.raises(ValueError, match="no SandboxResource for resource 'refunds'"):
        Dataset(SPEC, contracts={"refunds": REFUNDS})
    too_many = SandboxSpec(size=1_000_000, days=1)
    with pytest.raises(ValueError, match="overflows the ids"):
        Dataset(too_many, contracts={"refunds": REFUNDS}, resources={"refunds": REFUNDS_SANDBOX})


def test_recent_spec_ends_at_the_moment_it_is_built_and_today_holds_records():
    now = datetime(2026, 11, 29, 15, 4, 21, 123456, tzinfo=UTC)
    spec = SandboxSpec.recent(days=30, now=now, size=3000, seed=3)
    assert spec.start == datetime(2026, 10, 31, tzinfo=UTC)
    assert spec.end == now and spec.days == 30
    dataset = Dataset(spec)
    for resource in dataset.resources:
        keys = dataset.keys(resource)
        assert keys[0] == parse_timestamp_ms(spec.start)
        assert keys[-1] <= parse_timestamp_ms(now) - 1  # nothing after the moment it was built
        today = dataset.records(resource, datetime(2026, 11, 29, tzinfo=UTC))
        assert today[0]["updated_at"] == "2026-11-29T00:00:00.000Z"  # pinned
        assert len(today) > 1
        days = {record["updated_at"][:10] for record in dataset.all(resource)}
        assert days == {f"{spec.start + timedelta(days=d):%Y-%m-%d}" for d in range(30)}


def test_recent_spec_at_exactly_midnight_ends_with_the_day_before():
    midnight = datetime(2026, 11, 29, tzinfo=UTC)
    spec = SandboxSpec.recent(days=1, now=midnight, size=100)
    assert (spec.start, spec.end) == (datetime(2026, 11, 28, tzinfo=UTC), midnight)
    records = Dataset(spec).all("products")
    assert records[0]["updated_at"] == "2026-11-28T00:00:00.000Z"
    assert records[-1]["updated_at"] < "2026-11-29"


def test_recent_spec_by_default_holds_no_record_in_the_future():
    spec = SandboxSpec.recent(days=2, size=500)
    built_by = datetime.now(UTC)
    with pytest.raises(ValueError):
        SandboxSpec.recent(days=0)
    # Today, unless the clock passed midnight since.
    last_day = (spec.end - timedelta(milliseconds=1)).date()
    assert last_day in {built_by.date(), built_by.date() - timedelta(days=1)}
    assert spec.start.date() == last_day - timedelta(days=1)
    for resource in CONTRACTS:
        records = Dataset(spec).all(resource)
        latest = max(parse_timestamp_ms(r["updated_at"]) for r in records)
        assert latest <= parse_timestamp_ms(built_by)
        assert any(r["updated_at"].startswith(f"{last_day:%Y-%m-%d}") for r in records)


def test_fresh_mode_builds_the_same_records_as_the_cached_mode(session):
    cached_spec = SandboxSpec(size=2500, days=3, unknown_fields=True)
    fresh_spec = replace(cached_spec, cache_records=False)
    assert Dataset(fresh_spec) == Dataset(cached_spec)
    with (
        SandboxServer(cached_spec, api_key=SANDBOX_KEY) as cached,
        SandboxServer(fresh_spec, api_key=SANDBOX_KEY) as fresh,
    ):
        for resource in CONTRACTS:
            for params in (
                {"limit": 1000},
                {"offset": 1999, "limit": 7},
                {"updated_since": "2026-01-02T00:00:00Z", "offset": 13, "limit": 100},
            ):
                path = f"/v1/{resource}"
                one = vendor_get(session, cached, path, **params)
                other = vendor_get(session, fresh, path, **params)
                assert one.content == other.content  # byte for byte
                assert json.loads(one.content)["data"]


def test_fresh_mode_builds_only_the_records_of_the_page(session, monkeypatch):
    builds: list[int] = []
    build = sandbox_data.RecordBuilder.build

    def counting_build(self, number, updated_ms, created_now=False):
        builds.append(number)
        return build(self, number, updated_ms, created_now)

    monkeypatch.setattr(sandbox_data.RecordBuilder, "build", counting_build)
    spec = SandboxSpec(size=5000, days=3, cache_records=False)
    with SandboxServer(spec, api_key=SANDBOX_KEY) as fresh:
        for _ in range(2):  # the second time too: nothing is kept
            builds.clear()
            page = vendor_get(session, fresh, "/v1/order_payments", offset=3001, limit=7).json()
            assert [f"pay_{n:08d}" for n in builds] == [r["id"] for r in page["data"]]
    # The cached mode builds the page's whole chunk once, then nothing.
    with SandboxServer(replace(spec, cache_records=True), api_key=SANDBOX_KEY) as cached:
        builds.clear()
        assert vendor_get(session, cached, "/v1/order_payments", offset=3001, limit=7).ok
        assert len(builds) == 1000
        builds.clear()
        assert vendor_get(session, cached, "/v1/order_payments", offset=3001, limit=7).ok
        assert builds == []
