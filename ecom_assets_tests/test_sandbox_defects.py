"""Defect switches for the contract's "Behaviour a client must survive", each shown as it goes
out on the wire: non-finite numbers, twin and empty-named fields, one id twice, a vendor that
suddenly serves nothing, and defective `updated_at` values that keep the record's place."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import OMIT, Fault, SandboxServer
from ecom_assets_tests.support import SANDBOX_KEY, vendor_page, vendor_window

SPEC = SandboxSpec(size=600, days=3)
PAYMENTS = "order_payments"
DAY_1 = {"updated_since": "2026-01-02T00:00:00Z", "updated_before": "2026-01-03T00:00:00Z"}


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SPEC, api_key=SANDBOX_KEY) as running:
        yield running


def raw_record(text: str, record_id: str) -> str:
    """The JSON text of the record with `record_id` in a page body, as sent."""
    start = text.index(f'{{"id":"{record_id}"')
    return text[start : text.index("}", start) + 1]


def test_non_finite_numbers_go_out_as_the_tokens_some_encoders_emit(server, session):
    nan, inf, minus_inf, scored = server.dataset.records("order_payments", **_bounds())[:4]
    server.corrupt("order_payments", nan["id"], amount=float("nan"))
    server.corrupt("order_payments", inf["id"], amount=float("inf"))
    server.corrupt("order_payments", minus_inf["id"], amount=float("-inf"))
    server.corrupt("order_payments", scored["id"], fraud_score=float("nan"))

    response = vendor_page(session, server, "order_payments", limit=4, **DAY_1)

    text = response.text
    assert '"amount":NaN,' in raw_record(text, nan["id"])
    assert '"amount":Infinity,' in raw_record(text, inf["id"])
    assert '"amount":-Infinity,' in raw_record(text, minus_inf["id"])
    assert raw_record(text, scored["id"]).endswith(',"fraud_score":NaN}')
    # Not JSON by the RFC (strict decoders refuse it); Python's json module reads it.
    tokens: list[str] = []
    json.loads(text, parse_constant=lambda token: tokens.append(token))
    assert tokens == ["NaN", "Infinity", "-Infinity", "NaN"]
    data = json.loads(text)["data"]
    assert math.isnan(data[0]["amount"]) and data[1]["amount"] == math.inf
    assert data[2]["amount"] == -math.inf and math.isnan(data[3]["fraud_score"])
    assert data[3]["amount"] == scored["amount"]


def test_a_twin_field_and_a_field_named_empty_go_out_next_to_the_contracts(server, session):
    victim = server.dataset.records("order_payments", **_bounds())[2]
    server.corrupt("order_payments", victim["id"], customerId="cus_777777", **{"": "x"})

    text = vendor_page(session, server, "order_payments", limit=5, **DAY_1).text

    assert raw_record(text, victim["id"]) == json.dumps(
        {**victim, "customerId": "cus_777777", "": "x"}, ensure_ascii=False,
        separators=(",", ":"),
    )
    assert f'"customer_id":"{victim["customer_id"]}"' in raw_record(text, victim["id"])


def test_one_id_served_twice_with_different_content_in_one_window(server, session):
    window = server.dataset.records("order_payments", **_bounds())
    twin = window[9]
    server.duplicate("order_payments", twin["id"], amount="0.01", status="failed",
                     payment_method=OMIT)

    # Pages of 5 that split exactly between the record and its copy: offsets 5..9, 10..14.
    records, totals = vendor_window(session, server, "order_payments", limit=5, **DAY_1)

    assert totals == {len(window) + 1}, "total counts both"
    copy = {**twin, "amount": "0.01", "status": "failed"}
    del copy["payment_method"]
    assert records == [*window[:10], copy, *window[10:]]
    # The copy follows its record when the record moves, still right after it.
    server.update_now("order_payments", twin["id"])
    assert vendor_page(session, server, PAYMENTS, **DAY_1).json()["total"] == len(window) - 1
    latest = vendor_page(session, server, PAYMENTS, updated_since="2026-02-01T00:00:00Z").json()
    assert [r["id"] for r in latest["data"]] == [twin["id"], twin["id"]]
    assert latest["data"][1]["status"] == "failed"
    assert latest["data"][0]["updated_at"] == latest["data"][1]["updated_at"] > "2026-02"


def test_a_copy_given_an_updated_at_is_served_where_that_time_sorts_and_stays_there(
    server, session
):
    window = server.dataset.records("order_payments", **_bounds())
    twin = window[2]
    filed_at = window[-2]["updated_at"]
    server.duplicate("order_payments", twin["id"], amount="0.01", updated_at=filed_at)

    records, totals = vendor_window(session, server, "order_payments", limit=7, **DAY_1)

    copy = {**twin, "amount": "0.01", "updated_at": filed_at}
    assert totals == {len(window) + 1}
    # In (updated_at, id) order, like every other record.
    assert records == sorted([*window, copy], key=lambda r: (r["updated_at"], r["id"]))
    server.update_now("order_payments", twin["id"])
    records, _ = vendor_window(session, server, "order_payments", limit=7, **DAY_1)
    assert [r for r in records if r["id"] == twin["id"]] == [copy]
    server.delete("order_payments", twin["id"])
    records, _ = vendor_window(session, server, "order_payments", limit=7, **DAY_1)
    assert twin["id"] not in {r["id"] for r in records}
    # A defective updated_at files nothing: that copy follows its record.
    other = window[4]
    server.duplicate("order_payments", other["id"], updated_at="yesterday")
    records, _ = vendor_window(session, server, "order_payments", limit=7, **DAY_1)
    assert [r for r in records if r["id"] == other["id"]] == [
        other, {**other, "updated_at": "yesterday"}
    ]


def test_serve_empty_answers_every_list_of_the_resource_with_nothing_until_turned_off(
    server, session
):
    server.serve_empty("products", True)
    for params in ({}, {"offset": 100, "limit": 7}, DAY_1):
        response = vendor_page(session, server, "products", **params)
        assert response.text == '{"data":[],"total":0}'
        assert response.json() == {"data": [], "total": 0}
    # Only that resource, persistent (unlike a one-shot Fault.body), and faults still first.
    assert vendor_page(session, server, "order_payments").json()["total"] == SPEC.size
    server.faults.add("products", Fault.status(503))
    assert session.get(f"{server.base_url}/v1/products", params={"api_key": SANDBOX_KEY},
                       timeout=5).status_code == 503
    assert vendor_page(session, server, "products").json() == {"data": [], "total": 0}

    server.serve_empty("products", False)

    page = vendor_page(session, server, "products", limit=3).json()
    assert page["total"] == SPEC.size
    assert page["data"] == server.dataset.all("products")[:3]


@pytest.mark.parametrize("value", [None, 12345, "not-a-date", "9999-12-31T23:59:59.999Z", OMIT])
def test_a_defective_updated_at_keeps_the_records_place(server, session, value):
    window = server.dataset.records("products", **_bounds())
    victim = window[3]
    server.corrupt("products", victim["id"], updated_at=value)
    # A live record too: created now, then served with the same defect.
    live_id = server.live.create("products")
    server.corrupt("products", live_id, updated_at=value)

    page = vendor_page(session, server, "products", offset=2, limit=3, **DAY_1).json()

    assert page["total"] == len(window)
    expected = {**victim, "updated_at": value}
    if value is OMIT:
        del expected["updated_at"]
    assert page["data"] == [window[2], expected, window[4]]
    later = vendor_page(session, server, "products", updated_since="2026-02-01T00:00:00Z").json()
    assert later["total"] == 1
    [live] = later["data"]
    assert live["id"] == live_id
    assert live.get("updated_at", OMIT) == value
    # A far-future value does not move the record into a far-future window.
    assert vendor_page(session, server, "products", updated_since="9999-01-01T00:00:00Z").json() \
        == {
        "data": [], "total": 0, "offset": 0, "limit": 100,
    }


def test_a_defective_updated_at_of_a_moved_data_set_record_keeps_its_new_place(
    server, session
):
    window = server.dataset.records("order_payments", **_bounds())
    victim = window[0]
    server.update_now("order_payments", victim["id"])
    server.corrupt("order_payments", victim["id"], updated_at="9999-12-31T23:59:59.999Z")
    server.live.create("order_payments")  # after it in the (updated_at, id) order

    later = vendor_page(session, server, PAYMENTS, updated_since="2026-02-01T00:00:00Z").json()

    assert later["data"][0]["id"] == victim["id"]
    assert later["data"][0]["updated_at"] == "9999-12-31T23:59:59.999Z"
    assert later["total"] == 2
    assert vendor_page(session, server, PAYMENTS, **DAY_1).json()["total"] == len(window) - 1


def _bounds() -> dict[str, str]:
    return {"since": DAY_1["updated_since"], "before": DAY_1["updated_before"]}
