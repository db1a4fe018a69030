"""The contract of one page of the vendor's list endpoints: records under `data` (a list) and
the window's `total` (a non-negative integer)."""

from __future__ import annotations

from typing import Any

import simplejson


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


def vendor_json(value: Any) -> str:
    """Vendor JSON written back canonically (keys sorted), as it came: its numbers, parsed as
    exact Decimals, as numbers (the standard library would have to write them as strings)."""
    return simplejson.dumps(value, ensure_ascii=False, sort_keys=True, use_decimal=True)
