"""The window reader against a vendor in memory: convergence while records keep changing.

Each request to `MemoryVendor` is one instant of the vendor, as a real server's LIMIT/OFFSET query
over a consistent snapshot is; between requests, a test moves records the way a shop does.
"""

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecom_assets.contract import parse_timestamp
from ecom_assets.ingest import reader
from ecom_assets.ingest.errors import (
    UnreconciledWindowError,
    VendorAPIError,
    VendorResponseError,
)
from ecom_assets.ingest.pages import MAX_PAGE_SIZE, DefectiveRecord
from ecom_assets.ingest.reader import EMPTY_PASSES, MAX_UNIT_RECORDS, Fetch, WindowReader
from ecom_assets.ingest.report import ResourceReport
from ecom_assets.ingest.vendor_json import parse_vendor_json
from ecom_assets.ingest.window import CLOCK_SKEW, EPOCH, Window, rfc3339

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = Window(START, START + timedelta(days=1))
NOW = START + timedelta(days=30)
# The reader's wait before asking again how many records the vendor holds.
NO_WAIT = lambda attempt: 0.0  # noqa: E731
TWO_DAYS = Window(START, START + timedelta(days=2))


class Response:
    """What the reader reads of a response: its parsed JSON."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def json(self) -> dict[str, Any]:
        return self.body


class MemoryVendor:
    """Records kept in (`updated_at`, `id`) order; `before_request` runs before each answer."""

    def __init__(self, count: int, window: Window = DAY, seed: int = 1) -> None:
        rand = random.Random(seed)
        span_ms = int(window.duration.total_seconds() * 1000)
        self.records = [
            {"id": f"pay_{n:08d}", "updated_at": rfc3339(
                window.start + timedelta(milliseconds=rand.randrange(span_ms)))}
            for n in range(count)
        ]
        self.sort()
        self.now = NOW
        self.requests = 0
        self._lock = threading.Lock()  # the reader's workers call concurrently
        self.before_request: Callable[[MemoryVendor], None] = lambda vendor: None

    def sort(self) -> None:
        self.records.sort(key=lambda r: (r["updated_at"], r["id"]))

    def fetch(self, window: Window, offset: int, limit: int) -> tuple[str, Response]:
        with self._lock:
            self.requests += 1
            self.before_request(self)
            since, before = rfc3339(window.start), rfc3339(window.end)
            listed = [r for r in self.records if since <= r["updated_at"] < before]
            page = [dict(r) for r in listed[offset : offset + limit]]
        url = f"http://vendor/v1/order_payments?since={since}&before={before}&offset={offset}"
        return url, Response({"data": page, "total": len(listed)})

    def update(self, record: dict[str, Any]) -> None:
        """The record changes now: it moves to the end of the order."""
        self.now += timedelta(milliseconds=1)
        record["updated_at"] = rfc3339(self.now)
        record["version"] = record.get("version", 0) + 1
        self.sort()

    def answering_nothing_to(self, *requests: int) -> Fetch:
        """`fetch`, but the `requests` (counted from 1) answer `{"data": [], "total": 0}`,
        as an outage now and then does for a window that has records."""
        counter, lock = itertools.count(1), threading.Lock()

        def fetch(window: Window, offset: int, limit: int) -> tuple[str, Response]:
            with lock:
                empty = next(counter) in requests
            url, response = self.fetch(window, offset, limit)
            return url, Response({"data": [], "total": 0}) if empty else response

        return fetch


def read(vendor: MemoryVendor, window: Window = DAY, late: timedelta = timedelta(0),
         concurrency: int = 4, fetch: Fetch | None = None,
         outage_backoff: Callable[[int], float] = NO_WAIT,
         report: ResourceReport | None = None) -> tuple[list[Any], ResourceReport]:
    report = report or ResourceReport("order_payments")
    reader = WindowReader(
        "order_payments", window, fetch or vendor.fetch, report, concurrency=concurrency,
        late_arrival=late, now=vendor.now, outage_backoff=outage_backoff,
    )
    records = [r for page in reader.pages() for r in page.response.json()["data"]]
    return records, report


# The millisecond a bulk update stamped on many records, which no window can split.
BULK = START + timedelta(hours=3)
BULK_MILLISECOND = Window(BULK, BULK + timedelta(milliseconds=1))


def bulk_updated(count: int) -> MemoryVendor:
    """A vendor whose only records are `count` that a bulk update stamped with `BULK`."""
    vendor = MemoryVendor(0)
    vendor.records = [{"id": f"pay_{n:08d}", "updated_at": rfc3339(BULK)} for n in range(count)]
    return vendor


def ids(records: list[Any]) -> set[str]:
    return {r["id"] for r in records if isinstance(r, dict)}


def test_a_quiet_window_is_read_once_in_full_pages() -> None:
    vendor = MemoryVendor(1_050)

    records, report = read(vendor)

    assert [r["id"] for r in records] == [r["id"] for r in vendor.records]
    assert report.complete and report.vendor_total == report.listed == 1_050
    assert report.requests == vendor.requests == 11 and report.repaged == 0


def test_a_report_read_into_again_is_complete_only_at_the_new_windows_last_page() -> None:
    # A full refresh's follow-up round reads a second window into the same report: its pages
    # must not pass for a window's last, each flushed to dlt on its own.
    vendor = MemoryVendor(2 * MAX_UNIT_RECORDS)  # read in parts, each a page for dlt
    report = ResourceReport("order_payments")
    report.complete = True  # the first window's read ended
    reader = WindowReader("order_payments", DAY, vendor.fetch, report, concurrency=2,
                          late_arrival=timedelta(0), now=vendor.now, outage_backoff=NO_WAIT)

    completes = [report.complete for _ in reader.pages()]

    assert len(completes) == report.units > 1 and not any(completes) and report.complete


def test_a_window_larger_than_a_unit_is_read_in_parts_each_record_once() -> None:
    vendor = MemoryVendor(3 * MAX_UNIT_RECORDS)

    records, report = read(vendor, concurrency=8)

    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in vendor.records)
    assert report.units > 3 and report.vendor_total == len(vendor.records)
    # One first page of the whole window, then a partial last page per part.
    assert report.requests <= len(vendor.records) / 100 + 1 + report.units


def test_an_empty_answer_is_believed_only_when_four_passes_in_a_row_agree() -> None:
    vendor = MemoryVendor(250)

    # An outage answering three requests in a row with nothing.
    records, report = read(vendor, fetch=vendor.answering_nothing_to(1, 2, 3))

    assert ids(records) == {r["id"] for r in vendor.records}
    assert report.listed == 250 and report.requests == 3 + 3 and report.vendor_holds is None
    # A window that has no records costs more requests: three more passes, one when the rest
    # of the window is read, and the count of every record the vendor holds, which tells it
    # from an outage answering all with nothing (asked three times when it says none); a
    # vendor that counts records has the window paged once more.
    records, report = read(MemoryVendor(0))
    assert records == [] and report.complete and report.requests == EMPTY_PASSES + 1 + 3 == 8
    assert report.vendor_holds == 0
    records, report = read(MemoryVendor(20, window=Window(START - timedelta(days=1), START)))
    assert records == [] and report.vendor_holds == 20
    assert report.requests == EMPTY_PASSES + 1 + 1 + 1 and report.empty_parts == [DAY]


def test_the_count_of_all_records_is_asked_again_before_none_is_believed() -> None:
    vendor = MemoryVendor(20, window=Window(START - timedelta(days=1), START))

    # The passes of the empty day, then the count, whose first answer is an outage's.
    records, report = read(vendor, fetch=vendor.answering_nothing_to(EMPTY_PASSES + 2))

    assert records == [] and report.vendor_holds == 20 and report.requests == EMPTY_PASSES + 4


def test_a_millisecond_of_many_records_that_keep_changing_is_read_in_one_response() -> None:
    vendor = MemoryVendor(0)
    bulk = START + timedelta(hours=5)  # a bulk update: 500 records in 1 ms
    vendor.records = [{"id": f"pay_{n:08d}", "updated_at": rfc3339(bulk)} for n in range(500)]

    def one_changes_as_each_page_of_100_is_read(window: Window, offset: int, limit: int):
        if window.contains(bulk) and limit == reader.PAGE_SIZE:  # the offsets behind it shift
            vendor.update(vendor.records[len(vendor.records) // 2])
        return vendor.fetch(window, offset, limit)

    records, report = read(vendor, fetch=one_changes_as_each_page_of_100_is_read)

    assert ids(records) == {r["id"] for r in vendor.records if r["updated_at"] == rfc3339(bulk)}
    assert report.listed == len(records) > 400


def test_a_page_an_outage_answers_empty_after_the_first_is_asked_again_after_a_backoff() -> None:
    vendor = MemoryVendor(149)
    second_pages = itertools.count(1)

    def nothing_for_the_second_page_three_times(window: Window, offset: int, limit: int):
        url, response = vendor.fetch(window, offset, limit)
        if offset == 100 and next(second_pages) <= 3:
            return url, Response({"data": [], "total": 0})
        return url, response

    waits: list[int] = []

    # A pass with such a page is no change, and a unit of one page and a half cannot be split.
    records, report = read(vendor, concurrency=1, fetch=nothing_for_the_second_page_three_times,
                           outage_backoff=lambda attempt: waits.append(attempt) or 0.0)

    assert ids(records) == {r["id"] for r in vendor.records}
    assert waits == [1, 2, 3] and report.repaged == 0 and report.requests == 2 + 3


def test_a_read_into_a_report_pages_again_only_the_empty_parts_it_found() -> None:
    vendor = MemoryVendor(250)
    report = ResourceReport("order_payments")

    def outage(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        return vendor.fetch(window, offset, limit)[0], Response({"data": [], "total": 0})

    def reading(window: Window, fetch: Fetch) -> list[Any]:
        return read(vendor, window, concurrency=2, fetch=fetch, report=report)[0]

    assert reading(DAY, outage) == [] and report.empty_parts == [DAY]
    # A second window into the same report (a full refresh's next round): the vendor counts
    # records again, and that read pages again its own empty part, not the first read's.
    next_day = Window(DAY.end, DAY.end + timedelta(days=1))

    assert reading(next_day, vendor.fetch) == [] and report.empty_parts == [DAY, next_day]


def test_a_page_asked_again_after_a_wait_is_not_sent_once_the_read_failed() -> None:
    vendor = MemoryVendor(3 * MAX_UNIT_RECORDS)
    sent: list[tuple[Window, int]] = []
    asked_again = threading.Event()

    def outage_then_failure(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        sent.append((window, offset))
        if offset == 100 and not asked_again.is_set():  # asked again after the backoff
            asked_again.set()
            return vendor.fetch(window, offset, limit)[0], Response({"data": [], "total": 0})
        if asked_again.is_set() and offset == 0 and window.start > DAY.start:
            raise VendorAPIError("the vendor answered 503 four times")
        return vendor.fetch(window, offset, limit)

    with pytest.raises(VendorAPIError):
        read(vendor, fetch=outage_then_failure, outage_backoff=lambda attempt: 0.3)
    failed = len(sent)
    time.sleep(0.5)

    assert len(sent) == failed, "nothing is sent once the read is over"


def test_a_window_an_outage_answered_empty_throughout_is_read_again_once_records_count() -> None:
    vendor = MemoryVendor(250)
    # Every pass, the pass when the rest of the window is read, and the first count: an
    # outage of a fraction of a second answers them all with nothing.
    outage = vendor.answering_nothing_to(*range(1, EMPTY_PASSES + 3))
    waits: list[int] = []

    records, report = read(vendor, fetch=outage,
                           outage_backoff=lambda attempt: waits.append(attempt) or 0.0)

    assert ids(records) == {r["id"] for r in vendor.records}
    assert waits == [1], "the count is asked again after the retry backoff"
    assert report.vendor_holds == 250 and report.listed == 250 and report.empty_parts == []


def test_a_count_of_all_records_that_fails_leaves_it_unknown() -> None:
    vendor = MemoryVendor(20, window=Window(START - timedelta(days=1), START))

    def failing_on_the_count(window: Window, offset: int, limit: int):
        if window.start == EPOCH:
            raise VendorAPIError("the vendor answered 503 four times")
        return vendor.fetch(window, offset, limit)

    records, report = read(vendor, fetch=failing_on_the_count)

    assert records == [] and report.complete and report.vendor_holds is None


def test_a_part_an_outage_answered_empty_on_every_pass_is_paged_again_at_the_end() -> None:
    vendor = MemoryVendor(12_000, window=TWO_DAYS)
    lock, outage = threading.Lock(), {"part": None, "answers": 0}

    def nothing_for_a_part_of_the_second_day_four_times(window: Window, offset: int, limit: int):
        with lock:
            if window.start >= DAY.end and outage["part"] is None:
                outage["part"] = window
            empty = window == outage["part"] and outage["answers"] < EMPTY_PASSES
            outage["answers"] += empty
        url, response = vendor.fetch(window, offset, limit)
        return url, Response({"data": [], "total": 0}) if empty else response

    records, report = read(vendor, window=TWO_DAYS, concurrency=8,
                           fetch=nothing_for_a_part_of_the_second_day_four_times)

    assert outage["answers"] == EMPTY_PASSES
    assert sorted(ids(records)) == sorted(r["id"] for r in vendor.records)
    assert report.listed == len(vendor.records) and report.empty_parts == []


def test_an_empty_answer_to_one_part_of_a_large_window_loses_none_of_its_records() -> None:
    vendor = MemoryVendor(3 * MAX_UNIT_RECORDS)

    # The whole window's first page, then the first page of one of its parts.
    records, report = read(vendor, concurrency=8, fetch=vendor.answering_nothing_to(2))

    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in vendor.records)
    assert report.listed == len(vendor.records)


def test_a_total_short_of_the_records_by_a_full_page_fails_the_read() -> None:
    # 101 records counted as 100: the first page is full and its `total` agrees, so only the
    # page past the end, empty as the contract says, can show the record the count misses.
    vendor = MemoryVendor(101)

    def counting_one_short(window: Window, offset: int, limit: int):
        url, response = vendor.fetch(window, offset, limit)
        return url, Response({**response.body, "total": max(response.body["total"] - 1, 0)})

    with pytest.raises(UnreconciledWindowError):
        read(vendor, fetch=counting_one_short)


def test_a_part_an_outage_answers_empty_for_longer_than_its_passes_fails_the_read() -> None:
    # The outage answers every request for one part of the window, as a misrouted backend
    # does for as long as it lasts: the vendor's count of the whole settled window shows the
    # records the part hides, and the read fails instead of losing them.
    vendor = MemoryVendor(12_000, window=TWO_DAYS)
    lock, outage, waits = threading.Lock(), {"part": None}, []

    def nothing_ever_for_a_part_of_the_second_day(window: Window, offset: int, limit: int):
        with lock:
            if window.start >= DAY.end and window.duration < DAY.duration and (
                outage["part"] is None
            ):
                outage["part"] = window
            empty = window == outage["part"]
        url, response = vendor.fetch(window, offset, limit)
        return url, Response({"data": [], "total": 0}) if empty else response

    with pytest.raises(UnreconciledWindowError, match="more than its parts listed"):
        read(vendor, window=TWO_DAYS, concurrency=8,
             fetch=nothing_ever_for_a_part_of_the_second_day,
             outage_backoff=lambda attempt: waits.append(attempt) or 0.0)
    assert waits, "the parts are paged again after the retry backoff"


def test_an_outage_answering_every_request_with_nothing_midway_fails_the_read() -> None:
    vendor = MemoryVendor(12_000, window=TWO_DAYS)
    sent = itertools.count(1)

    def nothing_after_the_eightieth_request(window: Window, offset: int, limit: int):
        url, response = vendor.fetch(window, offset, limit)
        return url, Response({"data": [], "total": 0}) if next(sent) > 80 else response

    with pytest.raises(UnreconciledWindowError, match="counts no records there now"):
        read(vendor, window=TWO_DAYS, concurrency=8, fetch=nothing_after_the_eightieth_request)


def test_an_outage_after_the_first_count_of_the_settled_part_fails_the_read() -> None:
    # The settled part of the window is counted, then answered with nothing from then on,
    # while the open part (its last four hours) reads as usual: nothing of the settled part
    # is listed, and only the vendor's first count shows that it holds records.
    vendor = MemoryVendor(12_000)
    open_after = DAY.end - timedelta(hours=4)
    late = vendor.now - open_after - CLOCK_SKEW
    counted = threading.Event()

    def nothing_for_the_settled_part_after_its_first_count(window: Window, offset: int,
                                                           limit: int):
        url, response = vendor.fetch(window, offset, limit)
        if window.start >= open_after:
            return url, response
        if counted.is_set():
            return url, Response({"data": [], "total": 0})
        counted.set()
        return url, response

    with pytest.raises(UnreconciledWindowError,
                       match=r"counts no records there now, where it counted \d+ earlier"):
        read(vendor, late=late, concurrency=8,
             fetch=nothing_for_the_settled_part_after_its_first_count)


@pytest.mark.parametrize("seed", range(3))
def test_empty_answers_to_a_share_of_requests_lose_no_record_silently(seed: int) -> None:
    # A misrouted backend behind a load balancer: 40% of all requests answer with nothing.
    vendor = MemoryVendor(12_000, window=TWO_DAYS)
    rand, lock = random.Random(seed), threading.Lock()

    def nothing_now_and_then(window: Window, offset: int, limit: int):
        with lock:
            empty = rand.random() < 0.4
        url, response = vendor.fetch(window, offset, limit)
        return url, Response({"data": [], "total": 0}) if empty else response

    try:
        records, _ = read(vendor, window=TWO_DAYS, concurrency=8, fetch=nothing_now_and_then)
    except UnreconciledWindowError:
        return  # failed, clearly: a load that is not complete is not one
    assert sorted(ids(records)) == sorted(r["id"] for r in vendor.records)


def test_records_moving_on_every_request_never_hide_one_that_stayed() -> None:
    vendor = MemoryVendor(4_000)
    rand = random.Random(7)
    in_window = lambda v: [r for r in v.records if r["updated_at"] < rfc3339(DAY.end)]  # noqa: E731
    vendor.before_request = lambda v: v.update(rand.choice(in_window(v)))

    records, report = read(vendor, concurrency=8)

    stayed = {r["id"] for r in in_window(vendor)}
    assert stayed <= ids(records), "every record still in the window was read"
    assert report.repaged > 0 and report.complete
    # Each part counted what it held when it was accepted; records left parts accepted earlier.
    assert len(stayed) <= report.vendor_total == report.listed <= 4_000


def test_a_sub_millisecond_window_that_keeps_changing_fails_naming_it() -> None:
    # More than the largest page holds: every pass takes two responses.
    vendor = bulk_updated(MAX_PAGE_SIZE + 300)
    vendor.before_request = lambda v: v.records and v.update(v.records[0])

    with pytest.raises(UnreconciledWindowError) as failure:
        read(vendor, window=Window(BULK, BULK + timedelta(hours=1)))

    message = str(failure.value)
    assert message.startswith("order_payments [2026-01-01T03:00:00.000Z, ")
    assert "on 3 passes (" in message and "the vendor keeps changing it" in message
    assert "the same answer" not in message


def test_records_crowded_in_a_parts_first_millisecond_are_cut_off_from_the_changing_rest(
) -> None:
    # A bulk update stamped 120 records with one millisecond, the part's first; the few
    # records after it keep changing. The crowd is paged apart, the rest split as usual.
    vendor = bulk_updated(120)
    vendor.records += [{"id": f"pay_late{n}", "updated_at": rfc3339(BULK + timedelta(
        minutes=n + 1))} for n in range(6)]
    vendor.before_request = lambda v: 1 < v.requests <= 7 and v.update(
        next(r for r in v.records if r["id"].startswith("pay_late") and "version" not in r)
    )

    records, _ = read(vendor, window=Window(BULK, BULK + timedelta(hours=1)))

    crowd = {f"pay_{n:08d}" for n in range(120)}
    assert ids(records) >= crowd and ids(records) - crowd <= {f"pay_late{n}" for n in range(6)}


def test_a_total_wrong_once_by_orders_of_magnitude_costs_a_few_requests() -> None:
    vendor = MemoryVendor(6_000)
    first = threading.Event()

    def fetch(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        url, response = vendor.fetch(window, offset, limit)
        if not first.is_set():
            first.set()
            response.body["total"] = 10**12
        return url, response

    records, report = read(vendor, concurrency=8, fetch=fetch)

    assert ids(records) == {r["id"] for r in vendor.records}
    assert report.requests < 200


def test_a_millisecond_claiming_a_trillion_records_fails_naming_its_total() -> None:
    vendor = bulk_updated(300)

    def fetch(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        url, response = vendor.fetch(window, offset, limit)
        response.body["total"] = 10**12
        return url, response

    with pytest.raises(UnreconciledWindowError, match="a total of 1000000000000 records"):
        read(vendor, window=BULK_MILLISECOND, fetch=fetch)
    assert vendor.requests == 3


def test_a_vendor_counting_more_than_it_serves_fails_saying_so_not_that_it_changes() -> None:
    vendor = bulk_updated(150)

    def fetch(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        url, response = vendor.fetch(window, offset, limit)
        response.body["total"] += 100
        return url, response

    with pytest.raises(UnreconciledWindowError) as failure:
        read(vendor, window=BULK_MILLISECOND, fetch=fetch)

    # The same answer on every pass: not a vendor that keeps changing the window.
    message = str(failure.value)
    assert "an empty page at offset 150 of a total of 250, the same answer on each of 3 " \
        "passes (250 records counted and 150 served in 1 ms" in message
    assert "the vendor's answers contradict each other while nothing there changes" in message
    assert "keeps changing" not in message


def test_a_vendor_answering_the_same_on_every_pass_is_told_apart_whatever_order_pages_come_in(
) -> None:
    # Pages of at most 100 records whatever the limit, and a total 100 too high: on the second
    # pass the empty page at offset 200 answers last, so that pass meets the one at 150 first.
    vendor = bulk_updated(150)

    def fetch(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        if offset == 200 and 4 <= vendor.requests < 8:  # the second pass's four requests
            time.sleep(0.2)
        url, response = vendor.fetch(window, offset, min(limit, 100))
        response.body["total"] += 100
        return url, response

    with pytest.raises(UnreconciledWindowError) as failure:
        read(vendor, window=BULK_MILLISECOND, fetch=fetch)

    message = str(failure.value)
    assert "the same answer on each of 3 passes (250 records counted and 150 served" in message
    assert "a page holds them" not in message


def test_an_empty_answer_after_a_pass_that_listed_records_does_not_settle_the_unit() -> None:
    # Twins on two pages wait for a second pass to list the same; an open unit for a second
    # pass that may hold a late arrival. An outage's empty answer stands for neither.
    vendor = MemoryVendor(250)
    twin = {**vendor.records[120], "amount": "1.00"}
    vendor.records.insert(121, twin)

    records, _ = read(vendor, fetch=vendor.answering_nothing_to(4), concurrency=1)

    assert [d.record for d in records if isinstance(d, DefectiveRecord)] == [
        vendor.records[120], twin
    ]
    vendor = MemoryVendor(150)

    def a_late_arrival_before_the_second_pass(v: MemoryVendor) -> None:
        if v.requests == 3:
            v.records.append({"id": "pay_late", "updated_at": rfc3339(START)})
            v.sort()

    vendor.before_request = a_late_arrival_before_the_second_pass

    # The whole day is open; the second pass's first page is answered with nothing.
    records, _ = read(vendor, late=timedelta(days=30), concurrency=1,
                      fetch=vendor.answering_nothing_to(3))

    assert ids(records) == {r["id"] for r in vendor.records} and "pay_late" in ids(records)


def test_passes_answered_empty_by_an_outage_are_not_counted_as_moved() -> None:
    vendor = bulk_updated(MAX_PAGE_SIZE + 300)
    outage = vendor.answering_nothing_to(1, 2)
    vendor.before_request = lambda v: v.requests > 2 and v.update(v.records[0])

    with pytest.raises(UnreconciledWindowError, match="on 3 passes"):
        read(vendor, window=BULK_MILLISECOND, fetch=outage)

    # Two empty answers, a first page of 100, then three passes of two pages of 1,000, each
    # of which moved.
    assert vendor.requests == 2 + 1 + 3 * 2


def test_empty_answers_on_both_sides_of_a_pass_that_moved_are_not_one_run() -> None:
    vendor = bulk_updated(300)
    # One empty answer, a pass of three pages during which a record moves, three empty ones.
    outage = vendor.answering_nothing_to(1, 5, 6, 7)
    vendor.before_request = lambda v: v.requests == 3 and v.update(v.records[0])

    records, _ = read(vendor, window=Window(BULK, BULK + timedelta(hours=1)), fetch=outage)

    assert ids(records) == {r["id"] for r in vendor.records if r["updated_at"] == rfc3339(BULK)}
    assert len(records) == 299


def test_an_id_served_twice_with_different_content_is_quarantined_both_times() -> None:
    vendor = MemoryVendor(250)
    twin = {**vendor.records[120], "amount": "1.00"}
    vendor.records.insert(121, twin)

    records, report = read(vendor)

    defective = [r for r in records if isinstance(r, DefectiveRecord)]
    assert len(defective) == 2 and {d.record["id"] for d in defective} == {twin["id"]}
    assert "duplicate id" in defective[0].reason
    assert len(ids(records)) == 249 and report.listed == 251
    # A consistent pass of a closed part lists each of the vendor's records once.
    assert report.repaged == 0


def test_twins_filed_hours_apart_in_one_closed_part_are_both_quarantined() -> None:
    vendor = MemoryVendor(1_000)
    first = vendor.records[10]
    twin = {**first, "amount": "1.00", "updated_at": rfc3339(START + timedelta(hours=20))}
    vendor.records.append(twin)
    vendor.sort()

    records, report = read(vendor)

    defective = [r for r in records if isinstance(r, DefectiveRecord)]
    assert [d.record for d in defective] == [first, twin]
    assert len(ids(records)) == 999 and report.listed == 1_001 and report.repaged == 0


def test_twins_in_two_settled_parts_load_the_copy_filed_first_however_they_are_answered() -> None:
    vendor = MemoryVendor(3 * MAX_UNIT_RECORDS)
    first = vendor.records[10]
    twin = {**first, "amount": "1.00", "updated_at": rfc3339(START + timedelta(hours=20))}
    vendor.records.append(twin)
    vendor.sort()
    twin_served = threading.Event()

    def the_first_part_answered_last(window: Window, offset: int, limit: int):
        if window.start == START and offset == 100:  # a page of the first copy's part
            assert twin_served.wait(timeout=30)
            time.sleep(0.2)  # the twin's part is accepted meanwhile
        url, response = vendor.fetch(window, offset, limit)
        if window.contains(datetime.fromisoformat(twin["updated_at"])) and (
            offset + limit >= response.body["total"]
        ):
            twin_served.set()
        return url, response

    records, report = read(vendor, concurrency=8, fetch=the_first_part_answered_last)

    defective = [r for r in records if isinstance(r, DefectiveRecord)]
    loaded = [r for r in records if isinstance(r, dict) and r["id"] == first["id"]]
    assert report.units > 3 and [d.record for d in defective] == [twin] and loaded == [first]
    assert defective[0].reason == (
        "duplicate id: the vendor also served this id, with other content, filed earlier in "
        "the window; only the copy filed first can be loaded"
    )
    assert ids(records) == {r["id"] for r in vendor.records}


# An empty id is an id: its twins are twins, in a part read once and in the open part alike.
@pytest.mark.parametrize("late", [timedelta(0), timedelta(days=30)], ids=["closed", "open"])
def test_twins_with_an_empty_id_are_both_quarantined(late: timedelta) -> None:
    vendor = MemoryVendor(20)
    moment = vendor.records[5]["updated_at"]
    twins = [{"id": "", "updated_at": moment, "amount": amount} for amount in ("1.00", "2.00")]
    vendor.records += twins
    vendor.sort()

    records, report = read(vendor, late=late)

    assert [d.record for d in records if isinstance(d, DefectiveRecord)] == twins
    assert ids(records) == {f"pay_{n:08d}" for n in range(20)} and report.listed == 22


def test_a_twin_listed_in_a_part_its_stamp_lies_outside_is_caught() -> None:
    # A vendor's filter that misfiles one copy: it is listed among the early records of a day
    # read in several parts, the other copy where its stamp lies.
    vendor = MemoryVendor(3 * MAX_UNIT_RECORDS)
    listed_early = vendor.records[10]
    evening = rfc3339(START + timedelta(hours=20))
    misfiled = {**listed_early, "amount": "1.00", "updated_at": evening}
    twin = {**listed_early, "amount": "2.00", "updated_at": evening}
    vendor.records.append(twin)
    vendor.sort()

    def fetch(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        url, response = vendor.fetch(window, offset, limit)
        response.body["data"] = [misfiled if r == listed_early else r
                                 for r in response.body["data"]]
        return url, response

    records, report = read(vendor, concurrency=8, fetch=fetch)

    assert report.units > 3
    assert [d.record for d in records if isinstance(d, DefectiveRecord)] == [twin]
    assert [r for r in records if isinstance(r, dict) and r["id"] == twin["id"]] == [misfiled]


def two_days_with_a_twin(
    pick: Callable[[MemoryVendor], dict]
) -> tuple[MemoryVendor, dict, dict]:
    """12,000 records over two days (each read in more than one part) and a copy of the
    record `pick` chooses, with another amount, filed late on the second day: the vendor, the
    record and its copy."""
    vendor = MemoryVendor(12_000, window=TWO_DAYS)
    first = pick(vendor)
    twin = {**first, "amount": "1.00", "updated_at": rfc3339(DAY.end + timedelta(hours=20))}
    vendor.records.append(twin)
    vendor.sort()
    return vendor, first, twin


def test_twins_filed_on_two_days_of_a_window_load_the_copy_filed_first() -> None:
    vendor, first, twin = two_days_with_a_twin(lambda v: v.records[10])

    records, report = read(vendor, window=TWO_DAYS, concurrency=8)

    assert report.units >= 4, "each day read in more than one part"
    defective = [r for r in records if isinstance(r, DefectiveRecord)]
    loaded = [r for r in records if isinstance(r, dict) and r["id"] == first["id"]]
    assert [d.record for d in defective] == [twin] and loaded == [first]


def test_a_third_copy_on_another_day_joins_the_two_quarantined_together() -> None:
    vendor, first, _ = two_days_with_a_twin(lambda v: v.records[10])
    vendor.records.insert(vendor.records.index(first) + 1, {**first, "amount": "2.00"})

    records, _ = read(vendor, window=TWO_DAYS, concurrency=8)

    copies = [r for r in records if (r.record if isinstance(r, DefectiveRecord) else r)["id"]
              == first["id"]]
    assert len(copies) == 3 and all(isinstance(r, DefectiveRecord) for r in copies)


# RFC 3339 allows a space or a lower-case `t` between date and time: such a stamp does not
# sort as the time it stands for.
@pytest.mark.parametrize("separator", [" ", "t"])
def test_a_twin_stamped_with_another_separator_is_caught(separator: str) -> None:
    vendor, first, twin = two_days_with_a_twin(lambda v: v.records[10])
    twin["updated_at"] = twin["updated_at"].replace("T", separator)
    in_time_order = sorted(vendor.records, key=lambda r: parse_timestamp(r["updated_at"]))

    def fetch(window: Window, offset: int, limit: int) -> tuple[str, Response]:
        listed = [r for r in in_time_order if window.contains(parse_timestamp(r["updated_at"]))]
        return "u", Response({"data": listed[offset:offset + limit], "total": len(listed)})

    records, report = read(vendor, window=TWO_DAYS, concurrency=8, fetch=fetch)

    assert report.units >= 4, "each day read in more than one part"
    defective = [r for r in records if isinstance(r, DefectiveRecord)]
    loaded = [r for r in records if isinstance(r, dict) and r["id"] == first["id"]]
    assert [d.record for d in defective] == [twin] and loaded == [first]


# With no room for the ids of days already read, those of the days still to be read are kept.
@pytest.mark.parametrize("twin_ids_kept", [reader.TWIN_IDS_KEPT, 0])
def test_twins_in_two_parts_of_a_windows_second_day_are_caught(
    monkeypatch: pytest.MonkeyPatch, twin_ids_kept: int
) -> None:
    monkeypatch.setattr(reader, "TWIN_IDS_KEPT", twin_ids_kept)
    vendor, first, _ = two_days_with_a_twin(
        lambda v: next(r for r in v.records if r["updated_at"] > rfc3339(DAY.end))
    )

    records, report = read(vendor, window=TWO_DAYS, concurrency=8)

    assert report.units >= 4, "each day read in more than one part"
    defective = [r for r in records if isinstance(r, DefectiveRecord)]
    assert [d.record["id"] for d in defective] == [first["id"]]


def test_a_twin_appearing_as_a_record_is_deleted_while_paged_hides_no_record() -> None:
    vendor = MemoryVendor(300)
    deleted, twinned = vendor.records[50], vendor.records[150]
    served = vendor.fetch

    def delete_and_twin_before_the_second_page(window: Window, offset: int, limit: int):
        # `total` stays: the second page starts one record later, and that record is skipped.
        if offset == 100 and deleted in vendor.records:
            vendor.records.remove(deleted)
            vendor.records.append({**twinned, "amount": "1.00"})
            vendor.sort()
        return served(window, offset, limit)

    vendor.fetch = delete_and_twin_before_the_second_page  # type: ignore[method-assign]

    records, _ = read(vendor, concurrency=1)

    assert ids(records) == {r["id"] for r in vendor.records} - {twinned["id"]}
    assert [d.record["id"] for d in records if isinstance(d, DefectiveRecord)] == [
        twinned["id"]
    ] * 2


def _at_the_open_parts_second_pass(window: Window, offset: int, open_part: datetime,
                                   open_passes: Iterator[int]) -> bool:
    # One worker pages the closed parts, which came first, before the open part's second pass.
    return window.start == open_part and offset == 0 and next(open_passes) == 2


@pytest.mark.parametrize(
    ("size", "filed", "min_units"),
    [
        (4_000, timedelta(minutes=30), 1),
        # Filed further back than late arrivals may be, by a vendor clock behind ours.
        (12_000, CLOCK_SKEW - timedelta(minutes=1), 4),
    ],
    ids=["into-the-open-part", "by-a-clock-behind-ours"],
)
def test_a_record_updated_near_the_open_part_while_read_is_no_twin(
    size: int, filed: timedelta, min_units: int
) -> None:
    vendor = MemoryVendor(size)
    vendor.now = DAY.end
    late = timedelta(hours=1)
    open_part = DAY.end - late - CLOCK_SKEW  # where late arrivals can land
    moved = vendor.records[10]
    served = vendor.fetch
    open_passes = itertools.count(1)

    def update_once(window: Window, offset: int, limit: int):
        # Read at its old place first, then updated to near the open part.
        if "version" not in moved and _at_the_open_parts_second_pass(
            window, offset, open_part, open_passes
        ):
            vendor.update(moved)
            moved["updated_at"] = rfc3339(open_part + filed)
            vendor.sort()
        return served(window, offset, limit)

    vendor.fetch = update_once  # type: ignore[method-assign]

    records, report = read(vendor, late=late, concurrency=1)

    assert report.units >= min_units and not any(isinstance(r, DefectiveRecord) for r in records)
    versions = [r.get("version", 0) for r in records if r["id"] == moved["id"]]
    # Read before and after it moved (the merge keeps the latest); or, when its part was still
    # being paged as it moved (on a loaded machine, the order of the parts' requests varies),
    # that part was paged again without it.
    assert versions in ([0, 1], [1])


def test_a_page_repeating_another_is_paged_again_and_every_record_read_once() -> None:
    vendor = MemoryVendor(300)
    served = vendor.fetch

    def a_page_repeating_the_first_once(window: Window, offset: int, limit: int):
        url, response = served(window, offset, limit)
        if offset == 100 and vendor.requests <= 4:
            response.body["data"] = served(window, 0, limit)[1].body["data"]
        return url, response

    vendor.fetch = a_page_repeating_the_first_once  # type: ignore[method-assign]

    records, report = read(vendor)

    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in vendor.records)
    assert report.repaged >= 1 and report.duplicate_copies == 0


def test_a_window_ending_near_now_is_paged_twice_and_keeps_a_late_arrival() -> None:
    vendor = MemoryVendor(150)
    late = {"id": "pay_late", "updated_at": rfc3339(START + timedelta(hours=23))}

    def arrive_after_the_first_pass(v: MemoryVendor) -> None:
        if v.requests == 3 and late not in v.records:
            v.records.append(late)
            v.sort()

    vendor.before_request = arrive_after_the_first_pass
    vendor.now = DAY.end

    records, _ = read(vendor, late=timedelta(hours=2))

    assert "pay_late" in ids(records)
    assert ids(records) == {r["id"] for r in vendor.records}


def _between(a: dict[str, Any], b: dict[str, Any]) -> str:
    """A time between two records' `updated_at`: a late arrival filed there lands between."""
    first, second = (datetime.fromisoformat(r["updated_at"]) for r in (a, b))
    return rfc3339(first + (second - first) / 2)


