"""Ask the vendor cheaply what changed since a moment: two requests of one record each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ecom_assets.contract import CONTRACTS, parse_timestamp
from ecom_assets.ingest.http import VendorResponseError, VendorSession
from ecom_assets.ingest.page import page_records, page_total
from ecom_assets.ingest.window import rfc3339


@dataclass(frozen=True)
class Changes:
    """Records updated since the probe's moment: how many, and their `updated_at` span."""

    total: int
    first_updated_at: datetime | None = None
    last_updated_at: datetime | None = None


def probe_changes(
    base_url: str, session: VendorSession, resource: str, since: datetime
) -> Changes:
    """`updated_since=<since>` with `limit=1`: the first record and `total`; then the record at
    offset `total - 1`, the latest (records come in ascending `updated_at` order)."""

    def record_at(offset: int) -> tuple[int, datetime | None]:
        response = session.get(
            base_url.rstrip("/") + CONTRACTS[resource].path,
            params={
                "updated_since": rfc3339(since),
                "offset": offset,
                "limit": 1,
                "api_key": session.api_key,
            },
        )
        body = response.json()
        total, page = page_total(body), page_records(body)
        if total is None or page is None:
            raise VendorResponseError(f"{resource} offset {offset}: no `total` or `data`")
        updated_at = page[0].get("updated_at") if page else None
        return total, parse_timestamp(updated_at) if updated_at else None

    total, first = record_at(0)
    if total == 0:
        return Changes(0)
    _, last = record_at(total - 1) if total > 1 else (total, first)
    return Changes(total, first, last)
