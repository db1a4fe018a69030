"""A local HTTP server that honours the vendor API contract (shared/vendor-api/openapi.yaml).

It serves the deterministic `Dataset` as the live shop (`LiveFeed`) holds it now, each page a
consistent snapshot, and misbehaves on demand the way the contract says real vendors do: through
a `FaultPlan` (rate limits, 5xx, broken bodies, slow answers), and through persistent defects
(`corrupt`, `duplicate`, `serve_empty`, `delete`), so clients can be tested end to end against
real sockets.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import simplejson

from ecom_assets.contract import ResourceContract

from .data import (
    DEFAULT_SPEC,
    RESOURCES,
    Dataset,
    Record,
    SandboxResource,
    SandboxSpec,
    parse_timestamp_ms,
)
from .live import OMIT, LiveFeed, Twice, now_ms

__all__ = [
    "DEFAULT_API_KEY",
    "OMIT",
    "VERSION_HEADER",
    "Fault",
    "FaultPlan",
    "Reply",
    "RequestRecord",
    "SandboxServer",
    "Twice",
]

DEFAULT_API_KEY = "sandbox-key"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_CONTENT_TYPE = "application/json; charset=utf-8"
# The live shop's version a page describes (`LiveFeed.version` when it was selected).
VERSION_HEADER = "X-Sandbox-Version"
_DIGITS = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    cut_after: int | None = None  # send only this many bytes of the body, then hang up


def _json_bytes(obj: Any) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    except TypeError:  # a Decimal a test asked for: the number as it writes it, `0E+17`
        text = simplejson.dumps(obj, ensure_ascii=False, separators=(",", ":"), use_decimal=True)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (a defect a test asked for): as its escape
        return simplejson.dumps(obj, separators=(",", ":"), use_decimal=True).encode()


_EMPTY_BODY = _json_bytes({"data": [], "total": 0})


def _error_reply(
    status: int, error: str, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    """An error in the contract's shape: `{"error": <code>, "message": <text>}`."""
    return Reply(status, _json_bytes({"error": error, "message": message}), headers)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status code without a standard phrase, e.g. 599
        return "Error"


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, consumed by a single request. Build it with the constructors below.

    Every fault is "wait `delay_s`, then either serve the real page or send `reply(...)`
    instead"; a new kind needs a constructor and, if it replaces the answer, a case in `reply`.
    """

    kind: Literal["status", "body", "raw", "stall", "act", "ignore_limit", "redirect", "cut"]
    http_status: int = 200
    payload: bytes = b""
    retry_after: str | None = None
    echo_url: bool = False
    delay_s: float = 0.0
    action: Callable[[], None] | None = None
    page_size: int | None = None
    redirect_origin: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def status(cls, code: int, retry_after: str | None = None, echo_url: bool = False) -> Fault:
        """Answer `code` with a JSON error body, a `Retry-After` header if given, and with
        `echo_url` the request target in the message: api_key included, as real vendors do."""
        return cls("status", http_status=code, retry_after=retry_after, echo_url=echo_url)

    @classmethod
    def body(cls, obj: Any) -> Fault:
        """Answer 200 with exactly this JSON value instead of the page."""
        return cls("body", payload=_json_bytes(obj))

    @classmethod
    def raw(cls, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Fault:
        """Answer `status` with these bytes, still labelled JSON (malformed, truncated...),
        and `headers` (`Content-Encoding: gzip` on a body that is not)."""
        return cls("raw", http_status=status, payload=text.encode(), headers=headers)

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Wait, then serve the page normally: trips client read timeouts."""
        return cls("stall", delay_s=seconds)

    @classmethod
    def act(cls, action: Callable[[], None]) -> Fault:
        """Do `action` (e.g. update a record, as the vendor's users do), then serve the page
        as it is now."""
        return cls("act", action=action)

    @classmethod
    def ignore_limit(cls, page_size: int) -> Fault:
        """Serve up to `page_size` records from the requested offset, whatever `limit` said."""
        return cls("ignore_limit", page_size=page_size)

    @classmethod
    def redirect(cls, to_origin: str = "") -> Fault:
        """Answer 307 Temporary Redirect to the same URL, or to the same path and query on
        `to_origin` (e.g. `http://localhost:8765`), as a vendor moving hosts does."""
        return cls("redirect", http_status=307, redirect_origin=to_origin)

    @classmethod
    def cut(cls) -> Fault:
        """Send the page's headers and half its body, then close the connection."""
        return cls("cut")

    def reply(self, request_target: str) -> Reply | None:
        """The answer to send instead of the page, or None to serve the page."""
        match self.kind:
            case "status":
                phrase = _status_phrase(self.http_status)
                error = phrase.lower().replace(" ", "_").replace("-", "_")  # too_many_requests
                message = f"{phrase} for GET {request_target}" if self.echo_url else phrase
                headers = (("Retry-After", self.retry_after),) if self.retry_after else ()
                return _error_reply(self.http_status, error, message, headers)
            case "body" | "raw":
                return Reply(self.http_status, self.payload, self.headers)
            case "redirect":
                location = self.redirect_origin + request_target
                return Reply(self.http_status, b"", (("Location", location),))
            case "stall" | "ignore_limit" | "cut":
                return None
            case "act":
                assert self.action is not None
                self.action()
                return None


