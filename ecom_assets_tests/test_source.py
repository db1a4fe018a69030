"""The dlt source on its own (no Dagster): batching, concurrency, retries, redirects."""

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from ecom_assets.contract import CONTRACTS
from ecom_assets.ingest import (
    ResourceReport,
    SyncReport,
    VendorAPIError,
    VendorSession,
    Warehouse,
    Window,
    ecom_source,
    quarantine,
)
from ecom_assets.ingest.pagination import ReconciledPagesPaginator
from ecom_assets.ingest.vendor_session import AdaptiveLimit, redirect_stays_with_vendor
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import OMIT, Fault, SandboxServer
from ecom_assets_tests.support import day, rows

FIVE_DAYS = Window(day(0), day(5))


def load(
    sandbox: SandboxServer,
    api_key: str,
    database: Path,
    page_concurrency: int = 8,
    window: Window = FIVE_DAYS,
    session: VendorSession | None = None,
) -> ResourceReport:
    """A plain dlt run of the source: no Dagster involved."""
    report = SyncReport()
    with session or VendorSession(api_key, concurrency=page_concurrency) as vendor:
        source = ecom_source(
            sandbox.base_url, vendor, window, contracts=[CONTRACTS["order_payments"]],
            report=report,
        )
        warehouse = Warehouse(duckdb_path=database, pipelines_dir=database.parent / "dlt")
        warehouse.pipeline("run").run(source, loader_file_format="parquet")
    return report["order_payments"]


def assert_the_window_loaded_once(sandbox: SandboxServer, database: Path, loaded: int) -> None:
    """Every record of the sandbox's first five days handed to dlt once, and in the table."""
    expected = sandbox.dataset.records("order_payments", day(0), day(5))
    assert loaded == len(expected)
    assert rows(database, "select count(distinct id) from ecom.order_payments") == [
        (len(expected),)
    ]


def test_a_window_larger_than_one_arrow_batch_loads_every_record_once(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(quarantine, "ARROW_BATCH_SIZE", 250)
    handed: list[int] = []  # rows of each Arrow table handed to dlt
    hand_over = quarantine.QuarantineRouter._hand_over
    monkeypatch.setattr(quarantine.QuarantineRouter, "_hand_over", lambda router, *args: (
        table := hand_over(router, *args), handed.append(table.data.num_rows))[0])
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database)

    ids = [r[0] for r in rows(database, "select id from ecom.order_payments")]
    expected = {r["id"] for r in sandbox.dataset.records("order_payments", day(0), day(5))}
    assert len(ids) == len(set(ids)) == report.loaded == len(expected)
    assert set(ids) == expected
    assert len(handed) > 1 and max(handed) <= 250


def test_dlt_walks_each_reconciled_part_of_the_window_as_one_page(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    # dlt's client costs as much per page it walks, whatever the page holds.
    walked: list[int] = []
    update_state = ReconciledPagesPaginator.update_state

    def counting(paginator: ReconciledPagesPaginator, response, data=None) -> None:
        walked.append(len(data or []))
        update_state(paginator, response, data)

    monkeypatch.setattr(ReconciledPagesPaginator, "update_state", counting)
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database)

    assert_the_window_loaded_once(sandbox, database, report.loaded)
    assert len(walked) == report.units < report.requests
    assert sum(walked) == report.loaded


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

    assert 1 < peak <= 4
    table = "select * exclude (_dlt_load_id) from ecom.order_payments order by id"
    assert rows(sequential, table) == rows(concurrent, table)


def test_requests_are_prepared_in_full_once_per_resource_not_for_each_page(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    # requests' full preparation is a third of what fetching a page costs: done once for the
    # resource's URL, and neither for each page sent nor again for each page dlt walks.
    prepared = []
    prepare = requests.Session.prepare_request

    def counting_prepare(session: requests.Session, request: requests.Request):
        prepared.append(request.url)
        return prepare(session, request)

    monkeypatch.setattr(requests.Session, "prepare_request", counting_prepare)
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database)

    assert report.requests == len(sandbox.request_log) > 1
    assert prepared == [f"{sandbox.base_url}/v1/order_payments"]
    [(loaded,)] = rows(database, "select count(*) from ecom.order_payments")
    assert loaded == report.loaded == report.vendor_total


