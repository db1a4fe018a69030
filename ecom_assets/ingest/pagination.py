"""The paginator dlt's REST client walks: the reconciled parts of a window, in order.

The window reader (`reader.py`) does the paging: it fetches pages concurrently and releases a
part of the window only once it reconciles with the vendor's `total`, as one page holding all
the part's records. This paginator points each request of dlt's client at the next released
part's first page, and the session answers it with the response the reader already received,
so dlt extracts exactly the reconciled records, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from ecom_assets.ingest.reader import ReleasedPage
from ecom_assets.ingest.vendor_session import VendorSession


class ReconciledPagesPaginator(BasePaginator):
    def __init__(
        self, open_pages: Callable[[], Iterator[ReleasedPage]], session: VendorSession
    ) -> None:
        super().__init__()
        self._open_pages = open_pages
        self._session = session
        self._pages: Iterator[ReleasedPage] = iter(())
        self._next: ReleasedPage | None = None

    def __deepcopy__(self, memo: dict) -> ReconciledPagesPaginator:
        # dlt deep-copies the REST API config: the copy must page through the same session.
        return self

    def init_request(self, request: Request) -> None:
        self._pages = self._open_pages()
        self._next = next(self._pages)  # a window always has a first page, if only an empty one
        self._point(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        self._next = next(self._pages, None)
        self._has_next_page = self._next is not None

    def update_request(self, request: Request) -> None:
        if self._next is not None:
            self._point(request)

    def _point(self, request: Request) -> None:
        assert self._next is not None
        params = self._next.params
        request.params = {**(request.params or {}), **params}
        self._session.hold(self._next.url, params, self._next.response)