class FaultPlan:
    """Per-resource FIFO queues of faults; each is taken by the next authorised, well-formed
    request to its resource. Thread-safe."""

    def __init__(self, resources: Iterable[str] = RESOURCES) -> None:
        self._queues: dict[str, deque[Fault]] = {resource: deque() for resource in resources}
        self._lock = threading.Lock()

    def add(self, resource: str, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` requests to `resource` (after those queued)."""
        if resource not in self._queues:
            expected = tuple(self._queues)
            raise ValueError(f"unknown resource {resource!r}, expected one of {expected}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._queues[resource].extend([fault] * times)

    def take(self, resource: str) -> Fault | None:
        with self._lock:
            queue = self._queues.get(resource)
            return queue.popleft() if queue else None

    def pending(self, resource: str | None = None) -> int:
        """How many faults are still queued, for one resource or all."""
        with self._lock:
            if resource is not None:
                return len(self._queues[resource])
            return sum(len(queue) for queue in self._queues.values())

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()


class RequestRecord(NamedTuple):
    """One served request. `resource` is the raw path for unknown routes; `offset` and `limit`
    are None when the request was rejected before they were validated. Never holds the key."""

    resource: str
    offset: int | None
    limit: int | None
    status: int
    arrived_at: float  # time.monotonic() when the request arrived


class _PageQuery(NamedTuple):
    offset: int
    limit: int
    since: str | None
    before: str | None


def _parse_page_query(query: dict[str, str]) -> _PageQuery:
    """Validate the list parameters; ValueError carries the message for a 400."""
    offset_text = query.get("offset", "0")
    if not _DIGITS.fullmatch(offset_text):
        raise ValueError(f"offset must be an integer >= 0, got {offset_text!r}")
    limit_text = query.get("limit", str(DEFAULT_LIMIT))
    if not _DIGITS.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit_text!r}")
    since, before = query.get("updated_since"), query.get("updated_before")
    for name, value in (("updated_since", since), ("updated_before", before)):
        if value is not None:
            try:
                parse_timestamp_ms(value)
            except ValueError:
                raise ValueError(f"{name} must be an RFC 3339 timestamp, got {value!r}") from None
    return _PageQuery(int(offset_text), int(limit_text), since, before)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection for many pages
    # Headers and body go out in separate writes; with Nagle on, the second one can wait
    # for the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    timeout = 120  # seconds an idle keep-alive connection may hold a handler thread
    server: _HTTPServer

    def do_GET(self) -> None:
        reply = self.server.sandbox.respond(self.path)
        self.send_response(reply.status)
        self.send_header("Content-Type", _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if reply.cut_after is None:
            self.wfile.write(reply.body)
        else:
            self.wfile.write(reply.body[: reply.cut_after])
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: one stderr line per request is noise, and request lines hold the key."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._open_connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut open keep-alive connections, whose handler threads outlive `shutdown()`."""
        with self._connections_lock:
            connections = list(self._open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (e.g. timed out during a stall) is expected, not a bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SandboxServer:
    """The vendor API on a local port, serving `Dataset(spec, contracts, resources)` to callers
    with `api_key`.

    Use as a context manager, or `start()` / `stop()`. Port 0 picks a free port; read the
    address from `base_url` once started.

    The shop changes while it runs (`live`, a `LiveFeed`): every `live_interval_s` seconds a
    tick creates `live_per_tick` records per resource and updates one; `changes_per_second`
    updates random existing records, `creates_per_second` creates records, `late_arrival_ms`
    dates those changes up to that long in the past (see `LiveFeed`); `journal` keeps every
    change. Each response is one snapshot of the shop; its `X-Sandbox-Version` header says
    which (`live.version` then).
    """

    def __init__(
        self,
        spec: SandboxSpec = DEFAULT_SPEC,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        live_interval_s: float | None = None,
        live_per_tick: int = 5,
        *,
        contracts: Mapping[str, ResourceContract] | None = None,
        resources: Mapping[str, SandboxResource] | None = None,
        changes_per_second: float = 0,
        creates_per_second: float = 0,
        late_arrival_ms: int = 0,
        journal: bool = False,
    ) -> None:
        self.spec = spec
        self._dataset = Dataset(spec, contracts, resources)
        self._routes = {
            contract.path: name for name, contract in self._dataset.contracts.items()
        }
        self.live = LiveFeed(
            self._dataset,
            live_interval_s,
            live_per_tick,
            changes_per_second=changes_per_second,
            creates_per_second=creates_per_second,
            late_arrival_ms=late_arrival_ms,
            journal=journal,
        )
        self._api_key = api_key.encode()
        self._address = (host, port)
        self._faults = FaultPlan(self._dataset.resources)
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; a no-op if already running, so that
        `with SandboxServer(...).start() as server:` works too."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() may wait for the serving loop
            name="sandbox-server",
            daemon=True,
        )
        self._thread.start()
        self.live.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections; a no-op if not running."""
        if self._httpd is None or self._thread is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join()
        self._httpd = self._thread = None
        self.live.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("sandbox server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def dataset(self) -> Dataset:
        """The generated data set, as it was before any change."""
        return self._dataset

    @property
    def resources(self) -> tuple[str, ...]:
        return self._dataset.resources

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @property
    def request_log(self) -> list[RequestRecord]:
        """A snapshot of every request served so far, oldest first."""
        with self._log_lock:
            return list(self._log)

    def corrupt(self, resource: str, record_id: str, **fields: Any) -> None:
        """Serve record `record_id` with `fields` overwritten from now on (replacing earlier
        ones); a field set to `OMIT` is left out. The record keeps its place in the
        (updated_at, id) order whatever its fields say, and the window's `total` still counts
        it. Any value JSON can carry goes out as it is, `float("nan")` and `float("inf")` as
        the tokens NaN and Infinity, a `Decimal` as the number it writes (`0E+17`); a field
        set to `Twice(a, b)` is named twice, with `a`, then `b`."""
        self.live.corrupt(resource, record_id, fields)

    def duplicate(self, resource: str, record_id: str, **fields: Any) -> None:
        """A vendor bug: from now on, right after record `record_id`, serve a second record
        with the same id and `fields` changed (`OMIT` leaves one out). The copy follows the
        record when it moves; `total` counts both. Call again for a third. A copy given an
        `updated_at` string is served where that time sorts, and stays there."""
        self.live.duplicate(resource, record_id, fields)

    def serve_empty(self, resource: str, empty: bool = True) -> None:
        """While on, every list request of `resource` answers `{"data": [], "total": 0}` (an
        outage or a misrouted tenant, not a deletion)."""
        self.live.serve_empty(resource, empty)

    def delete(self, resource: str, record_id: str) -> None:
        """The vendor deletes a record outright: it is in no window any more."""
        self.live.delete(resource, record_id)

    def update_now(self, resource: str, record_id: str) -> None:
        """The vendor updates a record (of the data set, or live) now: its `updated_at` moves to
        now, so it leaves the windows it was in and the records behind it shift by one
        offset."""
        self.live.update(resource, record_id, now_ms())

    def window(self, resource: str, since: Any = None, before: Any = None) -> list[Record]:
        """Every record of a window as the vendor serves it now, in one snapshot."""
        return self.live.window(resource, since, before)

    def respond(self, target: str) -> Reply:
        """Answer one GET for `target` (path and query string) and log it."""
        arrived_at = time.monotonic()
        if self.spec.latency_ms:
            time.sleep(self.spec.latency_ms / 1000)
        url = urlsplit(target)
        resource = self._routes.get(url.path)
        if resource is None:
            message = f"no such endpoint: {url.path}"
            return self._logged(arrived_at, url.path, None, _error_reply(404, "not_found", message))
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if not hmac.compare_digest(query.get("api_key", "").encode(), self._api_key):
            reply = _error_reply(401, "unauthorized", "invalid or missing api_key")
            return self._logged(arrived_at, resource, None, reply)
        try:
            page = _parse_page_query(query)
        except ValueError as exc:
            reply = _error_reply(400, "bad_request", str(exc))
            return self._logged(arrived_at, resource, None, reply)
        fault = self._faults.take(resource)
        limit = page.limit
        if fault is not None:
            limit = fault.page_size or limit
            time.sleep(fault.delay_s)
            replacement = fault.reply(target)
            if replacement is not None:
                return self._logged(arrived_at, resource, page, replacement)
        snapshot = self.live.page(resource, page.since, page.before, page.offset, limit)
        if snapshot is None:  # serve_empty
            return self._logged(arrived_at, resource, page, Reply(200, _EMPTY_BODY))
        total, data, version = snapshot
        body = _json_bytes(
            {"data": data, "total": total, "offset": page.offset, "limit": page.limit}
        )
        cut_after = len(body) // 2 if fault is not None and fault.kind == "cut" else None
        headers = ((VERSION_HEADER, str(version)),)
        return self._logged(
            arrived_at, resource, page, Reply(200, body, headers, cut_after=cut_after)
        )

    def _logged(
        self, arrived_at: float, resource: str, page: _PageQuery | None, reply: Reply
    ) -> Reply:
        offset, limit = (page.offset, page.limit) if page else (None, None)
        with self._log_lock:
            self._log.append(RequestRecord(resource, offset, limit, reply.status, arrived_at))
        return reply