def test_a_record_skipped_by_both_passes_of_the_open_part_is_paged_again_until_read() -> None:
    # In each pass, a record leaves (updated) and a late arrival lands behind the record at
    # the page boundary: `total` holds, the offsets shift, and each pass skips that record.
    window = Window(NOW - timedelta(minutes=5), NOW)
    vendor = MemoryVendor(250, window=window)
    records = vendor.records
    leaving = [records[5], records[6]]
    arrivals = {  # before which request (from 1), a late arrival between which two records
        2: (records[150], records[151]), 4: (records[50], records[51]),
        5: (records[160], records[161]),
    }

    def changes(v: MemoryVendor) -> None:
        if v.requests in arrivals:
            v.records.append({"id": f"pay_late_{v.requests}",
                              "updated_at": _between(*arrivals[v.requests])})
            if v.requests != 4:  # between the passes: an arrival only
                v.update(leaving.pop(0))
            v.sort()

    vendor.before_request = changes

    read_records, report = read(vendor, window=window, late=timedelta(minutes=10),
                                concurrency=1)

    in_window = {r["id"] for r in vendor.records if window.contains(
        datetime.fromisoformat(r["updated_at"]))}
    assert in_window - ids(read_records) == set()
    assert report.repaged >= 1


def test_passes_answered_empty_by_an_outage_do_not_confirm_an_open_parts_listing() -> None:
    # The first pass skips a record (one leaves, a late arrival lands behind the page
    # boundary); then an outage answers the next four passes with nothing.
    window = Window(NOW - timedelta(minutes=5), NOW)
    vendor = MemoryVendor(250, window=window)
    records = vendor.records
    leaving, late = records[5], {"id": "pay_late", "updated_at": _between(*records[150:152])}

    def changes(v: MemoryVendor) -> None:
        if v.requests == 2:  # before the first pass's second page
            v.update(leaving)
            v.records.append(late)
            v.sort()

    vendor.before_request = changes

    read_records, _ = read(vendor, window=window, late=timedelta(minutes=10), concurrency=1,
                           fetch=vendor.answering_nothing_to(4, 5, 6, 7))

    in_window = {r["id"] for r in vendor.records if window.contains(
        datetime.fromisoformat(r["updated_at"]))}
    assert in_window - ids(read_records) == set()


