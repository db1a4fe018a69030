"""Every setting of ecom_assets, read from the environment once and validated in one place.

No other module reads a setting from the environment (a test checks it): code takes a
`Settings` from `get_settings()`, and the two secrets reach runs through `dagster.EnvVar` (the
Dagster resources) or dlt's config providers (the dlt-only CLI). A bad value fails with a
message that names the variable, the value and the expected form; a secret's value is never
shown.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """A setting has a value the project cannot use. The message never holds a secret."""


class _ValueNotShown(ValueError):
    """A bad value that may hold a secret: its message does not quote it."""


def _http_url(text: str) -> str:
    form = "an http:// or https:// URL with a host, e.g. https://api.example.com"
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed IPv6 bracket
        raise ValueError(form) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(form)
    if "?" in text or "#" in text:
        # Resource paths are joined to it; a query or fragment would end up in the middle.
        raise ValueError(f"{form}, without a query or fragment")
    if parts.username is not None or parts.password is not None:
        # The key goes in ECOM_API_KEY, which no message shows; a URL is shown in messages.
        raise _ValueNotShown(f"{form}, without a user or password (the key: ECOM_API_KEY)")
    try:
        port = parts.port  # raises on one that is not a number from 0 to 65535
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{form}, its port (if any) a number from 1 to 65535")
    return text.rstrip("/")


def _day(text: str) -> date:
    form = "a day as YYYY-MM-DD, e.g. 2026-01-01"
    # `date.fromisoformat` also reads other ISO 8601 forms (20260101, 2026-W01-1).
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(form)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(form) from None


def _whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        # ASCII digits (`²` is a digit to isdigit, not to int), no more than the maximum has.
        digits = text.isascii() and text.isdigit() and len(text) <= len(str(maximum))
        if not digits or not minimum <= int(text) <= maximum:
            raise ValueError(f"a whole number from {minimum} to {maximum}")
        return int(text)

    return parse


def _number(form: str, maximum: float = math.inf, zero: bool = True) -> Callable[[str], float]:
    """A finite number from 0 (if `zero`, else above it) to `maximum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(form) from None
        if not (math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= maximum):
            raise ValueError(form)  # also nan and inf
        return value

    return parse


_seconds = _number("a number of seconds, 0 or more")
_share = _number("a share between 0 and 1, e.g. 0.5", maximum=1)
# A request given no time to answer cannot succeed.
_timeout_seconds = _number("a number of seconds, more than 0", zero=False)


def _destination(text: str) -> str:
    form = "one of dlt's destinations by its module name, e.g. duckdb or postgres"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", text):
        raise ValueError(form)
    # The warehouse's lock, comparison and checks go by that name: a name configured in
    # dlt's providers (`[destination.<name>]`) would hide that it is PostgreSQL, say.
    if text not in ("duckdb", "postgres"):
        from importlib.util import find_spec

        if find_spec(f"dlt.destinations.impl.{text}") is None:
            raise ValueError(form)
    return text


def _duckdb_path(text: str) -> Path:
    path = Path(text)
    if path.stem == "ecom":
        # DuckDB names the catalog after the file: a catalog `ecom` beside the dataset schema
        # `ecom` makes every `ecom.<table>` reference ambiguous, and DuckDB refuses them all.
        raise ValueError("a file not named ecom.duckdb (its catalog would clash with the schema)")
    return path


SECONDS_A_DAY, MINUTES_A_DAY = 24 * 3600, 24 * 60
# Each page in flight is a thread and a connection; vendors throttle far below this.
MAX_PAGE_CONCURRENCY = 64


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default (None: no default) and what it means."""

    variable: str
    default: str | None
    parse: Callable[[str], Any]
    description: str


SETTINGS: tuple[Setting, ...] = (
    Setting("ECOM_API_BASE_URL", None, _http_url,
            "The vendor API's base URL (http or https). Required for runs and the sensor."),
    Setting("ECOM_API_KEY", None, str,
            "The API key, a secret sent as the `api_key` query parameter; reaches runs through "
            "`dagster.EnvVar`. Required for runs and the sensor."),
    Setting("ECOM_DESTINATION", "duckdb", _destination,
            "The dlt destination: `duckdb` or `postgres` (the two tested)."),
    Setting("ECOM_DUCKDB_PATH", "data/warehouse.duckdb", _duckdb_path,
            "The DuckDB warehouse file."),
    Setting("ECOM_DLT_PIPELINES_DIR", "data/dlt_pipelines", Path,
            "dlt's working directories; each resource's last is kept (`dlt pipeline ... trace`)."),
    Setting("ECOM_PARTITIONS_START", "2026-01-01", _day, "The first daily partition (UTC)."),
    Setting("ECOM_SENSOR_INTERVAL_SECONDS", "60", _whole_number(1, SECONDS_A_DAY),
            "How often the sensor asks the vendor what changed."),
    Setting("ECOM_LATE_ARRIVAL_MINUTES", "10", _whole_number(0, MINUTES_A_DAY),
            "How late the vendor may file a record, plus 5 minutes for clocks: the sensor's "
            "look-back, the schedule's wait after midnight, the last part of a window read until "
            "two passes agree."),
    Setting("ECOM_PAGE_CONCURRENCY", "8", _whole_number(1, MAX_PAGE_CONCURRENCY),
            "Pages fetched at once (halved while the vendor answers 429)."),
    Setting("ECOM_REQUEST_TIMEOUT_SECONDS", "30", _timeout_seconds,
            "Timeout of one vendor request."),
    Setting("ECOM_MAX_RETRY_AFTER_SECONDS", "120", _seconds,
            "A 429 asking to wait longer than this fails the run at once."),
    Setting("ECOM_DUCKDB_LOCK_WAIT_SECONDS", "180", _seconds,
            "How long a run waits for another program holding the DuckDB file."),
    Setting("ECOM_FULL_REFRESH_MAX_REMOVED_SHARE", "0.5", _share,
            "Share of a table a full refresh may remove (more: `allow_removing_rows: true`)."),
)


@dataclass(frozen=True)
class Settings:
    api_base_url: str | None
    destination: str
    duckdb_path: Path
    dlt_pipelines_dir: Path
    partitions_start: date
    sensor_interval_seconds: int
    late_arrival_minutes: int
    page_concurrency: int
    request_timeout_seconds: float
    max_retry_after_seconds: float
    duckdb_lock_wait_seconds: float
    full_refresh_max_removed_share: float
    # Values no message may show: the API key and the warehouse password, as set.
    secrets: frozenset[str] = field(default=frozenset(), repr=False)


# Settings held by `Settings`; ECOM_API_KEY reaches runs through `dagster.EnvVar` instead.
_FIELDS = {f"ECOM_{f.name.upper()}": f.name for f in fields(Settings) if f.name != "secrets"}


def read_settings(environ: dict[str, str] | None = None) -> Settings:
    """Parse and validate every setting of `environ` (default: the process environment)."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        text = (environ.get(setting.variable) or "").strip() or setting.default
        if text is not None:
            try:
                parsed = setting.parse(text)
            except ValueError as exc:
                secret = setting.variable == "ECOM_API_KEY" or isinstance(exc, _ValueNotShown)
                shown = "(not shown: it may hold a secret)" if secret else repr(text)
                raise SettingsError(f"{setting.variable} must be {exc}; got {shown}") from None
        else:
            parsed = None
        if setting.variable in _FIELDS:
            values[_FIELDS[setting.variable]] = parsed
    secrets = {environ.get("ECOM_API_KEY", "").strip(), *_database_password(environ)}
    return Settings(**values, secrets=frozenset(s for s in secrets if s))


@cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return read_settings()


DATABASE_URL_VARIABLE = "DESTINATION__POSTGRES__CREDENTIALS"


def _database_password(environ: dict[str, str]) -> set[str]:
    """The warehouse password of dlt's credentials URL, as written and decoded.

    dlt splits a connection URL at the first `@`: a password holding an unescaped `@` would put
    its rest into the host name, which dlt's connection errors show. Such a URL is refused.
    """
    parts = urlsplit(environ.get(DATABASE_URL_VARIABLE) or "")
    if "@" in parts.netloc.rpartition("@")[0]:
        raise SettingsError(
            f"{DATABASE_URL_VARIABLE} must be a URL whose password writes `@` as `%40` "
            "(postgresql://user:p%40ss@host:5432/db); got one with an unescaped `@` "
            "(not shown: it holds a password)"
        )
    return {parts.password, unquote(parts.password)} if parts.password else set()


def api_key_for_cli() -> str:
    """The key for the dlt-only CLI, from dlt's providers (ECOM_API_KEY or .dlt/secrets.toml)."""
    import dlt

    key = dlt.secrets.get("ecom_api_key")
    if not key:
        raise SettingsError(
            "ECOM_API_KEY must be set (in the environment, .env, or .dlt/secrets.toml as "
            "ecom_api_key = \"...\"); it is not set"
        )
    return str(key)


# Each setting's default: what a component built without the settings (a test, the dlt source
# run on its own) uses.
DEFAULTS = read_settings({})
