"""The vendor API as a dlt REST API source, free of Dagster and runnable on its own.

It is the integration document's configuration (`api_key` in the query, records under `data`,
offset pagination by 100, primary key `id`, write disposition `merge`) with what a trustworthy
load adds: the contract's column types, a retrying key-scrubbing session, a paginator that
reconciles every window with the vendor's `total`, and quarantine of defective records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dlt.sources import DltSource
from dlt.sources.rest_api import rest_api_source
from jsonpath_ng import Fields

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.ingest.http import VendorSession
from ecom_assets.ingest.pagination import MAX_PASSES, PAGE_SIZE, ReconcilingOffsetPaginator
from ecom_assets.ingest.quarantine import add_quarantine
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.window import Window

SOURCE_NAME = "ecom"
DEFAULT_PAGE_CONCURRENCY = 8


def _resource_config(
    contract: ResourceContract,
    window: Window | None,
    session: VendorSession,
    report: SyncReport,
    max_passes: int,
) -> dict[str, Any]:
    # Quarantine is added to the built resource by `add_quarantine`.
    return {
        "name": contract.name,
        "columns": contract.dlt_columns(),
        "endpoint": {
            "path": contract.path,
            # A JSONPath object, not the string "data": dlt parses a string selector again
            # for every page, which cost more CPU than the rest of handling a page.
            "data_selector": Fields("data"),
            "paginator": ReconcilingOffsetPaginator(
                report[contract.name],
                limit=PAGE_SIZE,
                on_restart=session.discard_prefetched,
                max_passes=max_passes,
            ),
            # The vendor filters the window server-side (since inclusive, before exclusive),
            # so no client-side cursor tracking is needed: it would only cost extract time.
            "params": window.query_params() if window else {},
        },
    }


def ecom_source(
    base_url: str,
    session: VendorSession,
    *,
    window: Window | None = None,
    resources: Sequence[str] = tuple(CONTRACTS),
    report: SyncReport | None = None,
    replace: bool = False,
) -> DltSource:
    """The REST API source for `resources`, restricted to `window` (None: everything).

    End the window in the past, as the assets and the CLI do (when the run starts): a record
    updated while its window is paged then leaves it, and the vendor's `total` shows that.
    In a window without an end it stays, at another offset, and only ids tell it apart.

    Every request goes through `session` (its key, retry policy and page concurrency); close
    it after the run. Pass a `SyncReport` to learn what each resource received.

    Tables are merged on `id`. A window whose records move while it is paged is paged again
    (up to `MAX_PASSES` passes) and every pass is loaded: the merge keeps one row per record.
    With `replace` (a full refresh) each table is replaced instead; a replacing load does not
    deduplicate, so each window gets one pass, and a window that moves fails the load before
    anything is replaced.
    """
    report = report if report is not None else SyncReport()
    max_passes = 1 if replace else MAX_PASSES
    config: dict[str, Any] = {
        "client": {
            "base_url": base_url,
            "auth": {
                "type": "api_key",
                "name": "api_key",
                "api_key": session.api_key,
                "location": "query",
            },
            "session": session,
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "replace" if replace else "merge",
            # Unknown nested vendor fields and `tags` stay JSON columns, not child tables.
            "max_table_nesting": 0,
        },
        "resources": [
            _resource_config(CONTRACTS[name], window, session, report, max_passes)
            for name in resources
        ],
    }
    source = rest_api_source(config, name=SOURCE_NAME)
    for name in resources:
        add_quarantine(source.resources[name], CONTRACTS[name], window, report[name])
    return source