@pytest.mark.parametrize("leave", ["updated", "deleted"])
def test_an_open_part_whose_records_all_leave_while_read_reads_as_empty(leave: str) -> None:
    window = Window(NOW - timedelta(minutes=5), NOW)
    vendor = MemoryVendor(3, window=window)

    def all_leave_after_the_first_pass(v: MemoryVendor) -> None:
        if v.requests == 2 and all("version" not in r for r in v.records):
            for record in list(v.records):
                if leave == "updated":
                    v.update(record)  # past the window's end
                else:
                    v.records.remove(record)

    vendor.before_request = all_leave_after_the_first_pass

    read_records, report = read(vendor, window=window, late=timedelta(minutes=10),
                                concurrency=1)

    assert read_records == [] and report.complete


def test_a_late_arrival_filed_by_a_clock_behind_ours_cannot_hide_a_record() -> None:
    # Filed 12 minutes back with late arrivals allowed 10: a clock 2 minutes behind, within
    # CLOCK_SKEW. While the part before the open one is paged, a record leaves and the late
    # arrival lands behind the record at the page boundary.
    window = Window(NOW - timedelta(hours=1), NOW)
    vendor = MemoryVendor(250, window=Window(window.start, NOW - timedelta(minutes=20)))
    leaving = vendor.records[5]
    arrival = {"id": "pay_late", "updated_at": rfc3339(NOW - timedelta(minutes=12))}
    served = vendor.fetch

    def change_after_the_first_page(part: Window, offset: int, limit: int):
        if offset and part.start == window.start and arrival not in vendor.records:
            vendor.update(leaving)
            vendor.records.append(arrival)
            vendor.sort()
        return served(part, offset, limit)

    vendor.fetch = change_after_the_first_page  # type: ignore[method-assign]

    read_records, _ = read(vendor, window=window, late=timedelta(minutes=10), concurrency=1)

    in_window = {r["id"] for r in vendor.records if window.contains(
        datetime.fromisoformat(r["updated_at"]))}
    assert "pay_late" in in_window
    assert in_window - ids(read_records) == set()


