"""Fetch the pages of a window concurrently, underneath dlt's sequential paginator.

Once a page of an offset-paginated window has arrived, its `total` tells every offset that is
left, so the next pages can be requested before the paginator asks for them. dlt still walks
the window page by page in order (its paginator, drift checks and reconciliation are
unchanged); it just finds each page already on its way. At most `ahead` pages are in flight or
waiting per window, so memory stays flat however large the window is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from ecom_assets.ingest.page import page_records, page_total

Fetch = Callable[..., requests.Response]


class AdaptiveLimit:
    """A concurrency limit that halves when the vendor says 429 and creeps back on success.
    While the vendor's `Retry-After` runs, no request of the session starts; `stop()` lets
    every waiting request through at once, to find its session closed."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self._active = 0
        self._successes = 0
        self._resume_at = 0.0  # time.monotonic() before which no request starts
        self._stopped = False
        self._condition = threading.Condition()

    def __enter__(self) -> AdaptiveLimit:
        with self._condition:
            while not self._stopped:
                pause = self._resume_at - time.monotonic()
                if pause <= 0 and self._active < self.limit:
                    break
                self._condition.wait(pause if pause > 0 else None)
            self._active += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._condition:
            self._active -= 1
            self._condition.notify_all()

    def rate_limited(self, retry_after: float) -> None:
        """The vendor answered 429 and asked for `retry_after` seconds."""
        with self._condition:
            self.limit = max(1, self.limit // 2)
            self._successes = 0
            self._resume_at = max(self._resume_at, time.monotonic() + retry_after)

    def succeeded(self) -> None:
        with self._condition:
            self._successes += 1
            if self.limit < self.maximum and self._successes >= self.limit:
                self.limit += 1
                self._successes = 0
                self._condition.notify_all()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()


def _with_offset(url: str, offset: int) -> str:
    parts = urlsplit(url)
    query = [(k, str(offset) if k == "offset" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _page_position(url: str) -> tuple[str, int] | None:
    """(window, offset) of a paged request (one with a `limit`), the window being the URL
    without its offset; None if it is not a paged request."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    params = dict(query)
    if "limit" not in params:
        return None
    try:
        offset = int(params.get("offset", 0))
    except ValueError:
        return None
    window = urlunsplit(parts._replace(query=urlencode([q for q in query if q[0] != "offset"])))
    return window, offset


def _window_of(url: str) -> str | None:
    position = _page_position(url)
    return position[0] if position else None


class PagePrefetcher:
    def __init__(self, fetch: Fetch, workers: int, ahead: int) -> None:
        self._fetch = fetch
        self._ahead = ahead
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vendor-page")
        self._pending: dict[str, Future[requests.Response]] = {}
        self._frontier: dict[str, int] = {}  # per window: the furthest offset requested
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with self._lock:
            future = self._pending.pop(request.url or "", None)
            if future is None:
                self._forget_window(request.url or "")
        response = future.result() if future else self._fetch(request, **kwargs)
        self._schedule_following(request, response, kwargs)
        return response

    def discard(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._frontier.clear()
        for future in pending.values():
            future.cancel()

    def close(self) -> None:
        self.discard()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _forget_window(self, url: str) -> None:
        """A page nobody predicted (a window's first, or the one after a page that ignored
        `limit`): the pages fetched ahead for its window are at the wrong offsets."""
        window = _window_of(url)
        if window is None:
            return
        self._frontier.pop(window, None)
        for stale in [u for u in self._pending if _window_of(u) == window]:
            self._pending.pop(stale).cancel()

    def _schedule_following(
        self, request: requests.PreparedRequest, response: requests.Response, kwargs: Any
    ) -> None:
        position = _page_position(request.url or "")
        shape = _page_shape(response)
        if position is None or shape is None or shape[1] == 0:
            return  # an empty page says nothing about where the next one starts
        window, offset = position
        total, stride = shape
        # Predict the next offsets by the length of this page: a vendor may send more or fewer
        # records than `limit`, and the paginator follows what arrived.
        last = min(total, offset + stride * (self._ahead + 1))
        with self._lock:
            # Only offsets past the furthest one already requested for this window.
            first = max(offset, self._frontier.get(window, offset)) + stride
            offsets = range(first, last, stride)
            if offsets:
                self._frontier[window] = offsets[-1]
            for next_offset in offsets:
                next_request = request.copy()
                next_request.url = _with_offset(request.url or "", next_offset)
                self._pending[next_request.url] = self._pool.submit(
                    self._fetch, next_request, **kwargs
                )


def _page_shape(response: requests.Response) -> tuple[int, int] | None:
    """(`total`, records on the page) of a good page; None for anything else."""
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    total, records = page_total(body), page_records(body)
    if total is None or records is None:
        return None
    return total, len(records)
