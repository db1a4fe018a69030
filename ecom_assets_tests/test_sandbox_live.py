"""The live shop: changes and creations at rates, late arrivals, and every page one consistent
snapshot of the shop however fast it changes, with exact rank/select over many changes."""

from __future__ import annotations

import random
import sys
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from ecom_assets.sandbox.data import SandboxSpec, format_timestamp_ms, parse_timestamp_ms
from ecom_assets.sandbox.live import Change, now_ms
from ecom_assets.sandbox.server import VERSION_HEADER, SandboxServer
from ecom_assets_tests.support import SANDBOX_KEY, vendor_page

PAYMENTS = "order_payments"


def wait_for(condition: Callable[[], bool], timeout: float = 4) -> None:
    """Poll until `condition` holds: progress of the change thread, not its speed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the shop never got there"
        time.sleep(0.005)


class Model:
    """The shop as its journal says it is: id -> updated_at ms, replayed change by change."""

    def __init__(self, server: SandboxServer, resource: str) -> None:
        self.resource = resource
        self.state = {
            r["id"]: parse_timestamp_ms(r["updated_at"]) for r in server.dataset.all(resource)
        }
        self.version = 0

    def advance(self, journal: list[Change], version: int) -> None:
        assert version >= self.version
        for change in journal[self.version : version]:
            if change.resource != self.resource:
                continue
            if change.kind == "delete":
                del self.state[change.record_id]
            else:
                self.state[change.record_id] = change.updated_ms
        self.version = version

    def window(self, since: str | None, before: str | None) -> list[tuple[int, str]]:
        lo = -(1 << 62) if since is None else parse_timestamp_ms(since)
        hi = 1 << 62 if before is None else parse_timestamp_ms(before)
        return sorted((ms, rid) for rid, ms in self.state.items() if lo <= ms < hi)

    def page(self, since: str | None, before: str | None, offset: int, limit: int
             ) -> tuple[int, list[tuple[str, str]]]:
        """The window's total and its records' (id, updated_at) at [offset, offset + limit)."""
        window = self.window(since, before)
        return len(window), [
            (rid, format_timestamp_ms(ms)) for ms, rid in window[offset : offset + limit]
        ]


def keys_of(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["id"], r["updated_at"]) for r in records]


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Python threads take turns every 5 ms; much more often, a race between a request and
    the changes shows up within a few hundred requests."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_every_page_is_one_snapshot_of_the_shop_under_a_high_change_rate(
    session, frequent_thread_switches
):
    """Each response's `total` and records must be those of the shop at one version, the
    one its header names: a server that counted and selected at different instants fails
    here, as changes land between any two steps of a request."""
    spec = SandboxSpec(size=2000, days=2)
    started = format_timestamp_ms(now_ms() - 1000)
    server = SandboxServer(
        spec, api_key=SANDBOX_KEY, changes_per_second=3000, creates_per_second=800, journal=True
    )
    windows = [
        (None, None),
        ("2026-01-01T06:00:00Z", "2026-01-02T06:00:00Z"),
        (started, None),  # where the changed and created records go
    ]
    ids = [record["id"] for record in server.dataset.all(PAYMENTS)]
    done = threading.Event()

    def keep_changing() -> None:  # on top of the rates: a change whenever this thread runs
        rng = random.Random(3)
        while not done.wait(0.0001):
            server.live.update(PAYMENTS, rng.choice(ids), now_ms())

    responses = []
    with server:
        changer = threading.Thread(target=keep_changing)
        changer.start()
        try:
            while len(responses) < 180 or len({r[4] for r in responses}) < 40:
                assert len(responses) < 5000, "the shop hardly changed"
                for since, before in windows:
                    for offset, limit in ((0, 100), (37, 50), (900, 100), (1900, 211)):
                        response = vendor_page(
                            session, server, PAYMENTS, updated_since=since,
                            updated_before=before, offset=offset, limit=limit,
                        )
                        version = int(response.headers[VERSION_HEADER])
                        responses.append((since, before, offset, limit, version, response.json()))
        finally:
            done.set()
            changer.join()
        server.live.stop()
        journal = server.live.journal
    assert [change.version for change in journal] == list(range(1, len(journal) + 1))
    model = Model(server, PAYMENTS)
    checked_moving = 0
    for since, before, offset, limit, version, page in sorted(responses, key=lambda r: r[4]):
        model.advance(journal, version)
        assert (page["total"], keys_of(page["data"])) == model.page(since, before, offset, limit)
        checked_moving += since == started and bool(page["data"])
    assert checked_moving > 10


def test_pages_fetched_while_the_changes_are_held_cover_the_window_exactly(session):
    spec = SandboxSpec(size=1500, days=2)
    server = SandboxServer(
        spec, api_key=SANDBOX_KEY, changes_per_second=2000, creates_per_second=500, journal=True
    )
    with server:
        for _ in range(3):
            with server.live.paused():
                version = server.live.version
                records: list[dict] = []
                totals, versions = set(), set()
                while True:
                    response = vendor_page(session, server, PAYMENTS, offset=len(records), limit=61)
                    page = response.json()
                    totals.add(page["total"])
                    versions.add(int(response.headers[VERSION_HEADER]))
                    if not page["data"]:
                        break
                    records += page["data"]
                window = server.window(PAYMENTS)
                creations = sum(
                    c.kind == "create" and c.resource == PAYMENTS for c in server.live.journal
                )
            assert versions == {version}
            assert totals == {len(records)} == {spec.size + creations}
            assert records == window
            assert len({r["id"] for r in records}) == len(records)
            assert keys_of(records) == sorted(keys_of(records), key=lambda k: (k[1], k[0]))
            wait_for(lambda v=version: server.live.version > v + 100)  # changes resume


def test_changes_and_creations_run_at_their_rates_and_move_records_to_now(session):
    spec = SandboxSpec(size=50, days=2)
    started = now_ms()
    server = SandboxServer(
        spec, api_key=SANDBOX_KEY, changes_per_second=500, creates_per_second=200, journal=True
    )
    with server:
        wait_for(lambda: server.live.version >= 400)
        server.live.stop()
        stopped = now_ms()
        journal = server.live.journal
        version = server.live.version
        time.sleep(0.05)
        assert server.live.version == version, "stop() ends the background changes"
        in_span = vendor_page(
            session, server, PAYMENTS, updated_before="2026-01-03T00:00:00Z"
        ).json()
        recent = vendor_page(session, server, PAYMENTS, updated_since=format_timestamp_ms(started),
                     limit=1000).json()
    kinds = Counter(change.kind for change in journal)
    # A batch applies int(rate * elapsed) of each: never more creations than changes.
    assert kinds["update"] > kinds["create"] > 0 and set(kinds) == {"update", "create"}
    assert all(started <= change.updated_ms <= stopped for change in journal)
    updated = {c.record_id for c in journal if c.kind == "update"}
    created = {c.record_id for c in journal if c.kind == "create"}
    data_set_ids = {r["id"] for r in server.dataset.all(PAYMENTS)}
    assert updated & data_set_ids and updated & created, "both kinds of record change"
    assert created.isdisjoint(data_set_ids)
    payment_ids = sorted(c.record_id for c in journal if c.kind == "create" and
                         c.resource == PAYMENTS)
    assert payment_ids == [f"pay_{n:08d}" for n in range(51, 51 + len(payment_ids))]
    # A changed data set record left its window; everything changed or new is at now.
    moved = data_set_ids & updated
    assert in_span["total"] == spec.size - len(moved)
    assert {r["id"] for r in recent["data"]} == moved | set(payment_ids)
    latest = {c.record_id: c.updated_ms for c in journal}
    assert all(parse_timestamp_ms(r["updated_at"]) == latest[r["id"]] for r in recent["data"])


def test_late_arrivals_are_dated_up_to_late_arrival_ms_before_now(session):
    late_ms = 60_000
    server = SandboxServer(
        SandboxSpec(size=100, days=1), api_key=SANDBOX_KEY, changes_per_second=300,
        creates_per_second=1000, late_arrival_ms=late_ms, journal=True,
    )
    started = now_ms()
    with server:
        wait_for(lambda: server.live.version >= 400)
        server.live.stop()
        stopped = now_ms()
        journal = server.live.journal
        window = vendor_page(session, server, "products",
                     updated_since=format_timestamp_ms(started - late_ms), limit=1000).json()
    created = [c for c in journal if c.kind == "create"]
    assert all(started - late_ms <= c.updated_ms <= stopped for c in created)
    # Uniform over the last minute: hundreds of them are never all within the last second.
    assert min(c.updated_ms for c in created) < started - 1000
    assert [c.updated_ms for c in created] != sorted(c.updated_ms for c in created)
    # A late change never dates a record before its previous updated_at.
    previous = {r["id"]: parse_timestamp_ms(r["updated_at"])
                for resource in server.resources for r in server.dataset.all(resource)}
    for change in journal:
        assert change.updated_ms >= previous.get(change.record_id, -1)
        previous[change.record_id] = change.updated_ms
    # Served in (updated_at, id) order, so late arrivals sit among earlier records.
    records = keys_of(window["data"])
    assert records == sorted(records, key=lambda k: (k[1], k[0]))
    assert [r[0] for r in records] != sorted(r[0] for r in records)


def test_rank_and_select_stay_exact_with_many_changed_records(session):
    """10,000 of 100,000 records moved (inside the span and to now), some deleted, created and
    served twice: every page and total is still exact."""
    spec = SandboxSpec(size=100_000, days=10, cache_records=False)
    server = SandboxServer(spec, api_key=SANDBOX_KEY)
    dataset, live = server.dataset, server.live
    rng = random.Random(11)
    state = dict(zip(dataset.numbers(PAYMENTS), dataset.keys(PAYMENTS), strict=True))
    start_ms, end_ms = dataset.keys(PAYMENTS)[0], dataset.keys(PAYMENTS)[-1]
    moved = set(rng.sample(range(1, spec.size + 1), 10_000))
    for number in moved:
        ms = rng.randint(start_ms, end_ms) if rng.random() < 0.7 else now_ms()
        live.update(PAYMENTS, f"pay_{number:08d}", ms)
        state[number] = ms
    deleted = set(rng.sample(list(state), 500))
    for number in deleted:
        live.delete(PAYMENTS, f"pay_{number:08d}")
        del state[number]
    for _ in range(500):
        ms = rng.randint(start_ms, end_ms)
        state[int(live.create(PAYMENTS, ms)[4:])] = ms
    copies = Counter(rng.sample(list(state), 50))
    for number in copies:
        server.duplicate(PAYMENTS, f"pay_{number:08d}", status="failed")
    # Live records: the moved ones still there, and the created ones.
    assert len(live.records(PAYMENTS, None, None)) == len(moved - deleted) + 500
    model = sorted(
        (ms, number) for number, ms in state.items() for _ in range(1 + copies[number])
    )
    model_keys = [ms for ms, _ in model]
    with server:
        for _ in range(40):
            since = rng.choice([None, rng.randint(start_ms, end_ms)])
            before = rng.choice([None, rng.randint(start_ms, end_ms + 1)])
            lo = 0 if since is None else bisect_left(model_keys, since)
            hi = len(model_keys) if before is None else max(lo, bisect_left(model_keys, before))
            offset, limit = rng.randint(0, max(hi - lo - 50, 0)), rng.choice([1, 100, 1000])
            page = vendor_page(
                session, server, PAYMENTS, offset=offset, limit=limit,
                updated_since=None if since is None else format_timestamp_ms(since),
                updated_before=None if before is None else format_timestamp_ms(before),
            ).json()
            assert page["total"] == hi - lo
            expected = model[lo + offset : min(lo + offset + limit, hi)]
            assert keys_of(page["data"]) == [
                (f"pay_{number:08d}", format_timestamp_ms(ms)) for ms, number in expected
            ]


def test_the_interval_tick_creates_records_and_updates_one_as_before():
    spec = SandboxSpec(size=100, days=2)
    with SandboxServer(spec, api_key=SANDBOX_KEY, live_interval_s=0.02, live_per_tick=2) as ticking:
        wait_for(lambda: len(ticking.live.records("products", None, None)) >= 6)
        ticking.live.stop()
        live_ids = [r["id"] for r in ticking.live.records("products", None, None)]
    assert sorted(live_ids) == [f"prd_{n:07d}" for n in range(101, 101 + len(live_ids))]
    # On demand: per resource, `per_tick` creations and one update of a live record.
    with SandboxServer(spec, api_key=SANDBOX_KEY, live_per_tick=3, journal=True) as shop:
        shop.live.tick()
        assert Counter((c.resource, c.kind) for c in shop.live.journal) == {
            ("order_payments", "create"): 3, ("order_payments", "update"): 1,
            ("products", "create"): 3, ("products", "update"): 1,
        }
        assert len(shop.live.records(PAYMENTS, None, None)) == 3


def test_update_now_moves_a_record_and_the_records_behind_it_shift(session):
    spec = SandboxSpec(size=500, days=2)
    with SandboxServer(spec, api_key=SANDBOX_KEY) as server:
        window = server.dataset.records(PAYMENTS, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
        bounds = {"updated_since": "2026-01-01T00:00:00Z",
                  "updated_before": "2026-01-02T00:00:00Z"}
        server.update_now(PAYMENTS, window[5]["id"])
        page = vendor_page(session, server, PAYMENTS, offset=5, limit=2, **bounds).json()
        assert page["total"] == len(window) - 1
        assert page["data"] == window[6:8]
        [moved] = server.live.records(PAYMENTS, None, None)
        assert moved["id"] == window[5]["id"]
        assert {k: v for k, v in moved.items() if k != "updated_at"} == {
            k: v for k, v in window[5].items() if k != "updated_at"
        }
        # Moving it again keeps one live copy; a record of the data set can also be moved by
        # the record itself.
        server.live.move_to_now(PAYMENTS, moved)
        server.live.move_to_now(PAYMENTS, window[6])
        assert [r["id"] for r in server.live.records(PAYMENTS, None, None)] == [
            window[5]["id"], window[6]["id"]
        ]
        with pytest.raises(ValueError):
            server.update_now(PAYMENTS, "pay_99999999")


def test_a_deleted_record_is_in_no_window_any_more(session):
    with SandboxServer(SandboxSpec(size=300, days=2), api_key=SANDBOX_KEY) as server:
        victim = server.dataset.all("products")[42]
        server.delete("products", victim["id"])
        records = vendor_page(session, server, "products", limit=1000).json()
        assert records["total"] == 299
        assert victim["id"] not in {r["id"] for r in records["data"]}
        with pytest.raises(ValueError):
            server.delete("products", victim["id"])
        with pytest.raises(ValueError):
            server.update_now("products", victim["id"])
        created = server.live.create("products")
        server.delete("products", created)
        assert vendor_page(session, server, "products", limit=1).json()["total"] == 299
