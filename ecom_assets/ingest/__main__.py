"""Run the dlt pipeline without Dagster: `python -m ecom_assets.ingest [--since D --before D]`.

Configuration comes from dlt's providers (environment variables or `.dlt/*.toml`):
`ECOM_API_BASE_URL`, `ECOM_API_KEY` (a secret), `ECOM_DESTINATION` (default duckdb) and
`ECOM_DUCKDB_PATH`; other destinations' credentials the way dlt reads them.
"""

import argparse
import uuid
from datetime import UTC, date, datetime, time
from pathlib import Path

import dlt
from dlt.pipeline.exceptions import PipelineStepFailed

from ecom_assets.contract import CONTRACTS
from ecom_assets.ingest import (
    DEFAULT_DUCKDB_PATH,
    SyncReport,
    VendorSession,
    Warehouse,
    Window,
    ecom_source,
    vendor_error_behind,
)
from ecom_assets.ingest.source import DEFAULT_PAGE_CONCURRENCY
from ecom_assets.ingest.warehouse import DEFAULT_DESTINATION
from ecom_assets.ingest.window import EPOCH


def _utc_day(text: str) -> datetime:
    """Midnight UTC of a day given as YYYY-MM-DD (a time or offset would be ambiguous)."""
    try:
        return datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ecom_assets.ingest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--since", type=_utc_day, help="first UTC day, inclusive (YYYY-MM-DD)")
    parser.add_argument("--before", type=_utc_day, help="UTC day to stop before (YYYY-MM-DD)")
    parser.add_argument("--resource", action="append", choices=sorted(CONTRACTS),
                        help="a resource to load; repeat for several (default: all)")
    args = parser.parse_args()
    if (args.since is None) != (args.before is None):
        parser.error("--since and --before go together (neither: everything until now)")
    # As the assets do, ask only for what changed before the run started: a record updated
    # while its window is paged then leaves the window, and the vendor's `total` shows it.
    started = datetime.now(UTC)
    since, before = args.since or EPOCH, min(args.before or started, started)
    if before <= since:
        parser.error("empty window: --since must be before --before, and in the past")
    window = Window(since, before)
    report = SyncReport()
    warehouse = Warehouse(
        destination=dlt.config.get("ecom_destination") or DEFAULT_DESTINATION,
        duckdb_path=Path(dlt.config.get("ecom_duckdb_path") or DEFAULT_DUCKDB_PATH),
    )
    api_key = dlt.secrets["ecom_api_key"]
    with (
        warehouse.writer(working_dir=f"cli-{uuid.uuid4().hex}") as pipeline,
        VendorSession(api_key, concurrency=DEFAULT_PAGE_CONCURRENCY) as session,
    ):
        source = ecom_source(
            dlt.config["ecom_api_base_url"],
            session,
            window=window,
            resources=args.resource or tuple(CONTRACTS),
            report=report,
        )
        try:
            pipeline.run(source, loader_file_format=warehouse.loader_file_format)
        except PipelineStepFailed as exc:
            cause = vendor_error_behind(exc)
            if cause is None:
                raise
            # What went wrong at the vendor, not dlt's traceback around it (key-free).
            raise SystemExit(f"{exc.step} failed: {cause}") from None
    for name, received in report.items():
        print(f"{name}: vendor total {received.vendor_total}, received {received.received}, "
              f"loaded {received.valid}, quarantined {received.quarantined}")


if __name__ == "__main__":
    main()
