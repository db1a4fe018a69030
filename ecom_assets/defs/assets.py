"""One software-defined asset per vendor resource, materialized by one dlt run.

Both assets live in one dagster-dlt multi-asset so a backfill of many partitions, or of both
resources, is a single dlt run (`BackfillPolicy.single_run()`): one extract, one load.
"""


from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    multi_asset,
)
from dagster_dlt import DagsterDltResource, build_dlt_asset_specs
from dlt import Pipeline
from dlt.pipeline.exceptions import PipelineStepFailed
from pydantic import Field

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.defs.checks import CheckRun, check_specs, evaluate_checks
from ecom_assets.defs.partitions import daily_partitions
from ecom_assets.defs.resources import VendorApiResource, WarehouseResource
from ecom_assets.defs.translator import EcomDltTranslator, asset_key
from ecom_assets.defs.warehouse import sync_metadata
from ecom_assets.ingest import (
    SyncReport,
    VendorSession,
    Window,
    ecom_source,
    vendor_error_behind,
)
from ecom_assets.ingest.window import EPOCH

# Runs that write the warehouse must not overlap: DuckDB allows one writer process, and two
# merges into one table through one staging dataset would corrupt each other on any database.
WAREHOUSE_WRITER_POOL = "ecom_warehouse_writer"

# Dagster's run tag that decides whether the daemon re-executes a run failed by an asset.
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"

translator = EcomDltTranslator()


class SyncConfig(Config):
    full_refresh: bool = Field(
        default=False,
        description=(
            "Reload everything the vendor has for the selected resources, ignoring the "
            "partition window, and replace each table atomically. Launch it over all partitions."
        ),
    )


def _not_to_be_retried(context: AssetExecutionContext) -> None:
    """Tell the daemon's run retries (dagster.yaml `run_retries`) to leave this run failed."""
    context.instance.add_run_tags(context.run_id, {RETRY_ON_FAILURE_TAG: "false"})


def _vendor_failure(exc: PipelineStepFailed, what: str) -> Failure:
    """A Dagster failure naming the vendor problem, not dlt's wrapper around it."""
    cause = vendor_error_behind(exc)
    if cause is None:
        return Failure(description=f"{what} failed in dlt step `{exc.step}`: {exc.exception}")
    return Failure(
        description=f"{what} failed: {cause}",
        # A rejected request (wrong key, bad request) fails the same way on every retry.
        allow_retries=cause.retryable,
    )


@multi_asset(
    name="ecom_vendor_sync",
    specs=build_dlt_asset_specs(
        # Only the source's shape is needed here: URL and key are resolved when a run starts.
        dlt_source=ecom_source("http://vendor.invalid", VendorSession(api_key="")),
        dlt_pipeline=None,
        dagster_dlt_translator=translator,
    ),
    check_specs=check_specs(),
    can_subset=True,
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool=WAREHOUSE_WRITER_POOL,
)
def ecom_vendor_sync(
    context: AssetExecutionContext,
    config: SyncConfig,
    vendor_api: VendorApiResource,
    warehouse: WarehouseResource,
    dlt: DagsterDltResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    contracts = [c for c in CONTRACTS.values() if asset_key(c) in context.selected_asset_keys]
    started = datetime.now(UTC)
    # Ask the vendor only for what changed before this run started: today's partition is still
    # open, and a record that changes during the run belongs to the next run, not to this
    # window's reconciliation.
    if config.full_refresh:
        scope, fetched = None, Window(EPOCH, started)
    else:
        partition_start, partition_end = context.partition_time_window
        scope = fetched = Window(partition_start, min(partition_end, started))
    what = f"sync of {', '.join(c.name for c in contracts)} for {scope or 'a full refresh'}"
    context.log.info(f"Starting the {what}")

    report = SyncReport()
    target = warehouse.warehouse
    # The dataset's only writer (see `Warehouse.writer`): the Dagster pool already queues
    # writers, the lock also covers runs the queue does not see, such as two CLI runs.
    with target.writer(context.run_id) as pipeline, vendor_api.session() as session:
        source = ecom_source(
            vendor_api.base_url,
            session,
            window=fetched,
            resources=[c.name for c in contracts],
            report=report,
            replace=config.full_refresh,
        )
        try:
            results = list(
                dlt.run(
                    context=context,
                    dlt_source=source,
                    dlt_pipeline=pipeline,
                    dagster_dlt_translator=translator,
                    loader_file_format=target.loader_file_format,
                )
            )
        except PipelineStepFailed as exc:
            failure = _vendor_failure(exc, what)
            if not failure.allow_retries:
                _not_to_be_retried(context)  # the vendor would reject it the same way
            raise failure from None
        yield from _report_load(
            context, pipeline, target.destination, contracts, scope, report, results
        )


def verify_nothing_lost(
    pipeline: Pipeline, contracts: Sequence[ResourceContract], report: SyncReport
) -> None:
    """Fail unless every received record was normalized into its table or its quarantine."""
    normalize_info = pipeline.last_trace.last_normalize_info
    row_counts = normalize_info.row_counts if normalize_info else {}
    for contract in contracts:
        received = report[contract.name]
        loaded = row_counts.get(contract.name, 0)
        quarantined = row_counts.get(contract.quarantine_table, 0)
        expected = received.fetched - received.quarantined_fetched
        if loaded != expected or quarantined != received.quarantined:
            raise Failure(
                description=(
                    f"{contract.name}: fetched {received.fetched} records from the vendor "
                    f"({expected} valid, {received.quarantined} defective) but dlt normalized "
                    f"{loaded} rows and {quarantined} quarantined rows"
                )
            )


def _report_load(
    context: AssetExecutionContext,
    pipeline: Pipeline,
    destination: str,
    contracts: list[ResourceContract],
    scope: Window | None,
    report: SyncReport,
    results: list[MaterializeResult],
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Materializations with the load's metadata, then each asset's checks."""
    load_info = pipeline.last_trace.last_load_info
    load_ids = load_info.loads_ids if load_info else []
    with pipeline.sql_client() as client:
        for result in results:
            contract = CONTRACTS[result.asset_key.path[-1]]
            received = report[contract.name]
            yield MaterializeResult(
                asset_key=result.asset_key,
                metadata={
                    **(result.metadata or {}),
                    **sync_metadata(client, destination, contract, scope, received),
                },
            )
            selected_checks = {
                check.name
                for check in context.selected_asset_check_keys
                if check.asset_key == result.asset_key
            }
            for check_result in evaluate_checks(
                CheckRun(client, destination, contract, scope, received, load_ids),
                selected_checks,
            ):
                if not check_result.passed and check_result.severity is AssetCheckSeverity.ERROR:
                    # Defective or missing vendor data: fetching again at once brings the same.
                    _not_to_be_retried(context)
                yield check_result
    # Last, so that what was loaded is still reported when the counts do not add up.
    verify_nothing_lost(pipeline, contracts, report)
