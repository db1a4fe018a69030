"""The HTTP transport under the vendor session: a page request sent with `http.client`.

requests' own adapter goes through urllib3: a page cost the client 1.28 ms of CPU that way and
0.8 ms this way, more than parsing the page (0.3 ms); at 50,000 records a quarter of a second
of the interpreter's time, which the reader's threads and dlt compete for. This adapter sends a
plain request (no body, no proxy, no client certificate) over kept-alive connections, pooled
per host, and builds the same `requests.Response`. Everything around the transport stays
requests': the session's retries, redirects (each hop comes back through `send`), cookies,
hooks. Any other request goes to requests' adapter.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import certifi
from requests import PreparedRequest, Response, exceptions
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy

# What the adapter decodes; requests asks for the same by default.
ACCEPT_ENCODING = "gzip, deflate"


class _Received:
    """The response's `raw`: requests reads the vendor's cookies through it."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._original_response = response

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class PageAdapter(BaseAdapter):
    """A requests transport adapter for plain requests, over kept-alive connections (at most
    `pool_size` idle per host); `fallback` sends the others."""

    def __init__(self, fallback: HTTPAdapter, pool_size: int) -> None:
        super().__init__()
        self._fallback = fallback
        self._pool_size = pool_size
        self._idle: dict[tuple[Any, ...], list[http.client.HTTPConnection]] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __deepcopy__(self, memo: dict) -> PageAdapter:
        # dlt deep-copies the REST API config, the session with it: one pool of connections.
        return self

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        url = urlsplit(request.url or "")
        if (
            request.body is not None
            or cert
            or verify is False
            or url.scheme not in ("http", "https")
            or not url.hostname
            or select_proxy(request.url, proxies)
        ):
            return self._fallback.send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                proxies=proxies,
            )
        connect_timeout, read_timeout = (
            timeout if isinstance(timeout, tuple) else (timeout, timeout)
        )
        host = (url.scheme, url.hostname, url.port, verify)
        connection = self._checkout(host, connect_timeout)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            if connection.sock is None:
                try:
                    connection.connect()
                except TimeoutError:
                    raise exceptions.ConnectTimeout(
                        "the vendor's host did not accept a connection in time", request=request
                    ) from None
            connection.sock.settimeout(read_timeout)
            connection.request(
                request.method or "GET", target,
                headers={**request.headers, "Accept-Encoding": ACCEPT_ENCODING},
            )
            received = connection.getresponse()
            body = received.read()
        except BaseException as exc:
            connection.close()
            if isinstance(exc, Exception):
                raise _as_requests_error(exc, request) from None
            raise
        if received.will_close:
            connection.close()
        else:
            self._checkin(host, connection)
        return self._response(request, received, body)

    def _response(
        self, request: PreparedRequest, received: http.client.HTTPResponse, body: bytes
    ) -> Response:
        response = Response()
        response.status_code = received.status
        response.reason = received.reason
        # As urllib3 gives them to requests: a header sent twice, its values joined.
        joined: dict[str, list[str]] = {}
        for name, value in received.getheaders():
            joined.setdefault(name, []).append(value)
        response.headers = CaseInsensitiveDict({k: ", ".join(v) for k, v in joined.items()})
        response.encoding = get_encoding_from_headers(response.headers)
        try:
            response._content = _decoded(body, response.headers.get("Content-Encoding", ""))
        except zlib.error:
            raise exceptions.ContentDecodingError(
                "the vendor's body does not decode as its Content-Encoding says",
                request=request,
            ) from None
        response._content_consumed = True
        response.raw = _Received(received)
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response

    def _checkout(
        self, host: tuple[Any, ...], connect_timeout: float | None
    ) -> http.client.HTTPConnection:
        """An idle connection to `host` the server has not closed (a closed one is readable:
        urllib3 checks the same before reusing one), or a new one, not yet connected."""
        with self._lock:
            idle = self._idle.get(host, [])
            while idle:
                connection = idle.pop()
                if not _readable(connection.sock):
                    return connection
                connection.close()
        scheme, hostname, port, verify = host
        if scheme == "https":
            return http.client.HTTPSConnection(
                hostname, port, timeout=connect_timeout, context=self._context(verify)
            )
        return http.client.HTTPConnection(hostname, port, timeout=connect_timeout)

    def _checkin(self, host: tuple[Any, ...], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(host, [])
            if self._closed or len(idle) >= self._pool_size:
                connection.close()
            else:
                idle.append(connection)

    def _context(self, verify: bool | str) -> ssl.SSLContext:
        """Certificates checked as requests checks them: against certifi's bundle, or the
        file or directory `verify` names (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)."""
        bundle = certifi.where() if verify is True else str(verify)
        with self._lock:
            context = self._contexts.get(bundle)
            if context is None:
                if os.path.isdir(bundle):
                    context = ssl.create_default_context(capath=bundle)
                else:
                    context = ssl.create_default_context(cafile=bundle)
                self._contexts[bundle] = context
        return context

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
        self._fallback.close()


def _readable(sock: socket.socket | None) -> bool:
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding (gzip or deflate, as urllib3 decodes them)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity") or not body:  # an error's empty body, labelled anyway
        return body
    if encoding in ("gzip", "x-gzip"):
        decoded, members = b"", 0
        while body:  # a body may hold several gzip members
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                data = member.decompress(body) + member.flush()
            except zlib.error:
                if members:
                    break  # bytes after the first member that are no gzip: ignored, as urllib3
                raise
            if not member.eof:
                raise zlib.error("truncated gzip body")
            decoded, members, body = decoded + data, members + 1, member.unused_data
        return decoded
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:  # deflate without the zlib header, as some servers send it
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise zlib.error(f"unsupported Content-Encoding {encoding!r}")


def _as_requests_error(exc: Exception, request: PreparedRequest) -> Exception:
    """The exception requests would raise, without the URL (it holds the key)."""
    kind = type(exc).__name__
    if isinstance(exc, exceptions.RequestException):
        return exc
    if isinstance(exc, http.client.InvalidURL):
        return exceptions.InvalidURL("the vendor's URL cannot be sent", request=request)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return exceptions.SSLError(f"TLS with the vendor's host failed ({kind})", request=request)
    if isinstance(exc, TimeoutError):
        return exceptions.ReadTimeout("the vendor did not answer in time", request=request)
    if isinstance(exc, http.client.IncompleteRead):
        return exceptions.ChunkedEncodingError("the vendor's body ended early", request=request)
    if isinstance(exc, OSError | http.client.HTTPException):
        return exceptions.ConnectionError(
            f"the connection to the vendor failed ({kind})", request=request
        )
    return exc
