"""Offset pagination that refuses to lose records silently.

Plain dlt treats a 200 without `data` as an empty last page and stops: a silently short load.
This paginator checks every page against the contract (a list under `data`, an integer
`total`) and reconciles the window at its end: the records received must equal the vendor's
`total`, and `total` must not change while paging (records that move during paging shift
offsets and would otherwise be skipped without a trace). A page that ignores `limit` and
returns more or fewer records is accepted: the next page starts after the last record received.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from requests import Response

from ecom_assets.ingest.http import VendorResponseError
from ecom_assets.ingest.page import page_records, page_total, vendor_json
from ecom_assets.ingest.report import ResourceReport

PAGE_SIZE = 100
MAX_PASSES = 3

logger = logging.getLogger(__name__)


def _identity(record: Any) -> str:
    """What tells records apart when the window is reconciled: the `id`, or, for a defective
    record without one (quarantined later), its whole content. Were id-less records all
    counted as distinct, one served twice by a shifted page would hide the record the shift
    skipped."""
    record_id = record.get("id") if isinstance(record, dict) else None
    if isinstance(record_id, str):
        return record_id
    # The NUL prefix keeps a content key from ever equalling a vendor id.
    return "\0" + vendor_json(record)


class PaginationDriftError(VendorResponseError):
    """The vendor's window kept changing while it was paged, pass after pass."""


class ReconcilingOffsetPaginator(OffsetPaginator):
    def __init__(
        self,
        report: ResourceReport,
        limit: int = PAGE_SIZE,
        on_restart: Callable[[], None] = lambda: None,
        max_passes: int = MAX_PASSES,
    ) -> None:
        super().__init__(limit=limit, total_path="total")
        self.report = report
        self._on_restart = on_restart
        self._max_passes = max_passes
        self._passes = 1
        self._pass_received = 0
        # The identities of this pass's records: they must account for `total`, or pages
        # repeated records (and so skipped others). Kept as Arrow strings, a few bytes per
        # record: a million ids in a Python set would cost some 70 MB.
        self._pass_ids: list[pa.Array] = []  # one array per page

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        where = f"{self.report.resource} offset {self.current_value}"
        body = response.json()  # the session retried and reported bodies that are not JSON
        page = page_records(body)
        if page is None:
            got = type(body.get("data") if isinstance(body, dict) else None).__name__
            raise VendorResponseError(
                f"{where}: 200 response without a list under 'data' "
                f"(got {got}); refusing to treat it as the last page"
            )
        total = page_total(body)
        if total is None:
            raise VendorResponseError(f"{where}: 200 response without an integer 'total'")
        if len(page) > self.limit:
            logger.warning("%s: %d records for limit %d", where, len(page), self.limit)
        self.report.add_page(len(page))
        self._pass_received += len(page)
        self._pass_ids.append(pa.array([_identity(record) for record in page], pa.string()))
        expected = self.report.vendor_total
        if expected is not None and total != expected:
            self._restart(where, f"the vendor's total changed from {expected} to {total}")
            return
        self.report.vendor_total = total
        self.value_step = len(page) or self.limit  # the next offset follows what arrived
        super().update_state(response, page)
        if not self.has_next_page:
            identities = pa.chunked_array(self._pass_ids, pa.string())
            distinct = pc.count_distinct(identities).as_py()
            received = f"received {self._pass_received} records ({distinct} distinct)"
            if self._pass_received != total:
                self._restart(where, f"{received} of a total of {total}")
                return
            if distinct != total:
                repeats = self._unexplained_repeats(identities)
                if repeats:
                    self._restart(where, f"{received}: {repeats}")
                    return
                logger.warning(
                    "%s: identical records without an id on one page: taken as the vendor's "
                    "own copies", where,
                )
            self.report.complete = True

    def _unexplained_repeats(self, identities: pa.ChunkedArray) -> str | None:
        """What of this pass's repeated records may stand for a record paging skipped; None
        if each is a record without an id repeated within one page. One response is one
        snapshot of the vendor's data, which holds a record once: such copies are the
        vendor's own. Across pages they cannot be told from a record served twice because
        records moved between two requests (or a vendor sort without a tie-break)."""
        ids = pc.filter(identities, pc.invert(pc.starts_with(identities, "\0")))
        if pc.count_distinct(ids).as_py() != len(ids):
            return "ids repeated, as when records move while a window is paged"
        per_page = pa.chunked_array([pc.unique(page) for page in self._pass_ids], pa.string())
        if pc.count_distinct(per_page).as_py() != len(per_page):
            return (
                "identical records without an id on two pages: the vendor's own copies cannot "
                "be told from a record served twice while another was skipped"
            )
        return None

    def _restart(self, where: str, drift: str) -> None:
        """Records moved while the window was paged, so offsets shifted and a record may have
        been skipped: page the whole window again. The pages of the earlier pass are loaded
        too; the merge on `id` keeps one row per record."""
        if self._passes >= self._max_passes:
            passes = "passes" if self._max_passes > 1 else "pass"
            raise PaginationDriftError(
                f"{where}: {drift}; the window did not hold still over {self._max_passes} "
                f"{passes}"
            )
        logger.warning("%s: %s; paging the window again from offset 0", where, drift)
        self._passes += 1
        self._pass_received = 0
        self._pass_ids.clear()
        self.report.restart_window()
        self.current_value = self.initial_value
        self._has_next_page = True
        self._on_restart()
