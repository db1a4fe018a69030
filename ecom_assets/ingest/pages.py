"""What the vendor's list endpoints send: pages (`data`, `total`) of records with an `id`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecom_assets.ingest.vendor_json import RepeatedKeys, dump_vendor_json

# The contract's largest page (`limit` 1..1000).
MAX_PAGE_SIZE = 1000


def page_records(body: Any) -> list[Any] | None:
    """The page's records; None if `data` is missing or not a list."""
    records = body.get("data") if isinstance(body, dict) else None
    return records if isinstance(records, list) else None


def page_total(body: Any) -> int | None:
    """The window's `total`; None if it is missing or not a non-negative integer."""
    total = body.get("total") if isinstance(body, dict) else None
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        return None
    return total


def page_fields_named_twice(body: Any) -> list[str]:
    """`data` and `total`, where the page names them twice with different values."""
    repeated = body.repeated if isinstance(body, RepeatedKeys) else ()
    return [name for name in ("data", "total") if name in repeated]


def record_id(record: Any, primary_key: str = "id") -> str | None:
    value = record.get(primary_key) if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def record_identity(record: Any, primary_key: str = "id") -> str:
    """What tells records apart when a window is reconciled: the id, or, for a defective record
    without one, its whole content (the NUL prefix keeps it from ever equalling an id). An
    empty id is an id: two records with it are twins."""
    identity = record_id(record, primary_key)
    return identity if identity is not None else "\0" + dump_vendor_json(record)


@dataclass(frozen=True)
class DefectiveRecord:
    """A record the window's reconciliation found defective (the same id served with different
    contents): it goes to quarantine with `reason`, whatever its fields say."""

    record: Any
    reason: str
