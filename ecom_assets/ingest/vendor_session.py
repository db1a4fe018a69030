"""The HTTP session every vendor request goes through: retries, Retry-After, scrubbed errors.

dlt's REST client accepts any `requests.Session`; this one implements the integration's retry
rules exactly (429/500/502/503/504 and timeouts, at most 3 retries, exponential backoff with
factor 2, `Retry-After` honoured up to a ceiling), shares a concurrency limit between all the
requests of a run, and raises errors whose messages never carry the key: not in the URL, not in
an error body that echoes the URL, not in a chained cause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.exceptions import ChunkedEncodingError, ContentDecodingError, TooManyRedirects

from ecom_assets.ingest.errors import (
    VendorAPIError,
    VendorRateLimited,
    VendorRequestRejected,
)
from ecom_assets.ingest.scrubbing import SECRETS, KeyInRecords, scrub
from ecom_assets.ingest.transport import PageAdapter
from ecom_assets.ingest.vendor_json import parse_vendor_json
from ecom_assets.settings import DEFAULTS

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Retries and backoff are the integration's specification; the rest are
    the settings' defaults."""

    max_retries: int = 3
    backoff_factor: float = 2.0
    max_retry_after: float = DEFAULTS.max_retry_after_seconds
    timeout: float = DEFAULTS.request_timeout_seconds

    def backoff(self, retry_number: int) -> float:
        """Seconds before retry `retry_number` (1-based): factor, 2*factor, 4*factor, ..."""
        return self.backoff_factor * 2 ** (retry_number - 1)


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


def describe_request(url: str) -> str:
    """`order_payments offset 300`: where a request was, without its query string."""
    parts = urlsplit(url)
    resource = parts.path.rstrip("/").rsplit("/", 1)[-1]
    offset = dict(parse_qsl(parts.query)).get("offset", "0")
    return f"{resource} offset {offset}"


