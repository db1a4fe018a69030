"""Ask the vendor cheaply what changed since a moment: two requests of one record each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dlt.sources.helpers.rest_client.client import join_url

from ecom_assets.contract import ResourceContract, parse_timestamp
from ecom_assets.ingest.errors import VendorResponseError
from ecom_assets.ingest.pages import page_records, page_total, record_id
from ecom_assets.ingest.vendor_session import VendorSession
from ecom_assets.ingest.window import CLOCK_SKEW, rfc3339

# Defective records skipped at either end before the probe gives up on that end.
MAX_SKIPPED = 3


@dataclass(frozen=True)
class Changes:
    """Records updated since the probe's moment: how many, the `updated_at` span of the valid
    ones, and what was skipped as defective."""

    total: int
    first_updated_at: datetime | None = None
    last_updated_at: datetime | None = None
    skipped: tuple[str, ...] = ()


def probe_changes(
    base_url: str, session: VendorSession, contract: ResourceContract, since: datetime,
    now: datetime,
) -> Changes:
    """`updated_since=<since>` with `limit=1`: the first record and `total`; then the record at
    offset `total - 1`, the latest (records come in ascending `updated_at` order). Records
    filed in the far future, which would sort last, are left out by `updated_before`; one whose
    `updated_at` is missing, malformed, before `since` or in the future all the same is skipped
    for the next one in, up to `MAX_SKIPPED` at each end."""
    skipped: list[str] = []

    def record_at(offset: int) -> tuple[int, Any]:
        return _record_at(base_url, session, contract, since, now, offset)

    def valid_time(record: Any, offset: int) -> datetime | None:
        value = record.get(contract.cursor) if isinstance(record, dict) else None
        try:
            moment = parse_timestamp(value)
        except (ValueError, OverflowError) as exc:
            problem = str(exc)
        else:
            if since <= moment <= now + CLOCK_SKEW:
                return moment
            problem = f"{rfc3339(moment)} is outside [{rfc3339(since)}, now]"
        skipped.append(
            f"{contract.name} record {record_id(record, contract.primary_key) or '(no id)'} at "
            f"offset {offset}: {contract.cursor} {problem}; skipped"
        )
        return None

    total, first_record = record_at(0)
    times: dict[int, datetime | None] = {}

    def time_at(offset: int) -> datetime | None:
        if offset not in times:
            record = first_record if offset == 0 else record_at(offset)[1]
            times[offset] = valid_time(record, offset) if record is not None else None
        return times[offset]

    ends = min(MAX_SKIPPED + 1, total)
    first = next((t for o in range(ends) if (t := time_at(o))), None)
    last = next((t for o in range(total - 1, total - 1 - ends, -1) if (t := time_at(o))), None)
    return Changes(total, first, last, tuple(skipped))


def count_since(
    base_url: str, session: VendorSession, contract: ResourceContract, since: datetime,
    now: datetime,
) -> int:
    """How many records the vendor has updated since `since`, as `probe_changes` counts them
    at `now`: one request of one record."""
    return _record_at(base_url, session, contract, since, now, 0)[0]


def _record_at(
    base_url: str, session: VendorSession, contract: ResourceContract, since: datetime,
    now: datetime, offset: int,
) -> tuple[int, Any]:
    """`total` of the records updated since `since` (and not after `now`, give or take the
    vendor's clock), and the record at `offset` (or None)."""
    body = session.get(
        join_url(base_url, contract.path),
        params={"updated_since": rfc3339(since), "updated_before": rfc3339(now + CLOCK_SKEW),
                "offset": offset, "limit": 1, "api_key": session.api_key},
    ).json()
    total, page = page_total(body), page_records(body)
    if total is None or page is None:
        raise VendorResponseError(
            f"{contract.name} offset {offset}: a response without `total` or `data`"
        )
    return total, page[0] if page else None
