"""Keeping secrets out of text: messages, and the log records of libraries that log URLs."""

from __future__ import annotations

import logging
import re
import threading

_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"'#]+", re.IGNORECASE)


def scrub(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    """`text` without any of `secrets` and without the value of any `api_key=` parameter."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _KEY_IN_QUERY.sub(r"\1***", text)


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