def page_key(url: str, params: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """A list request's identity: path, window and offset (not the key, not the order), from
    its URL, or from its URL without a query and its parameters."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) if params is None else params
    return (parts.path, *(str(query.get(name, "")) for name in (
        "updated_since", "updated_before", "offset", "limit"
    )))


def retry_after_seconds(response: requests.Response) -> float | None:
    """The vendor's `Retry-After` in seconds (a number or an HTTP date); None if it gives no
    wait: missing, unreadable, zero or a moment already past (the backoff applies then)."""
    value = (response.headers.get("Retry-After") or "").strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return seconds if seconds > 0 else None


def redirect_stays_with_vendor(origin: str, hop: str) -> bool:
    """A redirect stays with the vendor: the same host, and HTTPS if the request was (an
    upgrade from HTTP to HTTPS is followed)."""
    before, after = urlsplit(origin), urlsplit(hop)
    return after.hostname == before.hostname and (
        after.scheme == before.scheme or (before.scheme, after.scheme) == ("http", "https")
    )


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        return ": ".join(str(body[k]) for k in ("error", "message") if body.get(k))
    return str(body)


def _parse_json_once(response: requests.Response, key: KeyInRecords) -> bool:
    """Parse the body once, as the vendor's exact JSON, for every later `.json()`; False if it
    is not valid JSON. A body whose records hold the key (a field echoing the request's URL)
    has it scrubbed: no record stores it."""
    try:
        body = parse_vendor_json(response.content)
    except ValueError:
        return False
    if key.in_body(response.content) and key.scrub(body):
        logger.warning("%s: the vendor's answer holds the API key, stored as ***",
                       describe_request(response.request.url or ""))
    response.json = lambda **_: body  # type: ignore[method-assign]
    return True


class VendorSession(requests.Session):
    """A `requests.Session` with the vendor's retry rules, key-free errors and a concurrency
    limit shared by every request of the run. Close it after use: requests still waiting to
    retry then stop instead of calling the vendor for a run that is over.

    dlt's REST client sends its page requests through `send`; pages the run has already
    fetched and reconciled (see `ingest/reader.py`) are handed over with `hold` and answered
    from there, so dlt walks exactly the reconciled pages without fetching them again.
    """

    def __init__(
        self, api_key: str, policy: RetryPolicy | None = None, concurrency: int = 1
    ) -> None:
        super().__init__()
        self.api_key = api_key
        SECRETS.add(api_key)
        self._key_in_records = KeyInRecords(api_key)
        self.policy = policy or RetryPolicy()
        self.concurrency = max(1, concurrency)
        self.limit = AdaptiveLimit(self.concurrency)
        # One pooled connection per concurrent request plus one, all kept alive; plain page
        # requests over http.client (`transport.py`), others through requests' own adapter.
        pool_size = self.concurrency + 1
        adapter = PageAdapter(HTTPAdapter(pool_maxsize=pool_size), pool_size)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self._environment_settings: dict[str, dict[str, Any]] = {}
        # Per URL: the auth and the GET request prepared with it, without parameters.
        self._get_templates: dict[str, tuple[AuthBase | None, requests.PreparedRequest]] = {}
        self._templates_lock = threading.Lock()
        self._held: dict[tuple[str, ...], tuple[str, requests.Response]] = {}  # key: url, page
        self._prepared: dict[str, requests.Response] = {}  # held pages dlt prepared, by URL
        self._held_lock = threading.Lock()
        self._closed = threading.Event()
        self._sending = threading.local()

    def hold(self, url: str, params: Mapping[str, Any], response: requests.Response) -> None:
        """Answer the next request for the page `url` fetched (its path, and `params`: window,
        offset, limit) with `response`, already fetched."""
        with self._held_lock:
            self._held[page_key(url, params)] = (url, response)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        # dlt's client prepares a request for each page it walks. One for a held page is never
        # sent: it only needs the page's URL, not requests' full preparation (a fifth of a
        # millisecond, a tenth of what the page costs dlt's client).
        if isinstance(request.params, dict) and request.url:
            with self._held_lock:
                held = self._held.pop(page_key(request.url, request.params), None)
                if held is not None:
                    self._prepared[held[0]] = held[1]
            if held is not None:
                url, response = held
                prepared = response.request.copy()  # as it was sent: headers, key
                prepared.url = url  # the page's own, before any redirect
                return prepared
        return super().prepare_request(request)

    def prepare_get(
        self, url: str, params: Mapping[str, Any], auth: AuthBase | None
    ) -> requests.PreparedRequest:
        """`GET url` with `params`: the parameters and headers `prepare_request` gives it (the
        key's parameter first), from the request prepared once per URL. Preparing each page in
        full (its URL parsed and encoded twice, the second time for the key) costs a third of
        what fetching it does."""
        if self.cookies or "#" in url:  # a cookie the vendor set goes into each request
            return self.prepare_request(requests.Request("GET", url, params=params, auth=auth))
        with self._templates_lock:  # the first pages of a window are fetched at once
            held_auth, template = self._get_templates.get(url, (None, None))
            if template is None or held_auth is not auth:
                template = self.prepare_request(requests.Request("GET", url, auth=auth))
                template.headers.pop("Cookie", None)  # one set while it was prepared
                self._get_templates[url] = (auth, template)
        request = template.copy()
        template_url = template.url or url
        separator = "&" if urlsplit(template_url).query else "?"
        request.url = f"{template_url}{separator}{urlencode(params)}"
        return request

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = request.url or ""
        origin = getattr(self._sending, "url", None)
        if origin is not None:
            # requests follows a redirect by calling send() again, from inside the send below:
            # the hop is part of that request, under its slot and its retries. The key is in
            # the URL, so it goes to the vendor's own host only, never over plain HTTP if the
            # request was HTTPS.
            if not redirect_stays_with_vendor(origin, url):
                raise VendorRequestRejected(
                    f"{describe_request(url)}: the vendor redirected to another host or to "
                    "plain HTTP; not followed, so that the key goes nowhere else"
                )
            return super().send(request, **kwargs)
        with self._held_lock:
            response = self._prepared.pop(url, None)  # the common case: no URL to parse
            if response is None and (held := self._held.pop(page_key(url), None)):
                response = held[1]
        if response is not None:
            return response
        if kwargs.get("timeout") is None:  # requests' own get() passes timeout=None
            kwargs["timeout"] = self.policy.timeout
        return self.send_with_retries(request, **kwargs)

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

    def _environment(self, url: str) -> dict[str, Any]:
        """The proxies and certificate bundle requests' own `get` uses for `url`, from the
        environment (HTTPS_PROXY, REQUESTS_CA_BUNDLE...) and the session: `send` alone takes
        the session's."""
        settings = self.merge_environment_settings(url, {}, None, None, None)
        return {"proxies": settings["proxies"], "verify": settings["verify"]}

    def close(self) -> None:
        self._closed.set()
        self.limit.stop()
        super().close()

    def send_with_retries(
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        """Send `request` under the session's concurrency limit, retrying as the policy says;
        the response's `.json()` is the vendor's exact JSON, parsed once."""
        kwargs.setdefault("timeout", self.policy.timeout)
        # Where the request was, for a message: only on failure (a twentieth of a page's CPU).
        def where() -> str:
            return describe_request(request.url or "")

        retry_number = 0
        while True:
            retry_number += 1
            try:
                if "proxies" not in kwargs:  # else requests reads them for every request
                    for name, value in self._environment(request.url or "").items():
                        kwargs.setdefault(name, value)
                with self.limit:
                    if self._closed.is_set():
                        raise VendorAPIError(f"{where()}: not sent, the session is closed")
                    self._sending.url = request.url or ""
                    try:
                        response = super().send(request, **kwargs)
                    finally:
                        self._sending.url = None
            except requests.HTTPError as exc:
                # dlt's raise-for-status response hook fires inside send(); take its response.
                response = exc.response
            except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError,
                    ContentDecodingError) as exc:
                # The connection closed before the whole body arrived, or its compression is
                # garbled: as transient as a truncated body.
                response = None
                failure, wait = type(exc).__name__, self.policy.backoff(retry_number)
            except TooManyRedirects:
                raise VendorRequestRejected(
                    f"{where()}: the vendor's redirects went round in a loop; not retried"
                ) from None
            except (requests.RequestException, ValueError) as exc:
                # requests' message holds the URL and its key: only the kind is told.
                raise VendorRequestRejected(
                    f"{where()}: the request could not be sent ({type(exc).__name__}); check "
                    "that the vendor's base URL is an http(s) URL; not retried"
                ) from None
            if response is not None:
                status = response.status_code
                if status < 400 and _parse_json_once(response, self._key_in_records):
                    self.limit.succeeded()
                    return response
                if status < 400:
                    # A truncated or garbled body is as transient as a 5xx, and retried the same.
                    failure = f"HTTP {status} with a body that is not valid JSON"
                else:
                    failure = f"HTTP {status} ({self._safe_detail(response)})"
                if status >= 400 and status not in RETRY_STATUSES:
                    raise VendorRequestRejected(
                        f"{where()}: the vendor rejected the request with {failure}; not retried"
                    ) from None
                retry_after = retry_after_seconds(response)
                wait = self.policy.backoff(retry_number) if retry_after is None else retry_after
                if retry_after is not None and wait > self.policy.max_retry_after:
                    raise VendorRateLimited(
                        f"{where()}: the vendor asked to wait {wait:.0f} s, more than the "
                        f"{self.policy.max_retry_after:.0f} s ceiling; giving up ({failure})"
                    ) from None
                if status == 429:
                    # The vendor's limit is on the key, not on this request: every request of
                    # the session waits, and fewer run at once afterwards.
                    self.limit.rate_limited(wait)
            if retry_number > self.policy.max_retries:
                raise VendorAPIError(
                    f"{where()}: still failing after {self.policy.max_retries} retries: {failure}"
                ) from None
            logger.warning(
                "%s: %s; retry %d of %d in %.2f s",
                where(), failure, retry_number, self.policy.max_retries, wait,
            )
            self._closed.wait(wait)

    def _safe_detail(self, response: requests.Response) -> str:
        # Scrub before shortening: a cut through the key would hide it from the scrubber.
        return scrub(_error_detail(response), {self.api_key} if self.api_key else set())[:200]
