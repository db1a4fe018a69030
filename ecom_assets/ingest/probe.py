"""Ask the vendor what changed since a moment: its records' ids and `updated_at` from then on.

A change moves a record's `updated_at` forward to about when it was filed, up to the look-back
for late arrivals behind it. So every change filed since a sensor's last tick lies at or after
that tick less the look-back, and the list of (id, `updated_at`) from there differs from what
the tick saw: a new record, a moved one, one gone. Comparing counts or the latest change does
not tell a late update that stays behind the latest change, nor a deletion and a late arrival
that keep the count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from dlt.sources.helpers.rest_client.client import join_url

from ecom_assets.contract import ResourceContract, parse_timestamp
from ecom_assets.ingest.errors import VendorResponseError
from ecom_assets.ingest.pages import (
    MAX_PAGE_SIZE,
    page_fields_named_twice,
    page_records,
    page_total,
    record_id,
)
from ecom_assets.ingest.vendor_session import VendorSession
from ecom_assets.ingest.window import rfc3339

# The contract's largest page: a quiet shop's listing is one request.
PROBE_PAGE_SIZE = MAX_PAGE_SIZE
# A shop with more changes than this in a tick's span changes in every tick: its listing stops
# at the first page, and the tick refreshes without comparing (a few requests at most).
MAX_LISTED = 5 * PROBE_PAGE_SIZE


@dataclass(frozen=True)
class Listing:
    """The records updated in [since, now), as (`updated_at`, id), and what was left out as
    defective. `complete` is False when the vendor counted more than `MAX_LISTED`: `entries`
    then holds its first page only."""

    entries: tuple[tuple[datetime, str], ...]
    defective: tuple[str, ...] = ()
    complete: bool = True

    @property
    def first(self) -> datetime | None:
        return self.entries[0][0] if self.entries else None

    @property
    def last(self) -> datetime | None:
        return self.entries[-1][0] if self.entries else None

    def fingerprint(self, since: datetime | None = None) -> str:
        """A digest of the entries from `since` on (all by default): equal digests, equal
        lists."""
        digest = hashlib.blake2b(digest_size=16)
        for moment, identity in self.entries:
            if since is None or moment >= since:
                digest.update(f"{rfc3339(moment)}\0{identity}\n".encode(errors="surrogatepass"))
        return digest.hexdigest()


def list_changes(
    base_url: str, session: VendorSession, contract: ResourceContract, since: datetime,
    now: datetime,
) -> Listing:
    """The records with `updated_at` in [since, now): one stamped later, by a vendor's clock
    ahead of ours or in the far future, is not a change yet. One whose `updated_at` is missing,
    malformed or outside the span all the same is left out and named. Pages of
    `PROBE_PAGE_SIZE` until `total`, unless it is over `MAX_LISTED`."""
    entries: set[tuple[datetime, str]] = set()  # a record paged twice while records move
    defective: list[str] = []
    offset, total = 0, 1
    while offset < total:
        body = session.get(
            join_url(base_url, contract.path),
            params={"updated_since": rfc3339(since), "updated_before": rfc3339(now),
                    "offset": offset, "limit": PROBE_PAGE_SIZE, "api_key": session.api_key},
        ).json()
        total, page = page_total(body), page_records(body)
        if twice := page_fields_named_twice(body):
            raise VendorResponseError(f"{contract.name} offset {offset}: a response naming "
                                      f"{' and '.join(twice)} twice, with different values")
        if total is None or page is None:
            raise VendorResponseError(
                f"{contract.name} offset {offset}: a response without `total` or `data`"
            )
        if not page and offset:
            # An outage's `{"data": [], "total": 0}` after the first page: a list cut short
            # would differ from the last tick's, and launch a run for nothing.
            raise VendorResponseError(
                f"{contract.name} offset {offset}: an empty page after the first; asked again "
                "next tick"
            )
        if not page:
            break
        for record in page:
            identity = record_id(record, contract.primary_key)
            value = record.get(contract.cursor) if isinstance(record, dict) else None
            try:
                moment = parse_timestamp(value)
            except (ValueError, OverflowError) as exc:
                problem = str(exc)
            else:
                if not since <= moment < now:
                    problem = f"{rfc3339(moment)} is outside [{rfc3339(since)}, now)"
                elif identity is None:
                    problem = "valid, but the record has no id"
                else:
                    entries.add((moment, identity))
                    continue
            defective.append(
                f"{contract.name} record {identity or '(no id)'}: {contract.cursor} {problem}"
            )
        offset += len(page)
        if total > MAX_LISTED:
            return Listing(tuple(sorted(entries)), tuple(defective), complete=False)
    return Listing(tuple(sorted(entries)), tuple(defective))
