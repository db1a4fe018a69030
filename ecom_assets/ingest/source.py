"""The vendor API as a dlt REST API source, free of Dagster and runnable on its own.

It is the integration document's configuration (`api_key` in the query, records under `data`,
offset pagination by 100, primary key `id`, write disposition `merge`) with what a trustworthy
load adds: the contract's column types, a retrying key-scrubbing session, a paginator that
reconciles every window with the vendor's `total`, and quarantine of defective records.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
from dlt.sources import DltSource
from dlt.sources.rest_api import rest_api_source

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.ingest.http import VendorSession
from ecom_assets.ingest.pagination import PAGE_SIZE, ReconcilingOffsetPaginator
from ecom_assets.ingest.quarantine import add_quarantine
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.window import Window

logger = logging.getLogger(__name__)

SOURCE_NAME = "ecom"
DATASET_NAME = "ecom"
PIPELINE_NAME = "ecom"
DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
DEFAULT_PAGE_CONCURRENCY = 8


def _resource_config(
    contract: ResourceContract, window: Window | None, session: VendorSession, report: SyncReport
) -> dict[str, Any]:
    # Quarantine is added to the built resource by `add_quarantine`.
    return {
        "name": contract.name,
        "columns": contract.dlt_columns(),
        "endpoint": {
            "path": contract.path,
            "data_selector": "data",
            "paginator": ReconcilingOffsetPaginator(
                report[contract.name], limit=PAGE_SIZE, on_restart=session.discard_prefetched
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
) -> DltSource:
    """The REST API source for `resources`, restricted to `window` (None: everything).

    Every request goes through `session` (its key, retry policy and page concurrency); close
    it after the run. Pass a `SyncReport` to learn what each resource received.
    """
    report = report if report is not None else SyncReport()
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
            "write_disposition": "merge",
            # Unknown nested vendor fields and `tags` stay JSON columns, not child tables.
            "max_table_nesting": 0,
        },
        "resources": [
            _resource_config(CONTRACTS[name], window, session, report) for name in resources
        ],
    }
    source = rest_api_source(config, name=SOURCE_NAME)
    for name in resources:
        add_quarantine(source.resources[name], CONTRACTS[name], window, report[name])
    return source


def ecom_pipeline(duckdb_path: str | Path, working_dir: str = "default") -> dlt.Pipeline:
    """A DuckDB pipeline whose dlt working directory lives beside the database file, in
    `dlt_pipelines/<working_dir>`."""
    duckdb_path = Path(duckdb_path).resolve()
    if duckdb_path.stem == DATASET_NAME:
        # DuckDB names the catalog after the file: a catalog `ecom` beside the schema `ecom`
        # makes every `ecom.<table>` reference ambiguous, and DuckDB refuses them all.
        raise ValueError(
            f"the DuckDB file must not be named {duckdb_path.name} (its catalog would clash "
            f"with the dataset schema `{DATASET_NAME}`); use e.g. {DEFAULT_DUCKDB_PATH}"
        )
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    # Rows arrive as Arrow tables; keep dlt's load id on them, as on any other dlt table.
    dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(duckdb_path.parent / "dlt_pipelines" / working_dir),
        # A full refresh (write disposition `replace`) loads into a staging dataset and swaps
        # the data in one transaction: readers see the old table until then, and a failed
        # refresh leaves it intact.
        destination=dlt.destinations.duckdb(
            str(duckdb_path), replace_strategy="insert-from-staging"
        ),
        dataset_name=DATASET_NAME,
    )


@contextmanager
def writer_pipeline(duckdb_path: str | Path, working_dir: str) -> Iterator[dlt.Pipeline]:
    """`ecom_pipeline` held under an exclusive lock of the database file, with a working
    directory of its own that is removed afterwards.

    DuckDB takes one writer process: a second writer waits here instead of failing on DuckDB's
    lock. With its own working directory a run never trips over another's files, nor finishes
    a crashed run's pending load package (the state dlt needs comes from the destination).
    """
    path = Path(duckdb_path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("Waiting for the run that is writing %s", path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        pipeline = ecom_pipeline(path, working_dir=working_dir)
        try:
            yield pipeline
        finally:
            shutil.rmtree(Path(pipeline.pipelines_dir), ignore_errors=True)
