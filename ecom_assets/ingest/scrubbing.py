"""Keeping secrets out of text: messages, and the log records of libraries that log URLs."""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote_plus

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
    if not every:
        return None
    return re.compile("|".join(map(re.escape, sorted(every, key=len, reverse=True))))


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
