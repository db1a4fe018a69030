"""The HTTP session every vendor request goes through: retries, Retry-After, scrubbed errors.

dlt's REST client accepts any `requests.Session`; this one implements the integration's retry
rules exactly (429/500/502/503/504 and timeouts, at most 3 retries, exponential backoff with
factor 2, `Retry-After` honoured up to a ceiling) and raises errors whose messages never carry
the API key: not in the URL, not in an error body that echoes the URL, not in a chained cause.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError

from ecom_assets.ingest.prefetch import AdaptiveLimit, PagePrefetcher

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"'#]+", re.IGNORECASE)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults are the integration's specification."""

    max_retries: int = 3
    backoff_factor: float = 2.0
    max_retry_after: float = 120.0
    timeout: float = 30.0

    def backoff(self, retry_number: int) -> float:
        """Seconds before retry `retry_number` (1-based): factor, 2*factor, 4*factor, ..."""
        return self.backoff_factor * 2 ** (retry_number - 1)


class VendorAPIError(Exception):
    """The vendor could not be read. The message is safe to show: it never contains the key."""

    retryable = True


def vendor_error_behind(exc: BaseException) -> VendorAPIError | None:
    """The vendor error behind `exc` (dlt wraps what a source raises in its own exceptions)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, VendorAPIError):
        cause = cause.__cause__ or cause.__context__
    return cause


class VendorRequestRejected(VendorAPIError):
    """A 4xx other than 429: wrong key, bad request. Retrying cannot help."""

    retryable = False


class VendorRateLimited(VendorAPIError):
    """The vendor asked us to wait longer than the configured ceiling."""


class VendorResponseError(VendorAPIError):
    """A 200 response that breaks the contract (no `data` list, no `total`, bad JSON)."""


def scrub(text: str, secret: str | None) -> str:
    """Remove the key from text: by value, and any `api_key=` query parameter by name."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_IN_QUERY.sub(r"\1***", text)


class KeyScrubbingFilter(logging.Filter):
    """Removes API keys from log records of the libraries that log request URLs (urllib3
    logs every request line, query string and key included, at DEBUG)."""

    # Filters apply to records created on the logger itself: name the ones that log URLs.
    LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "dlt")

    def __init__(self) -> None:
        super().__init__()
        # Replaced, never changed in place: another thread may be filtering a record with it.
        self.secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        with self._lock:
            self.secrets = self.secrets | {secret}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = message
        for secret in self.secrets:
            scrubbed = scrub(scrubbed, secret)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True


_key_filter = KeyScrubbingFilter()
for _name in KeyScrubbingFilter.LOGGERS:
    logging.getLogger(_name).addFilter(_key_filter)


def describe_request(url: str) -> str:
    """`order_payments offset 300`: where a request was, without its query string."""
    parts = urlsplit(url)
    resource = parts.path.rstrip("/").rsplit("/", 1)[-1]
    offset = parse_qs(parts.query).get("offset", ["0"])[0]
    return f"{resource} offset {offset}"


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        return ": ".join(str(body[k]) for k in ("error", "message") if body.get(k))
    return str(body)


def _parse_json_once(response: requests.Response) -> bool:
    """Parse the body once, with JSON numbers as exact Decimals, for every later `.json()`;
    False if it is not valid JSON.

    Money must never pass through a float, and the paginator, the prefetcher and dlt all read
    the same body: one parse serves them all.
    """
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        return False
    response.json = lambda **_: body  # type: ignore[method-assign]
    return True


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def redirect_stays_with_vendor(origin: SplitResult, hop: SplitResult) -> bool:
    """A redirect stays with the vendor: the same host, and HTTPS if the request was (an
    upgrade from HTTP to HTTPS is followed)."""
    return hop.hostname == origin.hostname and (
        hop.scheme == origin.scheme or (origin.scheme, hop.scheme) == ("http", "https")
    )