@pytest.mark.unit
@pytest.mark.parametrize("cookie", [None, "lb=7"])
def test_a_page_request_is_what_requests_prepares_with_the_key_and_any_vendor_cookie(
    cookie: str | None,
) -> None:
    url, params = "https://api.example.com/v1/order_payments", {
        **Window(day(0), day(1)).query_params(), "offset": 200, "limit": 100,
    }
    auth = APIKeyAuth(name="api_key", api_key="k&=/ ey", location="query")
    with VendorSession("k&=/ ey") as vendor:
        vendor.prepare_get(url, params, auth)  # the URL's template, prepared without a cookie
        if cookie:  # as if the vendor had set one since
            vendor.cookies.set(*cookie.split("="), domain="api.example.com")
        expected = vendor.prepare_request(
            requests.Request("GET", url, params=params, auth=auth)
        )

        request = vendor.prepare_get(url, params, auth)

    assert urlsplit(request.url).path == urlsplit(expected.url).path
    # The same parameters, encoded alike: only their order differs (the key's comes first).
    assert sorted(urlsplit(request.url).query.split("&")) == sorted(
        urlsplit(expected.url).query.split("&")
    )
    assert request.headers == expected.headers
    assert request.headers.get("Cookie") == cookie


def test_pages_go_through_the_proxy_the_environment_names(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    forwarded: list[str] = []

    class ForwardingProxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            forwarded.append(self.path)
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                reply = direct.open(self.path)
            except urllib.error.HTTPError as error:
                reply = error
            with reply:
                body = reply.read()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.headers["Content-Type"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), ForwardingProxy) as proxy:
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        try:
            report = load(sandbox, api_key, tmp_path / "warehouse.duckdb")
        finally:
            proxy.shutdown()

    assert len(forwarded) == report.requests == len(sandbox.request_log) > 1
    assert all(path.startswith(f"{sandbox.base_url}/v1/order_payments?") for path in forwarded)
    assert report.loaded == report.vendor_total > 0


@pytest.mark.unit
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

    assert report.loaded == len(sandbox.dataset.records("order_payments", day(0), day(5)))
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

    assert report.loaded == len(sandbox.dataset.records("order_payments", day(0), day(5)))
    assert rows(database, "select count(distinct id) from ecom.order_payments") == [
        (report.loaded,)
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
    assert_the_window_loaded_once(sandbox, database, loaded[0].loaded)


def test_a_connection_closed_in_the_middle_of_a_page_is_retried(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.cut())
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database)

    assert_the_window_loaded_once(sandbox, database, report.loaded)
    offsets = [r.offset for r in sandbox.request_log]
    assert len(offsets) == len(set(offsets)) + 1, "the page cut short was fetched again"


def test_a_page_whose_compression_is_garbled_is_retried(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.raw(
        200, "not gzip at all", headers=(("Content-Encoding", "gzip"),)
    ))
    database = tmp_path / "warehouse.duckdb"

    report = load(sandbox, api_key, database)

    assert_the_window_loaded_once(sandbox, database, report.loaded)


