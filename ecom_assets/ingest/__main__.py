"""Run the dlt pipeline without Dagster: `python -m ecom_assets.ingest [--since D --before D]`.

Settings come from the environment (see `ecom_assets/settings.py`), the key from dlt's providers
(`ECOM_API_KEY`, or `ecom_api_key` in `.dlt/secrets.toml`); other destinations' credentials the
way dlt reads them.
"""

import argparse
import logging
import uuid
from datetime import UTC, date, datetime, time, timedelta

from dlt.pipeline.exceptions import PipelineStepFailed

from ecom_assets.contract import CONTRACTS
from ecom_assets.ingest import (
    RetryPolicy,
    SyncReport,
    VendorSession,
    Warehouse,
    Window,
    vendor_error_behind,
)
from ecom_assets.ingest.scrubbing import SECRETS
from ecom_assets.ingest.window import EPOCH
from ecom_assets.settings import SettingsError, api_key_for_cli, get_settings


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
    # The reader's account of parts paged again and waits, as in a run's log.
    logging.basicConfig(format="%(levelname)s %(message)s")
    logging.getLogger("ecom_assets").setLevel(logging.INFO)
    if (args.since is None) != (args.before is None):
        parser.error("--since and --before go together (neither: everything until now)")
    try:
        settings = get_settings()
        api_key = api_key_for_cli()
    except SettingsError as exc:
        raise SystemExit(f"error: {exc}") from None
    if settings.api_base_url is None:
        raise SystemExit("error: ECOM_API_BASE_URL must be set; it is not set")
    SECRETS.add(*settings.secrets)
    contracts = [CONTRACTS[name] for name in args.resource or CONTRACTS]
    warehouse = Warehouse(
        settings.destination, settings.duckdb_path, settings.dlt_pipelines_dir,
        settings.duckdb_lock_wait_seconds,
    )
    report = SyncReport()
    policy = RetryPolicy(
        max_retry_after=settings.max_retry_after_seconds, timeout=settings.request_timeout_seconds
    )
    with (
        warehouse.writer(f"cli-{uuid.uuid4().hex}", [c.name for c in contracts]) as pipeline,
        VendorSession(api_key, policy, settings.page_concurrency) as session,
    ):
        # As the assets do, ask only for what changed before the writer lock was taken: a
        # record updated while its window is read then leaves it, which `total` shows.
        started = datetime.now(UTC)
        since, before = args.since or EPOCH, min(args.before or started, started)
        if before <= since:
            parser.error("empty window: --since must be before --before, and in the past")
        source = warehouse.source(
            pipeline, settings.api_base_url, session, Window.between(since, before),
            contracts=contracts, report=report,
            late_arrival=timedelta(minutes=settings.late_arrival_minutes),
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
        print(f"{name}: vendor total {received.vendor_total}, loaded {received.loaded}, "
              f"quarantined {received.defective}")


if __name__ == "__main__":
    main()
