"""The vendor API as a dlt REST API source, free of Dagster and runnable on its own.

It is the integration document's configuration (`api_key` in the query, records under `data`,
offset pagination by 100, primary key `id`, write disposition `merge`) with what a trustworthy
load adds: the contract's column types, a retrying key-scrubbing session, a reader that pages
the window concurrently and reconciles every part of it with the vendor's `total` while the
vendor keeps changing, and quarantine of defective records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from dlt.sources import DltSource
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.helpers.rest_client.client import join_url
from dlt.sources.rest_api import rest_api_source
from jsonpath_ng import Fields

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.ingest.pagination import ReconciledPagesPaginator
from ecom_assets.ingest.quarantine import HeldNewer, add_quarantine
from ecom_assets.ingest.reader import PAGE_SIZE, ReleasedPage, WindowReader
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.vendor_session import VendorSession
from ecom_assets.ingest.window import Window
from ecom_assets.settings import DEFAULTS

SOURCE_NAME = "ecom"


def _reconciled_pages(
    base_url: str,
    contract: ResourceContract,
    window: Window,
    session: VendorSession,
    auth: APIKeyAuth,
    report: SyncReport,
    late_arrival: timedelta,
) -> ReconciledPagesPaginator:
    url = join_url(base_url, contract.path)

    def fetch(part: Window, offset: int, limit: int) -> tuple[str, requests.Response]:
        params = {**part.query_params(), "offset": offset, "limit": limit}
        request = session.prepare_get(url, params, auth)
        return request.url or url, session.send_with_retries(request)

    def open_pages() -> Iterator[ReleasedPage]:
        reader = WindowReader(
            contract.name,
            window,
            fetch,
            report[contract.name],
            concurrency=session.concurrency,
            late_arrival=late_arrival,
            now=datetime.now(UTC),
            page_size=PAGE_SIZE,
            primary_key=contract.primary_key,
            cursor=contract.cursor,
            outage_backoff=session.policy.backoff,
        )
        return reader.pages()

    return ReconciledPagesPaginator(open_pages, session)


def ecom_source(
    base_url: str,
    session: VendorSession,
    window: Window | Mapping[str, Window],
    *,
    contracts: Sequence[ResourceContract] = tuple(CONTRACTS.values()),
    report: SyncReport | None = None,
    quarantine_first_seen: Callable[[str], Mapping[str, datetime]] = lambda table: {},
    stored_columns: Callable[[str], Mapping[str, str | None]] = lambda table: {},
    held_newer: HeldNewer = lambda table, key, cursor, ids, stamps: None,
    late_arrival: timedelta = timedelta(minutes=DEFAULTS.late_arrival_minutes),
) -> DltSource:
    """The REST API source for `contracts`, restricted to `window` on `updated_at`: one for
    every resource, or each resource's own by name.

    End the window in the past, as the assets and the CLI do (when the run starts): a record
    updated while the window is read then leaves it, which the vendor's `total` shows. Every
    request goes through `session` (its key, retry policy and concurrency); close it after the
    run. Pass a `SyncReport` to learn what each resource received, how to read the first-seen
    times of a quarantine table's rows (`Warehouse.quarantine_first_seen`), asked for when a
    resource first quarantines a record, how to read a table's columns with the vendor field
    each holds beyond the contract's (`Warehouse.stored_columns`), asked for when a resource
    first meets a field the contract does not know, and which of a batch's ids a table holds
    in a later version (`Warehouse.held_newer`), asked for each batch of records.

    Tables are merged on `id`: what the reader releases is what the vendor listed in each part
    of the window at one instant, and a record listed twice (it moved into a later part while
    the window was read) keeps its latest version.
    """
    report = report if report is not None else SyncReport()
    windows = window if isinstance(window, Mapping) else {c.name: window for c in contracts}
    auth = APIKeyAuth(name="api_key", api_key=session.api_key, location="query")
    now = datetime.now(UTC)
    config: dict[str, Any] = {
        "client": {"base_url": base_url, "auth": auth, "session": session},
        "resource_defaults": {
            "write_disposition": "merge",
            # Unknown nested vendor fields and `tags` stay JSON columns, not child tables.
            "max_table_nesting": 0,
        },
        "resources": [
            {
                "name": contract.name,
                "primary_key": contract.primary_key,
                "columns": contract.dlt_columns(),
                "endpoint": {
                    "path": contract.path,
                    # A JSONPath object, not the string "data": dlt parses a string selector
                    # again for every page.
                    "data_selector": Fields("data"),
                    "paginator": _reconciled_pages(
                        base_url, contract, windows[contract.name], session, auth, report,
                        late_arrival,
                    ),
                },
            }
            for contract in contracts
        ],
    }
    source = rest_api_source(config, name=SOURCE_NAME)
    for contract in contracts:
        add_quarantine(
            source.resources[contract.name],
            contract,
            windows[contract.name],
            report[contract.name],
            quarantine_first_seen,
            now,
            stored_columns,
            held_newer,
            late_arrival,
        )
    return source
