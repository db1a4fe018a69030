"""Keeping secrets out of text: messages, and the log records of libraries that log URLs."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

from ecom_assets.ingest.vendor_json import RepeatedKeys

_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"'#]+", re.IGNORECASE)


def scrub(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    """`text` without any of `secrets`, however a URL spells them (`spellings`), and without
    the value of any `api_key=` parameter."""
    pattern = _spellings(frozenset(secrets))
    if pattern:
        text = pattern.sub("***", text)
    return _KEY_IN_QUERY.sub(r"\1***", text)


def spellings(secret: str) -> set[str]:
    """`secret` as it is, percent-encoded (either case of hex digits, `+` or `%20` for a space)
    and as a form decodes it (`+` read as a space): a vendor may echo the request's URL, a key
    with `+`, `/` or `=` included, in any of them."""
    encoded = {quote(secret), quote(secret, safe=""), quote_plus(secret)}
    lower_hex = {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), e) for e in encoded}
    return {secret, unquote_plus(secret), *encoded, *lower_hex}


@lru_cache(maxsize=16)
def _spellings(secrets: frozenset[str]) -> re.Pattern[str] | None:
    every = {spelling for secret in secrets if secret for spelling in spellings(secret)}
    return re.compile(_alternatives(every)) if every else None


def _alternatives(texts: Iterable[str]) -> str:
    """A pattern matching any of `texts`, the longest first (a spelling may begin another)."""
    return "|".join(map(re.escape, sorted(texts, key=len, reverse=True)))


# A key shorter than this is not looked for in records: it would match ordinary text there.
MIN_KEY_LENGTH_IN_RECORDS = 8


class KeyInRecords:
    """The API key in a page of records (a field echoing the request's URL), however JSON and
    a URL spell it: looked for in the raw body (byte searches; a pattern when the body holds
    JSON escapes), then replaced in the parsed strings where it stands as a token of its own,
    so that no record stores it and no other text changes."""

    def __init__(self, key: str) -> None:
        self.enabled = len(key) >= MIN_KEY_LENGTH_IN_RECORDS
        forms = spellings(key)
        self._plain = [form.encode() for form in forms]
        self._escaped = re.compile(b"|".join(_json_escaped(form) for form in forms))
        # A token: no letter or digit around it, but for a percent escape before it (`%3D`,
        # an `=` in a URL that is itself a parameter's value).
        self._token = re.compile(
            f"(?:(?<![A-Za-z0-9])|(?<=%[0-9A-Fa-f]{{2}}))(?:{_alternatives(forms)})"
            "(?![A-Za-z0-9])"
        )

    def in_body(self, content: bytes) -> bool:
        if not self.enabled:
            return False
        if b"\\" not in content:
            return any(form in content for form in self._plain)
        return self._escaped.search(content) is not None

    def scrub(self, value: Any) -> int:
        """Replace the key in the strings of `value` (parsed JSON, changed in place), field
        names included; how many strings held it."""
        if not self.enabled:
            return 0
        if isinstance(value, RepeatedKeys):  # every name and value it holds, then the dict's
            changed = self.scrub(value.pairs)
            value.clear()
            value.update(value.pairs)
            return changed
        changed = 0
        if isinstance(value, dict):
            # A field named after the key (an echoed URL as a name) is renamed.
            for name in [n for n in value if isinstance(n, str) and self._token.search(n)]:
                value[self._token.sub("***", name)] = value.pop(name)
                changed += 1
            items: Iterable[tuple[Any, Any]] = list(value.items())
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            return 0
        for place, item in items:
            if isinstance(item, str):
                scrubbed = self._token.sub("***", item)
                if scrubbed != item:
                    value[place] = scrubbed
                    changed += 1
            else:
                changed += self.scrub(item)
        return changed


def _json_escaped(text: str) -> bytes:
    """A pattern of `text` in a JSON body, each character as itself or as JSON's escape of it
    (`\\u002B` or `\\u002b`; `\\/` for a slash, `\\"` for a quote, `\\\\` for a backslash)."""
    pattern = []
    for char in text:
        forms = [re.escape(char.encode())]
        if ord(char) < 0x10000:
            digits = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{ord(char):04x}")
            forms.append(b"\\\\u" + digits.encode())
        if char in '/"\\':  # `\/`, as PHP writes a slash; `\"` and `\\`, as JSON must
            forms.append(b"\\\\" + re.escape(char.encode()))
        pattern.append(b"(?:" + b"|".join(forms) + b")")
    return b"".join(pattern)


class SecretScrubbingFilter(logging.Filter):
    """Removes secrets from log records of the libraries that log request URLs (urllib3 logs
    every request line, query string and key included, at DEBUG) and from dlt's."""

    # A filter applies to records created on its own logger: the loggers that log URLs.
    LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "dlt")

    def __init__(self) -> None:
        super().__init__()
        # Replaced, never changed in place: another thread may be filtering with it.
        self.secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._installed = False

    def add(self, *secrets: str) -> None:
        """Scrub `secrets` from now on; installs the filter on first use."""
        with self._lock:
            self.secrets = self.secrets | {s for s in secrets if s}
            if not self._installed:
                for name in self.LOGGERS:
                    logging.getLogger(name).addFilter(self)
                self._installed = True

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message, self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True


SECRETS = SecretScrubbingFilter()
"""The process's one filter: every session adds its key; the code location and the dlt-only CLI
add the settings' secrets (the key and the warehouse's password)."""