def test_closing_the_session_stops_page_workers_waiting_to_retry(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    # The first page is served; every page fetched after it is told to come back in 60 s, as
    # when a run is stopped while its pages are rate limited.
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add("order_payments", Fault.status(429, retry_after="60"), times=100)
    session = VendorSession(api_key, concurrency=2)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            load(sandbox, api_key, tmp_path / "warehouse.duckdb", session=session)
        except PipelineStepFailed as exc:
            failures.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while len(sandbox.request_log) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # until a worker got its 429
    # Every worker now waits: to retry its 429, or held back by that Retry-After if its own
    # request had not gone out before the 429 came (which one depends on the machine's load).
    time.sleep(0.2)
    sent = len(sandbox.request_log)

    session.close()
    worker.join(timeout=10)

    assert not worker.is_alive(), "the load still waits to retry"
    assert failures and "the session is closed" in str(failures[0])
    assert sent in (2, 3) and len(sandbox.request_log) == sent, "nothing sent after closing"


@pytest.mark.parametrize("sandbox_spec", [SandboxSpec(size=15_000, days=1)])
def test_records_reach_dlt_part_by_part_before_the_window_is_read_whole(
    sandbox: SandboxServer, api_key: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(quarantine, "ARROW_BATCH_SIZE", 500)
    pages_served_at_each_batch: list[int] = []
    report = SyncReport()
    with VendorSession(api_key, concurrency=8) as session:
        source = ecom_source(
            sandbox.base_url, session, Window(day(0), day(1)),
            contracts=[CONTRACTS["order_payments"]], report=report,
        )
        source.resources["order_payments"].add_map(
            lambda batch: pages_served_at_each_batch.append(len(sandbox.request_log)) or batch
        )
        pipeline = Warehouse(duckdb_path=tmp_path / "warehouse.duckdb",
                             pipelines_dir=tmp_path / "dlt").pipeline("run")
        pipeline.run(source, loader_file_format="parquet")

    assert report["order_payments"].loaded == 15_000 and report["order_payments"].units > 1
    # The first part reached dlt while later parts were still to be read: the window is never
    # held whole, only the parts being read.
    assert pages_served_at_each_batch[0] < len(sandbox.request_log) - 50


def test_a_load_of_distinct_records_lets_the_merge_skip_deduplication_and_one_twice_not(
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

    # A window reaching past now, and a record updated on every request: the part of the window
    # near now is read twice, and lists the record in two versions.
    moved = sandbox.dataset.records("order_payments", day(0), day(5))[1]
    sandbox.faults.add("order_payments", Fault.act(
        lambda: sandbox.update_now("order_payments", moved["id"])
    ), times=40)
    report = load(sandbox, api_key, database, window=TO_TOMORROW)

    assert report.loaded > report.distinct_loaded
    assert deduplicated_hint() is False
    ids = [r[0] for r in rows(database, "select id from ecom.order_payments")]
    assert len(ids) == len(set(ids)), "the merge deduplicated the record listed twice"
    [latest] = rows(database, "select updated_at from ecom.order_payments where id = ?",
                    moved["id"])
    assert latest[0].date() == datetime.now(UTC).date(), "its latest version"


# A window without a real end: records updated while it is read stay inside it.
TO_TOMORROW = Window.between(day(0), datetime.now(UTC) + timedelta(days=1))


def test_identical_records_without_id_are_one_record_once_one_response_shows_both(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    database = tmp_path / "warehouse.duckdb"
    records = sandbox.dataset.all("order_payments")
    field_names = records[0].keys()
    # Two defective records that are nothing but empty objects: indistinguishable.
    for copy in (records[10], records[20]):
        sandbox.corrupt("order_payments", copy["id"], **dict.fromkeys(field_names, OMIT))

    report = load(sandbox, api_key, database, window=TO_TOMORROW)

    assert report.complete and report.duplicate_copies == 1
    ids = {r[0] for r in rows(database, "select id from ecom.order_payments")}
    assert ids == {r["id"] for r in records} - {records[10]["id"], records[20]["id"]}
    assert report.loaded == 998
    assert rows(database, "select count(*) from ecom.order_payments_quarantine") == [(1,)]


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
    assert "the vendor's redirects went round in a loop" in str(rejected[0])
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


@pytest.mark.unit
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
    assert redirect_stays_with_vendor(origin, hop) is followed


def test_vendor_numbers_stay_json_numbers_in_quarantine_and_unknown_field_columns(
    sandbox: SandboxServer, api_key: str, tmp_path: Path
) -> None:
    database = tmp_path / "warehouse.duckdb"
    records = sandbox.dataset.all("order_payments")
    defective, extended = records[3], records[4]
    # Three decimals: defective money, sent as a JSON number. A new field with a fraction.
    sandbox.corrupt("order_payments", defective["id"], amount=12.345)
    sandbox.corrupt("order_payments", extended["id"], fee=1.5, fee_count=2)

    load(sandbox, api_key, database, window=TO_TOMORROW)

    [(raw_record,)] = rows(database, "select raw_record from ecom.order_payments_quarantine")
    assert '"amount": 12.345' in raw_record  # as the vendor sent it, not "12.345"
    assert json.loads(raw_record)["id"] == defective["id"]
    [(fee, fee_count)] = rows(
        database, "select fee, fee_count from ecom.order_payments where id = ?", extended["id"]
    )
    assert (fee, fee_count) == ("1.5", "2")
