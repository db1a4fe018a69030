"""Offset pagination that refuses to lose records silently.

Plain dlt treats a 200 without `data` as an empty last page and stops: a silently short load.
This paginator checks every page against the contract (a list under `data`, an integer
`total`, no more records than `limit`) and reconciles the window at its end: the records
received must equal the vendor's `total`, and `total` must not change while paging (records
that move during paging shift offsets and would otherwise be skipped without a trace).
"""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from requests import Response

from ecom_assets.ingest.http import VendorResponseError
from ecom_assets.ingest.report import ResourceReport

PAGE_SIZE = 100


class PaginationDriftError(VendorResponseError):
    """The vendor's window changed while it was paged; a retry of the window may succeed."""


class ReconcilingOffsetPaginator(OffsetPaginator):
    def __init__(self, report: ResourceReport, limit: int = PAGE_SIZE) -> None:
        super().__init__(limit=limit, total_path="total")
        self.report = report

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        where = f"{self.report.resource} offset {self.current_value}"
        body = response.json()  # the session retried and reported bodies that are not JSON
        page = body.get("data") if isinstance(body, dict) else None
        if not isinstance(page, list):
            raise VendorResponseError(
                f"{where}: 200 response without a list under 'data' "
                f"(got {type(page).__name__}); refusing to treat it as the last page"
            )
        total = body.get("total")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise VendorResponseError(f"{where}: 200 response without an integer 'total'")
        if len(page) > self.limit:
            raise VendorResponseError(
                f"{where}: the vendor returned {len(page)} records for limit {self.limit}"
            )
        expected = self.report.vendor_total
        if expected is not None and total != expected:
            raise PaginationDriftError(
                f"{where}: the vendor's total changed from {expected} to {total} while paging"
            )
        self.report.vendor_total = total
        self.report.add_page(len(page))
        super().update_state(response, page)
        if not self.has_next_page and self.report.received != total:
            raise PaginationDriftError(
                f"{where}: received {self.report.received} records but the vendor's total "
                f"for the window is {total}"
            )
