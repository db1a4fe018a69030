"""The vendor session's HTTP transport (`ingest/transport.py`): HTTPS checked as requests checks
it, the vendor's cookies kept, connections kept alive, and a key that appears in no error."""

import gzip
import json
import ssl
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from ecom_assets.ingest import VendorAPIError, VendorSession
from ecom_assets.ingest.errors import VendorRateLimited
from ecom_assets.ingest.vendor_session import RetryPolicy

pytestmark = pytest.mark.integration

KEY = "transport-key-4f1c"
PAGE = {"data": [], "total": 0}
NO_RETRY = RetryPolicy(max_retries=0, backoff_factor=0)


class Vendor(ThreadingHTTPServer):
    """A vendor answering every GET with an empty page, setting a cookie on its first answer,
    and noting the connections and the cookies of what it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections: set[int] = set()  # client ports
        self.cookies: list[str | None] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1/order_payments"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Vendor

    def do_GET(self) -> None:
        self.server.connections.add(self.client_address[1])
        self.server.cookies.append(self.headers.get("Cookie"))
        body = json.dumps(PAGE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if len(self.server.cookies) == 1:
            self.send_header("Set-Cookie", "lb=7; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(vendor: Vendor) -> Iterator[Vendor]:
    threading.Thread(target=vendor.serve_forever, daemon=True).start()
    try:
        yield vendor
    finally:
        vendor.shutdown()
        vendor.server_close()


@contextmanager
def https_vendor(tmp_path: Path) -> Iterator[tuple[Vendor, Path]]:
    """The vendor over TLS, its certificate signed by a CA of the test's own (in a file)."""
    authority = trustme.CA()
    vendor = Vendor()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    vendor.socket = context.wrap_socket(vendor.socket, server_side=True)
    vendor.url = vendor.url.replace("http://", "https://")
    bundle = tmp_path / "vendor-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    with serving(vendor):
        yield vendor, bundle


def fetch_pages(vendor: Vendor, pages: int, policy: RetryPolicy = NO_RETRY) -> list[dict]:
    auth = APIKeyAuth(name="api_key", api_key=KEY, location="query")
    with VendorSession(KEY, policy, concurrency=2) as session:
        return [
            session.send_with_retries(
                session.prepare_get(vendor.url, {"offset": 100 * page, "limit": 100}, auth)
            ).json()
            for page in range(pages)
        ]


def test_pages_over_https_are_checked_against_the_ca_bundle_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with https_vendor(tmp_path) as (vendor, bundle):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

        pages = fetch_pages(vendor, 3)

    assert pages == [PAGE] * 3
    assert len(vendor.connections) == 1, "one connection, kept alive"


def test_a_vendor_certificate_no_trusted_authority_signed_fails_without_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with https_vendor(tmp_path) as (vendor, _), pytest.raises(VendorAPIError) as failure:
        fetch_pages(vendor, 1)  # checked against certifi's bundle: the CA is not in it

    assert "SSLError" in str(failure.value)
    assert KEY not in str(failure.value) and KEY not in repr(failure.value.__context__)
    assert vendor.cookies == [], "no request reached the vendor"


def test_a_cookie_the_vendor_sets_goes_with_every_later_request() -> None:
    with serving(Vendor()) as vendor:
        fetch_pages(vendor, 3)

    assert vendor.cookies == [None, "lb=7", "lb=7"]
    assert len(vendor.connections) == 1


class Replies(ThreadingHTTPServer):
    """A vendor answering each GET with the next of `replies`: status, headers, body."""

    def __init__(self, *replies: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _ReplyHandler)
        self.replies = list(replies)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1/order_payments"


class _ReplyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Replies

    def do_GET(self) -> None:
        status, headers, body = self.server.replies.pop(0)
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_empty_error_body_labelled_deflate_keeps_its_status_and_retry_after() -> None:
    with serving(Replies((429, {"Content-Encoding": "deflate", "Retry-After": "3600"}, b""))
                 ) as vendor, pytest.raises(VendorRateLimited, match="asked to wait 3600 s"):
        fetch_pages(vendor, 1)


def test_a_gzip_body_with_bytes_after_it_reads_as_urllib3_reads_it() -> None:
    page = json.dumps(PAGE).encode()
    with serving(Replies(
        (200, {"Content-Encoding": "gzip"}, gzip.compress(page) + b"\x00\x00trailing"),
        (200, {"Content-Encoding": "deflate"}, zlib.compress(page)),
    )) as vendor:
        assert fetch_pages(vendor, 2) == [PAGE, PAGE]
