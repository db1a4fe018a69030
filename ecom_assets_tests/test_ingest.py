"""The dlt source on its own (no Dagster): batching, concurrency, rate-limit backoff."""

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from ecom_assets.ingest import (
    SyncReport,
    VendorAPIError,
    VendorSession,
    Warehouse,
    Window,
    ecom_source,
    http,
    quarantine,
    vendor_error_behind,
)
from ecom_assets.ingest.pagination import PaginationDriftError
from ecom_assets.ingest.prefetch import AdaptiveLimit
from ecom_assets.ingest.report import ResourceReport
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import OMIT, Fault, SandboxServer
from ecom_assets_tests.conftest import day, rows, timestamp

FIVE_DAYS = Window(day(0), day(5))


def load(
    sandbox: SandboxServer,
    api_key: str,
    database: Path,
    page_concurrency: int = 8,
    window: Window | None = FIVE_DAYS,
    replace: bool = False,
) -> ResourceReport:
    """A plain dlt run of the source: no Dagster involved."""
    report = SyncReport()
    with VendorSession(api_key, concurrency=page_concurrency) as session:
        source = ecom_source(
            sandbox.base_url,
            session,
            window=window,
            resources=["order_payments"],
            report=report,
            replace=replace,
        )
        Warehouse(duckdb_path=database).pipeline().run(source, loader_file_format="parquet")
    return report["order_payments"]


def test_a_window_larger_than_one_arrow_batch_loads_every_record_once(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(quarantine, "ARROW_BATCH_SIZE", 250)
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database)

    ids = [r[0] for r in rows(database, "select id from ecom.order_payments")]
    expected = {r["id"] for r in sandbox.dataset.records("order_payments", day(0), day(5))}
    assert len(ids) == len(set(ids)) == report.received == len(expected)
    assert set(ids) == expected


@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=1000, days=5, latency_ms=5)])
def test_concurrent_pages_are_bounded_and_load_what_the_sequential_path_loads(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    in_flight, peak, lock = 0, 0, threading.Lock()
    respond = sandbox.respond

    def counting_respond(target: str):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return respond(target)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(sandbox, "respond", counting_respond)
    sequential, concurrent = tmp_path / "sequential.duckdb", tmp_path / "concurrent.duckdb"

    load(sandbox, api_key, sequential, page_concurrency=1)
    assert peak == 1
    peak = 0
    load(sandbox, api_key, concurrent, page_concurrency=4)

    assert 1 < peak <= 4 + 1  # the workers plus the paginator's own request
    table = "select * exclude (_dlt_load_id) from ecom.order_payments order by id"
    assert rows(sequential, table) == rows(concurrent, table)


def test_429_halves_the_concurrency_and_success_brings_it_back() -> None:
    limit = AdaptiveLimit(8)
    limit.rate_limited(retry_after=0)
    limit.rate_limited(retry_after=0)
    assert limit.limit == 2
    for _ in range(2 + 3):
        limit.succeeded()
    assert limit.limit == 4
    for _ in range(100):
        limit.succeeded()
    assert limit.limit == 8


def test_a_retry_after_holds_back_every_request_of_the_session(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    # After the first page, two pages are requested at once: one is told to come back in
    # 1 s, the other is answered after 0.5 s. The page that worker fetches next waits for the
    # end of the vendor's 1 s too.
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.status(429, retry_after="1"))
    sandbox.faults.add("order_payments", Fault.stall(0.5))

    report = load(sandbox, api_key, tmp_path / "warehouse.duckdb", page_concurrency=2)

    assert report.received == len(sandbox.dataset.records("order_payments", day(0), day(5)))
    log = sandbox.request_log
    [limited] = [r for r in log if r.status == 429]
    pause_start, pause_end = limited.arrived_at, limited.arrived_at + 1.0
    assert [r for r in log if pause_start + 0.1 < r.arrived_at < pause_end] == []
    retried = [r for r in log if r.offset == limited.offset and r.status == 200]
    assert retried and retried[0].arrived_at >= pause_end


def test_rate_limited_concurrent_pages_still_load_everything(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.status(429, retry_after="0"), times=6)
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database, page_concurrency=8)

    assert report.received == len(sandbox.dataset.records("order_payments", day(0), day(5)))
    assert rows(database, "select count(distinct id) from ecom.order_payments") == [
        (report.received,)
    ]