class VendorSession(requests.Session):
    """A `requests.Session` with the vendor's retry rules, key-free errors and, with
    `concurrency` > 1, the next pages of a window fetched concurrently. Close it after use:
    that stops the page workers."""

    def __init__(
        self, api_key: str, policy: RetryPolicy | None = None, concurrency: int = 1
    ) -> None:
        super().__init__()
        self.api_key = api_key
        if api_key:
            _key_filter.add(api_key)
        self.policy = policy or RetryPolicy()
        self.limit = AdaptiveLimit(max(1, concurrency))
        # One pooled connection per worker plus the paginator's own, all kept alive.
        adapter = HTTPAdapter(pool_maxsize=self.limit.maximum + 1)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self._environment_settings: dict[str, dict[str, Any]] = {}
        self._closed = threading.Event()
        self._sending = threading.local()
        self._prefetcher = (
            PagePrefetcher(self._send_with_retries, workers=concurrency, ahead=2 * concurrency)
            if concurrency > 1
            else None
        )

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        origin = getattr(self._sending, "url", None)
        if origin is not None:
            # requests follows a redirect by calling send() again, from inside the send below:
            # the hop is part of that request, under its slot and its retries. The key is in
            # the URL, so it goes to the vendor's own host only, never over plain HTTP if the
            # request was HTTPS.
            if not redirect_stays_with_vendor(urlsplit(origin), urlsplit(request.url or "")):
                raise VendorRequestRejected(
                    f"{describe_request(request.url or '')}: the vendor redirected to another "
                    "host or to plain HTTP; not followed, so that the key goes nowhere else"
                )
            return super().send(request, **kwargs)
        if kwargs.get("timeout") is None:  # requests' own get() passes timeout=None
            kwargs["timeout"] = self.policy.timeout
        if self._prefetcher is None:
            return self._send_with_retries(request, **kwargs)
        return self._prefetcher.send(request, **kwargs)

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        # requests reads the proxy variables (and CA bundle paths) from the environment again
        # for every request, a tenth of a page's CPU here; they do not change during a run,
        # so they are read once per host and per set of arguments and session settings.
        host = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
        key = repr((
            host.scheme, host.netloc, proxies, stream, verify, cert,
            self.trust_env, self.proxies, self.verify, self.cert,
        ))
        settings = self._environment_settings.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment_settings[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}

    def discard_prefetched(self) -> None:
        """Forget pages fetched ahead: the window is being paged again from the start."""
        if self._prefetcher is not None:
            self._prefetcher.discard()

    def close(self) -> None:
        # A page worker may be waiting to retry (up to the Retry-After ceiling): it stops
        # instead of calling the vendor for a run that is over.
        self._closed.set()
        self.limit.stop()
        if self._prefetcher is not None:
            self._prefetcher.close()
        super().close()

    def _send_with_retries(
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        where = describe_request(request.url or "")
        retry_number = 0
        while True:
            retry_number += 1
            try:
                with self.limit:
                    if self._closed.is_set():
                        raise VendorAPIError(f"{where}: not sent, the session is closed")
                    self._sending.url = request.url or ""
                    try:
                        response = super().send(request, **kwargs)
                    finally:
                        self._sending.url = None
            except requests.HTTPError as exc:
                # dlt's raise-for-status response hook fires inside send(); take its response.
                response = exc.response
            except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
                # ChunkedEncodingError: the connection closed before the whole body arrived.
                response = None
                failure, wait = type(exc).__name__, self.policy.backoff(retry_number)
            except (requests.RequestException, ValueError) as exc:
                # A redirect that cannot be followed (a loop, another scheme, a broken URL).
                # requests' message holds the URL and its key: only the kind is told.
                raise VendorRequestRejected(
                    f"{where}: the vendor's redirect could not be followed "
                    f"({type(exc).__name__}); not retried"
                ) from None
            if response is not None:
                status = response.status_code
                if status < 400 and _parse_json_once(response):
                    self.limit.succeeded()
                    return response
                if status < 400:
                    # A truncated or garbled body is as transient as a 5xx, and retried the same.
                    failure = f"HTTP {status} with a body that is not valid JSON"
                else:
                    failure = f"HTTP {status} ({self._safe_detail(response)})"
                if status >= 400 and status not in RETRY_STATUSES:
                    raise VendorRequestRejected(
                        f"{where}: the vendor rejected the request with {failure}; not retried"
                    ) from None
                retry_after = retry_after_seconds(response)
                wait = self.policy.backoff(retry_number) if retry_after is None else retry_after
                if wait > self.policy.max_retry_after:
                    raise VendorRateLimited(
                        f"{where}: the vendor asked to wait {wait:.0f} s, more than the "
                        f"{self.policy.max_retry_after:.0f} s ceiling; giving up ({failure})"
                    ) from None
                if status == 429:
                    # The vendor's limit is on the key, not on this request: every request of
                    # the session waits, and fewer run at once afterwards.
                    self.limit.rate_limited(wait)
            if retry_number > self.policy.max_retries:
                raise VendorAPIError(
                    f"{where}: still failing after {self.policy.max_retries} retries: {failure}"
                ) from None
            logger.warning(
                "%s: %s; retry %d of %d in %.2f s",
                where, failure, retry_number, self.policy.max_retries, wait,
            )
            self._closed.wait(wait)

    def _safe_detail(self, response: requests.Response) -> str:
        # Scrub before shortening: a cut through the key would hide it from the scrubber.
        return scrub(_error_detail(response), self.api_key)[:200]