def test_a_vendor_whose_pages_never_add_up_fails_after_three_passes() -> None:
    vendor = MemoryVendor(0)
    vendor.fetch = lambda w, o, n: ("u", Response({"data": [], "total": 5}))  # type: ignore

    with pytest.raises(UnreconciledWindowError, match="an empty page at offset 0 of a total of 5"):
        read(vendor)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"total": 5}, "200 response without a list under 'data' (got null)"),
        ({"data": {"id": "x"}, "total": 5}, "without a list under 'data' (got an object)"),
        ({"data": []}, "200 response without an integer 'total'"),
        (parse_vendor_json(b'{"data": [], "total": 0, "total": 5}'),
         "200 response naming 'total' twice, with different values; refusing to choose one"),
    ],
)
def test_a_page_breaking_the_contract_fails_at_once(body: dict, message: str) -> None:
    vendor = MemoryVendor(0)
    vendor.fetch = lambda w, o, n: ("u", Response(body))  # type: ignore

    with pytest.raises(VendorResponseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(vendor)


def test_a_vendor_sort_without_tie_break_cannot_hide_a_record_behind_a_repeat() -> None:
    vendor = MemoryVendor(250)
    tied, hidden = vendor.records[99], vendor.records[100]
    hidden["updated_at"] = tied["updated_at"]  # the same instant: no order between them
    served = vendor.fetch

    def without_tie_break(window: Window, offset: int, limit: int):
        url, response = served(window, offset, limit)
        page = response.body["data"]
        if offset > 0 and page and page[0]["id"] == hidden["id"]:
            page[0] = dict(tied)  # the next page starts with the tied record again
        return url, response

    vendor.fetch = without_tie_break  # type: ignore[method-assign]

    records, _ = read(vendor)

    assert hidden["id"] in ids(records)
    assert ids(records) == {r["id"] for r in vendor.records}