@pytest.mark.parametrize("page_concurrency", [1, 8])
def test_a_redirected_page_is_followed_at_any_concurrency(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, page_concurrency: int
) -> None:
    sandbox.faults.add("order_payments", Fault.redirect(), times=3)
    database = tmp_path / "warehouse.duckdb"
    loaded: list[ResourceReport] = []
    # In a thread of its own: following a redirect once waited for the concurrency slot the
    # redirected request itself held, forever.
    worker = threading.Thread(
        target=lambda: loaded.append(load(sandbox, api_key, database, page_concurrency)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)

    assert not worker.is_alive(), "the load hung on a redirect"
    assert [r.status for r in sandbox.request_log].count(307) == 3
    expected = sandbox.dataset.records("order_payments", day(0), day(5))
    assert loaded[0].received == len(expected)
    assert rows(database, "select count(distinct id) from ecom.order_payments") == [
        (len(expected),)
    ]


def test_a_connection_closed_in_the_middle_of_a_page_is_retried(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.cut())
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database)

    expected = sandbox.dataset.records("order_payments", day(0), day(5))
    assert report.received == len(expected)
    assert rows(database, "select count(distinct id) from ecom.order_payments") == [
        (len(expected),)
    ]
    offsets = [r.offset for r in sandbox.request_log]
    assert len(offsets) == len(set(offsets)) + 1, "the page cut short was fetched again"


def test_closing_the_session_stops_page_workers_waiting_to_retry(
    sandbox: SandboxServer, api_key: str
) -> None:
    # The first page is served; every page fetched ahead of it is told to come back in 60 s,
    # as when a run fails on one page while the others are rate limited.
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.status(429, retry_after="60"), times=100)
    threads_before = set(threading.enumerate())
    session = VendorSession(api_key, concurrency=2)
    first_page = {"api_key": api_key, "limit": 100, "offset": 0}
    session.get(f"{sandbox.base_url}/v1/order_payments", params=first_page)
    deadline = time.monotonic() + 10
    while len(sandbox.request_log) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # until both workers got their 429 and wait to retry

    session.close()

    workers = [t for t in set(threading.enumerate()) - threads_before if "vendor-page" in t.name]
    assert workers
    for worker in workers:
        worker.join(timeout=10)
    assert not any(worker.is_alive() for worker in workers), "a worker still waits to retry"
    assert len(sandbox.request_log) == 3, "nothing was sent after the session closed"


