"""Read a window of one resource completely, while the vendor keeps changing it.

The window is read in units: parts of it small enough to page in a moment. Pages of all units
are fetched concurrently, and a unit is accepted only when one pass over it is consistent: every
page reported the same `total`, the pages covered offsets 0 to `total`, and no record came twice.
Records only move forward in time when they change, so in a past window a change shows as a
smaller `total`. A pass that saw one is discarded and its unit split, at the `updated_at` of the
records it did receive, into smaller units that are paged again; a unit that fits in one page is
a single response, one instant of the vendor, and cannot drift. A unit ending within the
late-arrival look-back (`look_back`: late arrivals, and the vendor's clocks) may also gain
records, which can keep `total` while shifting offsets: it is open, paged until two passes in a
row list the same records, and what either listed is released. A unit the vendor answered
with nothing is believed empty only when `EMPTY_PASSES` passes in a row agree, and once more when
the rest of the window is read: an outage now and then answers a window that has records so, a
few times in a row as often as once. A read that listed nothing at all asks how many records the
vendor holds, waiting while it says none, and pages its empty units once more when it counts
some: a burst of empty answers can cover every pass of a window read in one unit. Such an
answer to a page after a pass's first is no change: the page is asked again after a backoff.
A read that believed parts of its settled window empty weighs the vendor's count of that window
against what its parts listed: records only leave it, so more means an outage hid some; the
parts are paged again, and the read fails if they stay empty. A unit whose last page is full
is asked for the page past it, which must be empty: else its `total` missed records.

Only accepted passes are released, unit by unit, each as one page for dlt: what a released unit
holds is what the vendor listed in it at one instant, so nothing of the window can be skipped by
records moving under the offsets. A unit that keeps changing after it cannot be split further
fails, naming it.

A settled unit (one that is not open) cannot list a record twice, since a change moves the
record past the window's end: two copies of an id there, in one pass or in two settled units of
the window, are the vendor's twins, and are quarantined (across units, while the earlier copy's
day is among those remembered; see `TWIN_IDS_KEPT`).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests

from ecom_assets.contract import in_contract_form, json_type, parse_timestamp
from ecom_assets.ingest.errors import UnreconciledWindowError, VendorAPIError, VendorResponseError
from ecom_assets.ingest.pages import (
    MAX_PAGE_SIZE,
    DefectiveRecord,
    page_fields_named_twice,
    page_records,
    page_total,
    record_id,
    record_identity,
)
from ecom_assets.ingest.report import ResourceReport
from ecom_assets.ingest.vendor_json import dump_vendor_json
from ecom_assets.ingest.window import EPOCH, MILLISECOND, Window, floor_ms, look_back, rfc3339

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
# A unit with more records is split before it is paged, so that every unit is paged in a moment
# (a change during its pass is unlikely) and the pages held until it is accepted stay few.
MAX_UNIT_RECORDS = 5_000
SPLIT_TARGET_RECORDS = 3_500
# Parts a unit too large is cut into at once (each is cut again on its first page if still
# too large): a `total` the vendor gets wrong once cannot plan millions of parts.
MAX_SPLIT_PARTS = 64
# A unit that cannot be split (one millisecond) claiming more records is not paged: the
# vendor's count is wrong, and the unit is asked again.
MAX_UNSPLITTABLE_RECORDS = 1_000_000
# A unit that moved is paged again as smaller ones of about this many records (2 to 8 of them).
SPLIT_RECORDS = 4 * PAGE_SIZE
# A unit that cannot be split (more than a page of records in one millisecond) may move on
# this many passes before the window is declared impossible to reconcile.
MAX_PASSES = 3
# Passes in a row that must list nothing before a unit is believed empty. Each costs a request
# of a few milliseconds; an outage answering a share p of requests with nothing, each on its
# own, then hides a unit's records once in p**-4 units (160,000 at p = 5%), where two passes did
# once in 400. One lasting longer than the passes is outlasted, if it is short, by the pass each
# empty unit gets again once the rest of the window is read.
EMPTY_PASSES = 4
# A read that listed nothing asks how many records the vendor holds at all up to this many
# times while it says none, waiting the retry backoff between (2 and 4 s by default).
COUNT_ASKS = 3
# Times a unit's page after the first is asked again when an outage answers it with nothing
# (after 2, 4 and 8 s by default), as the integration retries a 503; then it counts as a change.
OUTAGE_RETRIES = 3
# Records held in units being paged, beyond which no new unit starts.
MAX_HELD_RECORDS = 4 * MAX_UNIT_RECORDS
# Ids released by settled units, remembered to catch a twin in a later unit: every day still
# to be read, and the latest days read while the ids remembered stay under this bound (about
# 80 bytes each: 16 MB). A larger window forgets its oldest days first.
TWIN_IDS_KEPT = 200_000

# Fetch one page: (window, offset, limit) -> (the URL requested, the response).
Fetch = Callable[[Window, int, int], tuple[str, requests.Response]]


@dataclass(frozen=True)
class ReleasedPage:
    """An accepted unit, for dlt to walk as one page: the request of the unit's first page and
    its response, whose `data` holds every record the unit lists."""

    url: str
    window: Window
    limit: int
    response: requests.Response

    @property
    def params(self) -> dict[str, Any]:
        return {**self.window.query_params(), "offset": 0, "limit": self.limit}


@dataclass
class _Page:
    url: str
    offset: int
    records: list[Any]
    response: requests.Response
    total: int  # the vendor's count of the unit, as this page gave it


@dataclass
class _Unit:
    window: Window
    open: bool  # may still gain late arrivals: two matching passes are needed
    passes: int = 0
    # Each pass that moved: why, and what the vendor answered (`_answers`).
    moved_passes: list[tuple[str, dict[int, tuple]]] = field(default_factory=list)
    empty_passes: int = 0  # consistent passes in a row that listed nothing
    outage_answers: int = 0  # pages after the first answered `{"data": [], "total": 0}`
    paged_again_at_the_end: bool = False  # listed nothing, then paged after the rest
    # The last consistent pass that listed records, kept while the unit is paged again.
    earlier: list[tuple[str, Any]] | None = None
    limit: int = PAGE_SIZE  # records asked for per page
    # The current pass:
    total: int | None = None
    stride: int = PAGE_SIZE
    pending: deque[int] = field(default_factory=deque)
    in_flight: int = 0
    pages: dict[int, _Page] = field(default_factory=dict)
    moved: str | None = None  # why the pass cannot be trusted

    def start_pass(self) -> None:
        self.passes += 1
        self.total, self.stride, self.moved = None, self.limit, None
        self.pending = deque([0])
        self.pages = {}

    @property
    def held_records(self) -> int:
        return MAX_UNIT_RECORDS if self.total is None else self.total


class WindowReader:
    """Pages `window` of `resource` through `fetch`, `concurrency` requests at a time, and
    yields each unit as one page holding its records once it is reconciled (`pages()`)."""

    def __init__(
        self,
        resource: str,
        window: Window,
        fetch: Fetch,
        report: ResourceReport,
        *,
        concurrency: int,
        late_arrival: timedelta,
        now: datetime,
        outage_backoff: Callable[[int], float],
        page_size: int = PAGE_SIZE,
        primary_key: str = "id",
        cursor: str = "updated_at",
    ) -> None:
        self.resource = resource
        self.report = report
        report.complete = False  # a report may already hold an earlier window's read
        report.vendor_holds = None
        self._fetch = fetch
        self._page_size = page_size
        self._primary_key = primary_key
        self._cursor = cursor
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"vendor-{resource}")
        # Requests queued beyond the running ones, so that workers never wait for this thread.
        self._ahead = 2 * concurrency
        # Late arrivals can land in units ending after this moment: those are open, read until
        # two passes agree. Units ending before it are settled: they can no longer gain a
        # record, and two copies of an id there are twins, not a record and its update.
        self._open_after = now - look_back(late_arrival)
        self._now = now
        self._waiting: deque[_Unit] = deque(
            self._unit(part) for part in window.split_at([self._open_after])
        )
        self._active: list[_Unit] = []
        self._futures: dict[Future[tuple[str, requests.Response]], tuple[_Unit, int, int]] = {}
        self._ready: deque[ReleasedPage] = deque()
        # Settled units accepted while an earlier part of the window is still to be read: they
        # are released in window order, so that of twins in two units the copy filed first is
        # the one loaded, whichever unit the vendor answered first.
        self._accepted: list[tuple[_Unit, list[Any], int]] = []
        # Hashes of the ids settled units released, and of each day of `updated_at`, for a
        # twin in another unit (8 bytes of hash, not the id's 60; two of a million ids collide
        # once in 10^7 windows).
        self._released_ids: set[int] = set()
        self._released_by_day: dict[str, list[int]] = {}
        # Units the vendor listed nothing in, paged once more when the rest of the window is
        # read: an outage that answered all their passes within milliseconds may be over.
        self._empty_units: list[_Unit] = []
        # Seconds to wait before asking again how many records the vendor holds (1-based ask).
        self._outage_backoff = outage_backoff
        self._counted = False
        # Units this read believed empty (the report may hold an earlier window's parts too).
        self._empty_parts: list[_Unit] = []
        self._closed = threading.Event()  # a page asked again after a wait is not sent then
        # The part of the window that can no longer gain records (None if all of it can), what
        # its units listed, and how often its parts read empty were paged again for a count
        # that showed more records than they listed.
        self._settled_window = (
            Window(window.start, min(window.end, floor_ms(self._open_after)))
            if window.start < floor_ms(self._open_after) else None
        )
        self._settled_listed = 0
        self._settled_counted = 0  # the most the vendor counted in one of its units
        self._settled_recounts = 0

    def pages(self) -> Iterator[ReleasedPage]:
        """Each reconciled unit as one page (an empty unit paged again at the end comes
        twice); the report is complete when this ends."""
        try:
            while True:
                self._step(block=not self._ready)
                if self._ready:
                    yield self._ready.popleft()
                elif not (self._futures or self._waiting or self._active):
                    if self._empty_units:
                        self._page_empty_units_again()
                        continue
                    if not self.report.listed and not self._counted:
                        self._counted = True
                        if self._count_all_records():
                            self._page_empty_parts_again()
                            continue
                    if self._settled_parts_hide_records():
                        self._page_empty_parts_again()
                        continue
                    self.report.complete = True
                    return
        finally:
            self.close()

    def close(self) -> None:
        self._closed.set()
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _page_empty_units_again(self) -> None:
        """Queue each unit the vendor listed nothing in for one more pass, which settles it
        if it lists nothing again."""
        for unit in self._empty_units:
            unit.paged_again_at_the_end = True
            unit.empty_passes = EMPTY_PASSES - 1
            self._waiting.append(unit)
        self._empty_units = []

    def _page_empty_parts_again(self) -> None:
        """Queue each part this read believed empty for one more pass: the vendor counts
        records now, and an outage that answered every pass within a fraction of a second may
        have been the reason they listed nothing."""
        for unit in self._empty_parts:
            self.report.empty_parts.remove(unit.window)
            unit.empty_passes = EMPTY_PASSES - 1
            self._waiting.append(unit)
        self._empty_parts = []

    def _settled_parts_hide_records(self) -> bool:
        """Whether parts this read believed empty, in the settled part of the window, hide
        records: the vendor counts more there now than its parts listed, and records only leave
        a part that can no longer gain any. They are then paged again, after the retry backoff,
        as often as `OUTAGE_RETRIES`: an outage answering a part with nothing for longer than
        its passes ends so. A count of none where the vendor counted records earlier in this
        read is such an answer too, asked again `COUNT_ASKS` times. Raises when the outage
        outlasts both: the parts it answered cannot be told from empty ones, and a load without
        their records is not complete."""
        settled = self._settled_window
        empty = [unit.window for unit in self._empty_parts if self._in_settled(unit)]
        counted = max(self._settled_listed, self._settled_counted)
        if settled is None or not empty or not counted:
            # Never counted a record there: the settled part is one unit, read empty on every
            # pass, and the vendor's count of it is the question those passes asked.
            return False
        total = self._count(settled)
        if total is None:
            raise VendorResponseError(
                f"{self.resource} {settled}: the vendor's count has no integer 'total'"
            )
        where = f"{self.resource} {settled}"
        parts = f"the parts it answered with nothing ({len(empty)}, the first {empty[0]})"
        if not total:
            raise UnreconciledWindowError(
                f"{where}: the vendor counts no records there now, where it counted {counted} "
                f"earlier in this read: an outage answers so, and {parts} cannot be told from "
                "empty ones (if instead every record there changed or was deleted while it "
                "was read, the next run finds none); nothing is loaded, run again once the "
                "vendor serves its records"
            )
        if total <= self._settled_listed:
            return False
        self._settled_recounts += 1
        if self._settled_recounts > OUTAGE_RETRIES:
            raise UnreconciledWindowError(
                f"{where}: the vendor counts {total} records there, "
                f"{total - self._settled_listed} more than its parts listed, and {parts} still "
                f"list none after {OUTAGE_RETRIES} more passes: an outage answering them so "
                "hides those records; nothing is loaded, run again later"
            )
        logger.warning(
            "%s: the vendor counts %d records, %d more than its parts listed: paging again %s",
            where, total, total - self._settled_listed, parts,
        )
        time.sleep(self._outage_backoff(self._settled_recounts))
        return True

    def _in_settled(self, unit: _Unit) -> bool:
        """Whether the unit lies in the settled part of the window the vendor's count is
        asked for."""
        return self._settled_window is not None and unit.window.end <= self._settled_window.end

    def _count_all_records(self) -> bool:
        """Nothing was listed: whether the vendor counts any record up to now. Asked again
        after a wait while it says none (`COUNT_ASKS` times in all), as an outage answers so
        now and then. None every time means an outage, or a misrouted tenant, answering every
        request with nothing; the checks weigh that against the rows the table holds. An
        answer that fails leaves it unknown: the read succeeded."""
        try:
            total = self._count(Window.between(EPOCH, self._now))
        except VendorAPIError as error:
            logger.warning("%s: could not count the vendor's records: %s", self.resource, error)
            return False
        if total is None:
            logger.warning("%s: the vendor's count of its records has no integer 'total'",
                           self.resource)
            return False
        self.report.vendor_holds = total
        if not total:
            logger.warning(
                "%s: the vendor lists no records at all, in any window; an outage or a "
                "misrouted tenant answers so", self.resource,
            )
        return total > 0

    def _count(self, window: Window) -> int | None:
        """The vendor's count of `window`, the `total` of a page of one record (None if it has
        none), asked again after the retry backoff while it is 0, `COUNT_ASKS` times in all: an
        outage answers so now and then."""
        total: int | None = None
        for ask in range(1, COUNT_ASKS + 1):
            if ask > 1:
                time.sleep(self._outage_backoff(ask - 1))
            _, response = self._fetch(window, 0, 1)
            self.report.requests += 1
            total = page_total(response.json())
            if total != 0:
                break
        return total

    # Scheduling --------------------------------------------------------------------------

    def _unit(self, window: Window) -> _Unit:
        return _Unit(window, open=window.end > self._open_after, limit=self._page_size)

    def _step(self, block: bool) -> None:
        self._submit()
        if not self._futures:
            return
        done, _ = wait(self._futures, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            unit, pass_number, offset = self._futures.pop(future)
            unit.in_flight -= 1
            url, response = future.result()  # a vendor error ends the read here
            self.report.requests += 1
            if unit in self._active and pass_number == unit.passes:
                self._receive(unit, offset, url, response)
        self._submit()

    def _submit(self) -> None:
        while len(self._futures) < self._ahead and (request := self._next_request()):
            self._send(*request)

    def _send(self, unit: _Unit, offset: int, wait: float = 0.0) -> None:
        unit.in_flight += 1
        future = self._pool.submit(self._fetch_after, wait, unit.window, offset, unit.limit)
        self._futures[future] = (unit, unit.passes, offset)

    def _fetch_after(
        self, wait: float, window: Window, offset: int, limit: int
    ) -> tuple[str, requests.Response]:
        if self._closed.wait(wait):
            raise VendorAPIError(f"{self.resource} {window} offset {offset}: not sent, the "
                                 "read is over")
        return self._fetch(window, offset, limit)

    def _next_request(self) -> tuple[_Unit, int] | None:
        """The next page to fetch: of a unit being paged, oldest first, else a new unit's
        first page while the records held stay bounded."""
        for unit in self._active:
            if unit.pending:
                return unit, unit.pending.popleft()
        held = sum(unit.held_records for unit in self._active) + sum(
            len(listing) for _, listing, _ in self._accepted
        )
        if self._waiting and (not self._active or held + MAX_UNIT_RECORDS <= MAX_HELD_RECORDS):
            unit = self._waiting.popleft()
            unit.start_pass()
            self._active.append(unit)
            return unit, unit.pending.popleft()
        return None

    # One page ----------------------------------------------------------------------------

    def _receive(self, unit: _Unit, offset: int, url: str, response: requests.Response) -> None:
        where = f"{self.resource} {unit.window} offset {offset}"
        body = response.json()  # the session retried bodies that are not JSON
        if twice := page_fields_named_twice(body):
            raise VendorResponseError(
                f"{where}: 200 response naming {' and '.join(map(repr, twice))} twice, with "
                "different values; refusing to choose one"
            )
        records, total = page_records(body), page_total(body)
        if records is None:
            got = json_type(body.get("data") if isinstance(body, dict) else body)
            raise VendorResponseError(
                f"{where}: 200 response without a list under 'data' (got {got}); refusing to "
                "treat it as the last page"
            )
        if total is None:
            raise VendorResponseError(f"{where}: 200 response without an integer 'total'")
        if len(records) > unit.limit:
            logger.warning("%s: %d records for limit %d", where, len(records), unit.limit)
        if unit.total is None:  # the pass's first page
            if self._in_settled(unit):
                self._settled_counted = max(self._settled_counted, total)
            if total > MAX_UNIT_RECORDS and (parts := self._split_evenly(unit, records, total)):
                self._replace(unit, parts)
                return
            if len(records) < total <= MAX_UNSPLITTABLE_RECORDS and (
                unit.limit < MAX_PAGE_SIZE and unit.window.duration <= MILLISECOND
            ):
                # A millisecond cannot be split: in pages of the contract's largest size, one
                # response (one instant of the vendor, which cannot drift) holds up to 1,000 of
                # its records while records in it keep changing.
                unit.limit = MAX_PAGE_SIZE
                self._restart(unit)
                return
            unit.total = total
            unit.stride = len(records) or unit.limit
            if total > MAX_UNSPLITTABLE_RECORDS:
                unit.moved = f"a total of {total} records, more than one millisecond can hold"
            else:
                unit.pending.extend(range(unit.stride, total, unit.stride))
                if total and total % unit.stride == 0 and (
                    total > unit.stride or unit.stride == unit.limit
                ):
                    # The last page is full: only the page past it, empty as the contract
                    # says, shows that `total` counted every record.
                    unit.pending.append(total)
        elif total != unit.total and not unit.moved:
            if not total and not records and unit.outage_answers < OUTAGE_RETRIES:
                # An outage's answer after the pass's first page, not a change: the page is
                # asked again after the retry backoff, as a 503 would be.
                unit.outage_answers += 1
                self._send(unit, offset, wait=self._outage_backoff(unit.outage_answers))
                return
            unit.moved = f"the vendor's total changed from {unit.total} to {total}"
        if records or not offset or offset != unit.total or total != unit.total:
            unit.pages[offset] = _Page(url, offset, records, response, total)
        # else the page past the end, empty: it adds nothing to the pass, whose pages stay
        # one instant of the vendor when there is one
        end = offset + len(records)
        if not unit.moved and end < min(offset + unit.stride, unit.total):
            if not records:
                unit.moved = f"an empty page at offset {offset} of a total of {unit.total}"
            else:  # fewer records than asked for: go on where the vendor stopped
                unit.pending.appendleft(end)
        # A pass that moved is still read to its end: where its records lie tells where to
        # split the unit, and costs what paging it again would.
        if unit.in_flight == 0 and not unit.pending:
            self._finish_pass(unit)

    # One pass ----------------------------------------------------------------------------

    def _finish_pass(self, unit: _Unit) -> None:
        listing = unit.moved or self._listing(unit)
        if isinstance(listing, str):
            self._page_again(unit, listing)
            return
        identities = [record_identity(r, self._primary_key) for r in listing]
        repeated = {i for i, n in Counter(identities).items() if n > 1}
        if repeated and len(unit.pages) > 1 and not self._twins_confirmed(
            unit, listing, identities, repeated
        ):
            return
        copies = 0
        if repeated:
            settled, identities = self._settle_repeats(unit, listing, identities, repeated)
            copies, listing = len(listing) - len(settled), settled
        if not listing and unit.empty_passes + 1 < EMPTY_PASSES:
            # An outage's answer, or an empty unit: ask again, also after a pass that listed
            # records (which an outage's answer must not settle).
            unit.empty_passes += 1
            self._restart(unit)
            return
        if unit.open and not listing:
            # Its records left (updated past the window's end, or deleted), or an outage
            # answers: an earlier pass's listing, unconfirmed, is not released; the unit is
            # paged once more when the rest of the window is read, as any part listed empty.
            unit.earlier = None
        if unit.open and listing:
            # A late arrival can take the place of a record that left, keeping `total` while
            # shifting the offsets past a record: two passes that list the same records show
            # that none was skipped (a pass of one page is one instant of the vendor).
            agreed = unit.earlier is not None and (
                len(unit.pages) == 1 or [i for i, _ in unit.earlier] == identities
            )
            if not agreed:
                compared = unit.earlier is not None
                unit.earlier = list(zip(identities, listing, strict=True))  # for the next pass
                unit.empty_passes = 0
                if compared:
                    self._page_again(unit, "two passes listed different records")
                else:
                    self._restart(unit)
                return
        self._accept(unit, listing, identities, copies)

    def _listing(self, unit: _Unit) -> list[Any] | str:
        """The pass's records by position, 0 to `total`; or why the pages do not add up."""
        assert unit.total is not None
        listing: list[Any] = []
        for offset in sorted(unit.pages):
            page = unit.pages[offset]
            if offset > len(listing):
                return f"offsets {len(listing)} to {offset} were never served"
            overlap = page.records[: len(listing) - offset]
            if any(
                record_identity(a, self._primary_key) != record_identity(b, self._primary_key)
                for a, b in zip(overlap, listing[offset:], strict=False)
            ):
                return f"two pages disagree on the records at offset {offset}"
            listing += page.records[len(overlap):]
        if len(listing) != unit.total:
            return f"received {len(listing)} records of a total of {unit.total}"
        return listing

    def _twins_confirmed(
        self, unit: _Unit, listing: list[Any], identities: list[str], repeated: set[str]
    ) -> bool:
        """Whether ids a pass served on two pages are the vendor's twins: in a settled unit,
        every copy different, and a second pass listing the same. Otherwise the unit is paged
        again: a record served twice may stand for another that no page served (records moving
        under the offsets, a vendor sort without a tie-break, a deletion while a twin appeared),
        so it is cut until the copies come within one response, one instant of the vendor."""
        if not self._settled(unit) or _served_twice(listing, identities, repeated):
            self._page_again(unit, f"{len(repeated)} records were served on two pages")
            return False
        if unit.earlier is None:
            unit.earlier = list(zip(identities, listing, strict=True))
            unit.empty_passes = 0
            self._restart(unit)
            return False
        if [identity for identity, _ in unit.earlier] != identities:
            self._page_again(unit, "two passes listed different records")
            return False
        return True

    def _settled(self, unit: _Unit) -> bool:
        return not unit.open

    def _accept(
        self, unit: _Unit, listing: list[Any], identities: list[str], copies: int
    ) -> None:
        """Release the unit, a settled one once every earlier part is released; `copies`
        identical copies of records were dropped."""
        if unit.earlier:
            listed = {(i, _content(r)) for i, r in zip(identities, listing, strict=True)}
            listing = listing + [r for i, r in unit.earlier if (i, _content(r)) not in listed]
        self._active.remove(unit)
        if self._settled(unit):
            self._accepted.append((unit, listing, copies))
        else:
            self._release(unit, listing, copies)
        self._release_in_window_order()

    def _release_in_window_order(self) -> None:
        """Release, oldest first, the accepted settled units that no part still to be read
        precedes, each checked against the ids released before it; then, beyond
        `TWIN_IDS_KEPT`, forget the ids of the oldest days no part still to be read reaches
        into."""
        first_unread = min(
            (unit.window.start for unit in (*self._waiting, *self._active)), default=None
        )
        self._accepted.sort(key=lambda accepted: accepted[0].window.start)
        while self._accepted and (
            first_unread is None or self._accepted[0][0].window.start < first_unread
        ):
            unit, listing, copies = self._accepted.pop(0)
            self._release(unit, self._against_other_parts(unit, listing), copies)
        first_day = rfc3339(first_unread)[:10] if first_unread else None
        for day in sorted(self._released_by_day):
            if len(self._released_ids) <= TWIN_IDS_KEPT or (first_day and day >= first_day):
                break
            self._released_ids.difference_update(self._released_by_day.pop(day))

    def _release(self, unit: _Unit, listing: list[Any], copies: int) -> None:
        """Hand the unit to dlt as one page, its first, holding `listing`: dlt's client costs
        as much per page it walks whatever the page holds."""
        self.report.vendor_total += unit.total or 0
        self.report.listed += len(listing) + copies
        if self._in_settled(unit):
            self._settled_listed += len(listing) + copies
        self.report.duplicate_copies += copies
        self.report.units += not unit.paged_again_at_the_end  # counted when first released
        if not listing and unit.paged_again_at_the_end:
            self.report.empty_parts.append(unit.window)
            self._empty_parts.append(unit)
        elif not listing:
            self._empty_units.append(unit)
        first = unit.pages[0]  # every pass keeps its first page
        first.response.json()["data"] = listing
        self._ready.append(ReleasedPage(first.url, unit.window, unit.limit, first.response))

    def _against_other_parts(self, unit: _Unit, listing: list[Any]) -> list[Any]:
        """The settled unit's listing, with each record whose id another settled unit
        released turned defective: there a record cannot be listed twice (a change moves it
        past the window's end), so the vendor served twins. The copy filed first was released
        first and cannot be taken back; this one goes to quarantine."""
        checked = []
        released, by_day = self._released_ids, self._released_by_day
        for record in listing:
            # Copies this unit quarantined count too: a further copy elsewhere is a twin, also
            # of a copy the vendor listed in a part its `updated_at` does not lie in.
            raw = record.record if type(record) is DefectiveRecord else record
            identity = record_id(raw, self._primary_key)
            if identity is not None:
                key = hash(identity)
                if key not in released:
                    released.add(key)
                    # Remembered with the day its twins would be listed in.
                    stamp = raw.get(self._cursor)
                    if not (type(stamp) is str and in_contract_form(stamp)):  # inline: per record
                        stamp = self._stamp(raw) or rfc3339(unit.window.start)
                    day = stamp[:10]
                    if day not in by_day:
                        by_day[day] = []
                    by_day[day].append(key)
                elif record is raw:
                    record = DefectiveRecord(
                        record,
                        "duplicate id: the vendor also served this id, with other content, "
                        "filed earlier in the window; only the copy filed first can be loaded",
                    )
            checked.append(record)
        return checked

    def _stamp(self, record: Any) -> str | None:
        """The record's `updated_at` in the vendor's format, if it has a readable one."""
        if not isinstance(record, dict):
            return None
        stamp = record.get(self._cursor)
        if isinstance(stamp, str) and in_contract_form(stamp):
            return stamp
        moment = self._timestamp(record)
        return rfc3339(moment) if moment else None

    def _settle_repeats(
        self, unit: _Unit, listing: list[Any], identities: list[str], repeated: set[str]
    ) -> tuple[list[Any], list[str]]:
        """The vendor served some records twice in one response, one instant of its data:
        identical copies are one record; copies that differ are all quarantined, since none of
        them can be told to be the record."""
        versions: dict[str, set[str]] = {}
        for identity, record in zip(identities, listing, strict=True):
            if identity in repeated:
                versions.setdefault(identity, set()).add(dump_vendor_json(record))
        settled: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for identity, record in zip(identities, listing, strict=True):
            if identity not in repeated:
                settled.append((identity, record))
            elif len(versions[identity]) > 1:
                reason = (
                    f"duplicate id: the vendor served {len(versions[identity])} different "
                    "records with this id in one window"
                )
                settled.append((identity, DefectiveRecord(record, reason)))
            elif identity not in seen:
                settled.append((identity, record))
            seen.add(identity)
        logger.warning(
            "%s %s: the vendor served %d records twice in one instant", self.resource,
            unit.window, len(repeated),
        )
        return [r for _, r in settled], [i for i, _ in settled]

    def _page_again(self, unit: _Unit, why: str) -> None:
        self.report.repaged += 1
        parts = self._split_at_records(unit)
        if parts:
            logger.info(
                "%s %s: %s while it was paged; paging it again as %d smaller windows",
                self.resource, unit.window, why, len(parts),
            )
            self._replace(unit, parts)
            return
        unit.moved_passes.append((why, _answers(unit)))
        unit.empty_passes = 0
        if len(unit.moved_passes) >= MAX_PASSES:
            raise UnreconciledWindowError(self._unreconciled(unit))
        logger.info("%s %s: %s; paging it again", self.resource, unit.window, why)
        self._restart(unit)

    def _unreconciled(self, unit: _Unit) -> str:
        """Why a unit that cannot be split further is given up: a vendor answering it the same
        way on every pass, with answers that contradict each other, or one that keeps changing
        it."""
        reasons, answers = zip(*unit.moved_passes, strict=True)
        served = sum(len(page.records) for page in unit.pages.values())
        size = (
            f"{unit.total} records counted and {served} served in "
            f"{unit.window.duration.total_seconds() * 1000:.0f} ms: "
            + ("a page holds them" if len(self._record_times(unit)) <= self._page_size
               else "a millisecond cannot be split")
        )
        # Which pages a pass asks for depends on the order answers arrive in: passes are
        # compared where they asked the same.
        if all(_agree(one, other) for one, other in itertools.combinations(answers, 2)):
            return (
                f"{self.resource} {unit.window}: {reasons[-1]}, the same answer on each of "
                f"{len(answers)} passes ({size}): the vendor's answers contradict each other "
                "while nothing there changes, so it cannot be reconciled"
            )
        return (
            f"{self.resource} {unit.window}: {'; '.join(dict.fromkeys(reasons))}, on "
            f"{len(reasons)} passes ({size}); the vendor keeps changing it, so it cannot be "
            "reconciled"
        )

    def _restart(self, unit: _Unit) -> None:
        """Page the unit again from offset 0, before any unit not started yet."""
        unit.start_pass()
        self._active.remove(unit)
        self._waiting.appendleft(unit)

    def _replace(self, unit: _Unit, parts: list[Window]) -> None:
        """Page `parts` in place of `unit`, in window order among the units waiting: parts
        paged ahead of earlier ones would be held until those are released (units of several
        split parts, each split on its first page, came last split, first paged)."""
        self._active.remove(unit)
        self._waiting = deque(sorted([*(self._unit(part) for part in parts), *self._waiting],
                                     key=lambda waiting: waiting.window.start))

    # Splitting ---------------------------------------------------------------------------

    def _split_evenly(self, unit: _Unit, first_page: list[Any], total: int) -> list[Window]:
        """A unit too large to page at once, cut into equal spans of time from its first
        record on (nothing lies before it; the vendor's records may start long after the
        window does, e.g. in a full refresh from 1970)."""
        window = unit.window
        begin = min(
            (t for t in map(self._timestamp, first_page) if t and window.contains(t)),
            default=window.start,
        )
        count = min(math.ceil(total / SPLIT_TARGET_RECORDS), MAX_SPLIT_PARTS)
        span = (window.end - begin) / count
        parts = window.split_at(begin + span * i for i in range(1, count))
        return parts if len(parts) > 1 else []

    def _split_at_records(self, unit: _Unit) -> list[Window]:
        """A unit that moved, cut where its records lie, into parts of about equal count."""
        times = self._record_times(unit)
        if len(times) <= self._page_size:
            return []
        count = min(max(2, math.ceil(len(times) / SPLIT_RECORDS)), 8)
        cuts = [times[len(times) * i // count] for i in range(1, count)]
        # A cut in the unit's first millisecond would be no cut: records crowded there (a bulk
        # update) are cut off from the rest after it, so the rest can be paged on its own.
        first = floor_ms(unit.window.start)
        parts = unit.window.split_at(
            cut if floor_ms(cut) > first else first + MILLISECOND for cut in cuts
        )
        return parts if len(parts) > 1 else []

    def _record_times(self, unit: _Unit) -> list[datetime]:
        """The times of the unit's records that lie in it, in order."""
        return sorted(
            t for page in unit.pages.values() for t in map(self._timestamp, page.records)
            if t and unit.window.contains(t)
        )

    def _timestamp(self, record: Any) -> datetime | None:
        try:
            return parse_timestamp(record.get(self._cursor))
        except (AttributeError, ValueError, OverflowError):
            return None


def _served_twice(listing: list[Any], identities: list[str], repeated: set[str]) -> bool:
    """Whether the listing holds some record twice with the very same content."""
    seen: set[tuple[str, str]] = set()
    for identity, record in zip(identities, listing, strict=True):
        if identity in repeated:
            key = (identity, _content(record))
            if key in seen:
                return True
            seen.add(key)
    return False


def _answers(unit: _Unit) -> dict[int, tuple]:
    """What the vendor answered to the unit's pass: each page's total and records, by offset."""
    return {
        offset: (page.total, tuple(map(_content, page.records)))
        for offset, page in unit.pages.items()
    }


def _agree(one: dict[int, tuple], other: dict[int, tuple]) -> bool:
    """Whether two passes got the same answers at every offset both asked for."""
    return all(one[offset] == other[offset] for offset in one.keys() & other.keys())


def _content(record: Any) -> str:
    return dump_vendor_json(record.record if isinstance(record, DefectiveRecord) else record)