@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=5000, days=1)])
def test_records_stream_to_dlt_while_the_window_is_still_being_paged(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    # 50 pages of 100 in one window; batches of 500 records.
    monkeypatch.setattr(quarantine, "ARROW_BATCH_SIZE", 500)
    pages_served_at_each_batch: list[int] = []
    report = SyncReport()
    with VendorSession(api_key, concurrency=8) as session:
        source = ecom_source(
            sandbox.base_url, session, window=Window(day(0), day(1)),
            resources=["order_payments"], report=report,
        )
        source.resources["order_payments"].add_map(
            lambda batch: pages_served_at_each_batch.append(len(sandbox.request_log)) or batch
        )
        pipeline = Warehouse(duckdb_path=tmp_path / "warehouse.duckdb").pipeline()
        pipeline.run(source, loader_file_format="parquet")

    assert report["order_payments"].received == 5000
    assert len(pages_served_at_each_batch) == 10
    # The first batch reached dlt after its 5 pages plus at most 16 fetched ahead: the window
    # is never gathered whole before dlt sees it.
    assert pages_served_at_each_batch[0] <= 5 + 16 + 1
    assert len(sandbox.request_log) >= 50


def test_a_window_paged_once_lets_the_merge_skip_deduplication_and_a_repaged_one_does_not(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, caplog
) -> None:
    database = tmp_path / "warehouse.duckdb"

    def deduplicated_hint() -> bool:
        """The hint in the schema dlt stored with the latest load."""
        [(schema,)] = rows(
            database, "select schema from ecom._dlt_version order by inserted_at desc limit 1"
        )
        return json.loads(schema)["tables"]["order_payments"].get(quarantine.DEDUPLICATED)

    load(sandbox, api_key, database)
    assert deduplicated_hint() is True
    # Skipping the deduplication is the design: dlt's warning about it is not shown.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

    # The window is paged again: the first pass's records are loaded twice before the merge.
    moved = sandbox.dataset.records("order_payments", day(0), day(5))[1]
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add(
        "order_payments", Fault.act(lambda: sandbox.update_now("order_payments", moved["id"]))
    )
    report = load(sandbox, api_key, database)

    assert report.fetched > report.received
    assert deduplicated_hint() is False
    ids = [r[0] for r in rows(database, "select id from ecom.order_payments")]
    assert len(ids) == len(set(ids)), "the merge deduplicated the pages loaded twice"


def test_a_record_updated_while_its_window_is_paged_lands_in_its_latest_version(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    database = tmp_path / "warehouse.duckdb"
    updated = sandbox.dataset.all("order_payments")[10]
    # Without a window end (or with a vendor clock behind the runner's), an update during
    # paging keeps the record in the window, at its end: the first pass receives its old and
    # its new version and misses another record, so the window is paged again, and the load
    # holds both versions.
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add(
        "order_payments", Fault.act(lambda: sandbox.update_now("order_payments", updated["id"]))
    )

    report = load(sandbox, api_key, database, window=None)

    assert report.fetched > report.received
    [latest] = sandbox.live.records("order_payments", None, None)
    assert latest["id"] == updated["id"]
    loaded = rows(database, "select updated_at from ecom.order_payments where id = ?", latest["id"])
    assert loaded == [(timestamp(latest["updated_at"]),)], "one row, the latest version"


def test_a_record_without_id_served_twice_does_not_hide_the_record_a_shift_skipped(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    database = tmp_path / "warehouse.duckdb"
    records = sandbox.dataset.all("order_payments")
    updated, id_less = records[150], records[200]
    sandbox.corrupt("order_payments", id_less["id"], id=OMIT)
    # Concurrent pages arrive in any order. Page 200 is served first, opening with the
    # defective record without an id; then a record of page 100 is updated, which, with no
    # window end, moves it to the end of the data set; then page 100 is served. It now closes
    # with the id-less record too, and the updated record is on neither page.
    page_200_served = threading.Event()
    first_page_100 = threading.Lock()
    respond = sandbox.respond

    def page_100_after_page_200_and_an_update(target: str):
        offset = parse_qs(urlsplit(target).query).get("offset", ["0"])[0]
        if offset == "100" and first_page_100.acquire(blocking=False):
            page_200_served.wait(10)
            sandbox.update_now("order_payments", updated["id"])
        reply = respond(target)
        if offset == "200":
            page_200_served.set()
        return reply

    monkeypatch.setattr(sandbox, "respond", page_100_after_page_200_and_an_update)

    report = load(sandbox, api_key, database, page_concurrency=4, window=None)

    assert report.fetched > report.received, "the repeated record was noticed: paged again"
    ids = {r[0] for r in rows(database, "select id from ecom.order_payments")}
    assert updated["id"] in ids
    assert ids == {r["id"] for r in records} - {id_less["id"]}
    assert rows(database, "select count(*) from ecom.order_payments_quarantine") == [(1,)]


@pytest.mark.parametrize("replace", [False, True], ids=["merge", "full-refresh"])
def test_identical_records_without_id_on_one_page_are_the_vendors_own_copies(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, caplog, replace: bool
) -> None:
    database = tmp_path / "warehouse.duckdb"
    records = sandbox.dataset.all("order_payments")
    field_names = records[0].keys()
    # Two defective records that are nothing but empty objects, in one response: one
    # snapshot of the vendor's data, so paging cannot have repeated either.
    for copy in (records[10], records[20]):
        sandbox.corrupt("order_payments", copy["id"], **dict.fromkeys(field_names, OMIT))

    report = load(sandbox, api_key, database, window=None, replace=replace)

    assert report.complete and report.fetched == report.received == 1000  # one pass
    assert "taken as the vendor's own copies" in caplog.text
    ids = {r[0] for r in rows(database, "select id from ecom.order_payments")}
    assert ids == {r["id"] for r in records} - {records[10]["id"], records[20]["id"]}
    assert report.valid == 998


def test_a_record_without_id_served_on_two_pages_fails_the_window_instead_of_hiding_another(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    records = sandbox.dataset.all("order_payments")
    tied, skipped = records[99], records[100]  # the two sides of the first page boundary
    # Two different defective records without an id, updated at the same instant: the
    # vendor's (updated_at, id) order has no tie-break for them, and its LIMIT/OFFSET query
    # serves one of them on both pages, the same on every pass, and never the other.
    sandbox.corrupt("order_payments", tied["id"], id=OMIT)
    sandbox.corrupt("order_payments", skipped["id"], id=OMIT, updated_at=tied["updated_at"])
    tied_as_served = {k: v for k, v in tied.items() if k != "id"}
    respond = sandbox.respond

    def without_tie_break(target: str):
        reply = respond(target)
        if parse_qs(urlsplit(target).query).get("offset") == ["100"] and reply.status == 200:
            body = json.loads(reply.body)
            body["data"][0] = tied_as_served
            reply = dataclasses.replace(reply, body=json.dumps(body).encode())
        return reply

    monkeypatch.setattr(sandbox, "respond", without_tie_break)

    with pytest.raises(PipelineStepFailed) as failure:
        load(sandbox, api_key, tmp_path / "warehouse.duckdb", window=None)

    drift = vendor_error_behind(failure.value)
    assert isinstance(drift, PaginationDriftError)
    message = str(drift)
    assert "received 1000 records (999 distinct): identical records without an id on two " in (
        message
    )
    assert "did not hold still over 3 passes" in message


def test_a_redirect_loop_fails_with_a_message_that_names_it_without_the_key(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    sandbox.faults.add("order_payments", Fault.redirect(), times=100)

    with pytest.raises(PipelineStepFailed) as failure:
        load(sandbox, api_key, tmp_path / "warehouse.duckdb", page_concurrency=1)

    causes = []
    cause: BaseException | None = failure.value
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    rejected = [c for c in causes if isinstance(c, VendorAPIError)]
    assert rejected and not rejected[0].retryable
    assert "redirect could not be followed (TooManyRedirects)" in str(rejected[0])
    assert api_key not in "".join(str(c) for c in causes)


def test_a_redirect_to_another_host_is_refused_and_the_key_not_sent_there(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    # localhost is this very sandbox, but another host by name: following would be seen.
    other_host = sandbox.base_url.replace("127.0.0.1", "localhost")
    sandbox.faults.add("order_payments", Fault.redirect(to_origin=other_host))

    with pytest.raises(PipelineStepFailed) as failure:
        load(sandbox, api_key, tmp_path / "warehouse.duckdb")

    assert "redirected to another host or to plain HTTP; not followed" in str(failure.value)
    assert api_key not in str(failure.value)
    assert [r.status for r in sandbox.request_log] == [307], "the hop was never sent"


@pytest.mark.parametrize(
    ("origin", "hop", "followed"),
    [
        ("https://api.example.com/v1/x", "https://api.example.com:8443/v1/x", True),
        ("http://api.example.com/v1/x", "https://api.example.com/v1/x", True),
        ("https://api.example.com/v1/x", "http://api.example.com/v1/x", False),
        ("https://api.example.com/v1/x", "https://example.org/v1/x", False),
    ],
)
def test_redirects_stay_with_the_vendor_host_and_never_downgrade_to_http(
    origin: str, hop: str, followed: bool
) -> None:
    assert http.redirect_stays_with_vendor(urlsplit(origin), urlsplit(hop)) is followed


def test_vendor_numbers_stay_json_numbers_in_quarantine_and_unknown_field_columns(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    database = tmp_path / "warehouse.duckdb"
    records = sandbox.dataset.all("order_payments")
    defective, extended = records[3], records[4]
    # Three decimals: defective money, sent as a JSON number. A new field with a fraction.
    sandbox.corrupt("order_payments", defective["id"], amount=12.345)
    sandbox.corrupt("order_payments", extended["id"], fee=1.5, fee_count=2)

    load(sandbox, api_key, database, window=None)

    [(raw_record,)] = rows(database, "select raw_record from ecom.order_payments_quarantine")
    assert '"amount": 12.345' in raw_record  # as the vendor sent it, not "12.345"
    assert json.loads(raw_record)["id"] == defective["id"]
    [(fee, fee_count)] = rows(
        database, "select fee, fee_count from ecom.order_payments where id = ?", extended["id"]
    )
    assert (fee, fee_count) == ("1.5", "2")
