"""One software-defined asset per vendor resource, materialized by one dlt run.

The assets of all resources live in one multi-asset so that a backfill of many partitions, or of
several resources, is a single dlt run (`BackfillPolicy.single_run()`): one extract, one load.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetExecutionContext,
    AssetRecordsFilter,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    multi_asset,
)
from dagster_dlt import build_dlt_asset_specs
from dlt import Pipeline
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed
from pydantic import Field

from ecom_assets.contract import ResourceContract
from ecom_assets.defs.checks import (
    STAGED_CHECKS,
    CheckRun,
    check_specs,
    evaluate_checks,
    reconciled_with_vendor,
)
from ecom_assets.defs.resources import VendorApiResource, WarehouseResource
from ecom_assets.defs.translator import EcomDltTranslator, asset_key, column_schema
from ecom_assets.ingest import (
    ResourceReport,
    SyncReport,
    Warehouse,
    Window,
    ecom_source,
    vendor_error_behind,
)
from ecom_assets.ingest.full_refresh import StagedRefresh
from ecom_assets.ingest.scrubbing import SECRETS, scrub
from ecom_assets.ingest.vendor_session import VendorSession
from ecom_assets.ingest.warehouse import WarehouseBusyError, busy_holder
from ecom_assets.ingest.window import EPOCH, MILLISECOND, look_back

# Runs that write the warehouse must not overlap: DuckDB allows one writer process, and two
# merges into one table through one staging dataset would corrupt each other on any database.
WAREHOUSE_WRITER_POOL = "ecom_warehouse_writer"

# Dagster's run tag that decides whether the daemon re-executes a run failed by an asset.
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"


class SyncConfig(Config):
    full_refresh: bool = Field(
        default=False,
        description=(
            "Reload everything the vendor has for the selected resources, ignoring the "
            "partition window, validate it, and replace each table atomically. Launch it over "
            "all partitions."
        ),
    )
    changes_only: bool = Field(
        default=False,
        description=(
            "Read only what changed since the partition was last reconciled with the vendor, "
            "as the change sensor's refreshes do; a partition never reconciled is read whole."
        ),
    )
    allow_removing_rows: bool = Field(
        default=False,
        description=(
            "Let a full refresh remove more of a table's rows than "
            "ECOM_FULL_REFRESH_MAX_REMOVED_SHARE allows (the vendor really deleted them)."
        ),
    )


def build_sync_assets(
    contracts: Sequence[ResourceContract], partitions_def: PartitionsDefinition, destination: str
) -> AssetsDefinition:
    """The multi-asset of `contracts`: one asset per resource, one dlt run per Dagster run."""
    translator = EcomDltTranslator({c.name: c for c in contracts}, destination)
    # Only the source's shape is needed here: URL, key and window are resolved in a run.
    shape = ecom_source(
        "http://vendor.invalid", VendorSession(api_key=""), Window(EPOCH, EPOCH + MILLISECOND),
        contracts=contracts,
    )

    specs = [
        # dagster-dlt's own entries (source, pipeline, translator objects) serve its
        # DagsterDltResource, which runs are not made with here; the UI shows them unreadable.
        spec.replace_attributes(metadata={
            key: value for key, value in spec.metadata.items()
            if not key.startswith("dagster_dlt/")
        })
        for spec in build_dlt_asset_specs(shape, None, translator)  # type: ignore[arg-type]
    ]

    @multi_asset(
        name="ecom_vendor_sync",
        specs=specs,
        check_specs=check_specs(contracts, partitions_def),
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        pool=WAREHOUSE_WRITER_POOL,
    )
    def ecom_vendor_sync(
        context: AssetExecutionContext,
        config: SyncConfig,
        vendor_api: VendorApiResource,
        warehouse: WarehouseResource,
    ) -> Iterator[MaterializeResult | AssetCheckResult | AssetCheckEvaluation]:
        selected = [c for c in contracts if asset_key(c) in context.selected_asset_keys]
        try:
            yield from _sync(
                context, config, selected, vendor_api, warehouse.get_warehouse(),
                warehouse.full_refresh_max_removed_share,
            )
        except WarehouseBusyError as exc:
            raise Failure(description=scrub(str(exc), SECRETS.secrets)) from None

    return ecom_vendor_sync


def _sync(
    context: AssetExecutionContext,
    config: SyncConfig,
    contracts: list[ResourceContract],
    vendor_api: VendorApiResource,
    target: Warehouse,
    max_removed_share: float,
) -> Iterator[MaterializeResult | AssetCheckResult | AssetCheckEvaluation]:
    names = [c.name for c in contracts]
    # The dataset's only writer (see `Warehouse.writer`): the Dagster pool already queues
    # writers, the lock also covers runs the queue does not see, such as two CLI runs.
    with target.writer(context.run_id, names) as pipeline, vendor_api.session() as session:
        # Read only what changed before now, with the lock held: a record that changes while
        # the run reads belongs to the next run, and one that changed while this run waited
        # for the lock belongs to this one.
        started = datetime.now(UTC)
        report = SyncReport()
        late_arrival = timedelta(minutes=vendor_api.late_arrival_minutes)

        def read(window: Window | Mapping[str, Window], into: Pipeline) -> LoadInfo:
            """Read `window` of every selected resource, or each resource's own, and load it
            with `into`."""
            reading = _reading(contracts, window)
            context.log.info(f"Reading {reading}")
            source = target.source(
                pipeline, vendor_api.base_url, session, window, contracts=contracts,
                report=report, late_arrival=late_arrival,
                # Compared with the table `into` writes: a full refresh's own dataset is empty
                # when it starts, so the refresh decides every twin by its window's rule.
                into=into,
            )
            try:
                return into.run(source, loader_file_format=target.loader_file_format)
            except PipelineStepFailed as exc:
                failure = _failure(exc, f"the sync of {reading}")
                if not failure.allow_retries:
                    _not_to_be_retried(context)  # the vendor would reject it the same way
                raise failure from None

        if config.full_refresh:
            refresh = StagedRefresh(target, context.run_id, pipeline)
            load_info = _full_refresh(context, config, contracts, refresh, report, started, read,
                                      max_removed_share, late_arrival)
            windows = None
        else:
            windows = _windows_to_read(context, config, contracts, started, late_arrival)
            load_info = read(windows, pipeline)
        yield from _report_load(context, pipeline, target.destination, contracts, windows,
                                report, load_info, Window.between(EPOCH, started))


def _reading(contracts: list[ResourceContract], window: Window | Mapping[str, Window]) -> str:
    """What a read reads, for its log line and its failure: "order_payments, products for
    [...)", or each resource with its window when they differ."""
    windows = window if isinstance(window, Mapping) else {c.name: window for c in contracts}
    if len(set(windows.values())) == 1:
        return f"{', '.join(windows)} for {next(iter(windows.values()))}"
    return ", ".join(f"{name} for {each}" for name, each in windows.items())


def _windows_to_read(
    context: AssetExecutionContext,
    config: SyncConfig,
    contracts: list[ResourceContract],
    started: datetime,
    late_arrival: timedelta,
) -> dict[str, Window]:
    """Each resource's window: the run's partitions up to now; with `changes_only` (the change
    sensor's refreshes), only what changed since the resource's first partition was last
    reconciled, less the late-arrival horizon (the partitions after it are read whole).

    A partition is reconciled through the end of the window its latest materialization read,
    when every record the vendor listed there landed. A partition without such a mark, or with
    one in the future, is read whole; the daily schedule, backfills and manual runs always
    read whole partitions.
    """
    partition_start, partition_end = context.partition_time_window
    whole = Window.between(partition_start, min(partition_end, started))
    if not config.changes_only:
        return {contract.name: whole for contract in contracts}
    first = context.partition_keys[0]
    windows = {}
    for contract in contracts:
        mark = _reconciled_through(context, contract, first)
        # A mark past the partition's end (left by a run that also read later days) leaves
        # only its late arrivals to read.
        since = (
            max(whole.start, min(mark, whole.end) - look_back(late_arrival))
            if mark is not None and whole.start <= mark <= started else whole.start
        )
        windows[contract.name] = Window.between(since, whole.end) if since < whole.end else whole
    return windows


def _reconciled_through(
    context: AssetExecutionContext, contract: ResourceContract, partition: str
) -> datetime | None:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key(contract), asset_partitions=[partition]), 1
    ).records
    materialization = records[0].asset_materialization if records else None
    if materialization is None:
        return None
    read_empty = materialization.metadata.get(DAYS_READ_EMPTY)
    if read_empty is not None and partition in read_empty.value:
        # A range run marks its window, and a day of it may have been an outage's empty answer.
        return None
    mark = materialization.metadata.get(RECONCILED_THROUGH)
    return datetime.fromtimestamp(mark.value, UTC) if mark is not None else None


# Rounds of looking for rows a full refresh did not see among the records that changed since.
FOLLOW_ROUNDS = 2


def _full_refresh(
    context: AssetExecutionContext,
    config: SyncConfig,
    contracts: list[ResourceContract],
    refresh: StagedRefresh,
    report: SyncReport,
    started: datetime,
    read: Callable[[Window, Pipeline], LoadInfo],
    max_removed_share: float,
    late_arrival: timedelta,
) -> LoadInfo:
    """Stage everything the vendor has, validate it, then swap it in (`ingest/full_refresh.py`).
    Nothing is replaced when the staged data fails a check or a table would lose too much."""
    refresh.reset()
    window = Window.between(EPOCH, started)
    load_ids = list(read(window, refresh.pipeline).loads_ids)
    # A record that changed while the refresh ran has left its window for a later one: rows
    # the refresh did not see are looked for among the records changed since, before they
    # count as removed. Every round: one that finds none of them says nothing of a record
    # that changed again after its window's end.
    changes = refresh.changes(contracts)
    for _ in range(FOLLOW_ROUNDS):
        if not any(c.rows_removed for c in changes):
            break
        following = Window.between(window.end - look_back(late_arrival), datetime.now(UTC))
        load_ids += read(following, refresh.pipeline).loads_ids
        window = following
        changes = refresh.changes(contracts)
    # Rows in parts the vendor listed nothing in count as removed only once the part, read
    # again now (seconds or minutes after the passes that found it empty), is still empty.
    empty_parts = (
        refresh.empty_parts_losing_rows(contracts, report)
        if any(c.rows_removed for c in changes) else []
    )
    for part in empty_parts:
        context.log.info(f"The vendor listed nothing in {part}, where the table has rows: "
                         "reading it again before they count as removed")
        load_ids += read(part, refresh.pipeline).loads_ids
    if empty_parts:
        changes = refresh.changes(contracts)
    problems = _staged_problems(refresh, contracts, report, load_ids)
    if problems:
        _not_to_be_retried(context)
        raise Failure(
            description="The full refresh was staged but failed its checks, so nothing was "
            f"replaced: {'; '.join(problems)}"
        )
    refusals = [r for c in changes if (r := c.refusal(max_removed_share))]
    if refusals and not config.allow_removing_rows:
        _not_to_be_retried(context)
        raise Failure(
            description=f"Refusing the full refresh, nothing was replaced: {'; '.join(refusals)}."
            " If the vendor really deleted those records, launch the full refresh again with "
            "the run config `allow_removing_rows: true`."
        )
    for change in changes:
        report[change.table].kept = change.rows_kept
        context.log.info(
            f"Replacing {change.table}: {change.rows_now} rows now, {change.rows_staged} from "
            f"the vendor, {change.rows_kept} kept (defective now), {change.rows_removed} removed"
        )
    load_info = refresh.swap(contracts)
    refresh.reset()
    return load_info


def _staged_problems(
    refresh: StagedRefresh,
    contracts: list[ResourceContract],
    report: SyncReport,
    load_ids: list[str],
) -> list[str]:
    """The blocking checks, on the staged tables: what failed."""
    problems = []
    with refresh.pipeline.sql_client() as client:
        for contract in contracts:
            run = CheckRun.of_load(client, refresh.warehouse.destination, contract, None,
                                   report[contract.name], load_ids)
            for check in STAGED_CHECKS:
                outcome = check.evaluate(run)
                if not outcome.passed:
                    problems.append(f"{contract.name} {check.name}: {outcome.metadata}")
    return problems


def _not_to_be_retried(context: AssetExecutionContext) -> None:
    """Tell the daemon's run retries (dagster.yaml `run_retries`) to leave this run failed."""
    context.instance.add_run_tags(context.run_id, {RETRY_ON_FAILURE_TAG: "false"})


def _failure(exc: PipelineStepFailed, what: str) -> Failure:
    """A Dagster failure naming what went wrong, not dlt's wrapper around it."""
    cause = vendor_error_behind(exc)
    if cause is not None:
        return Failure(
            description=f"{what} failed: {cause}",
            # A rejected request (wrong key, bad request) fails the same way on every retry.
            allow_retries=cause.retryable,
        )
    holder = busy_holder(exc)
    if holder is not None:
        reason = f"the DuckDB file was taken by {holder} while the run was writing it"
    else:
        reason = f"dlt step `{exc.step}`: {type(exc.exception).__name__}: {exc.exception}"
    return Failure(description=scrub(f"{what} failed: {reason}", SECRETS.secrets)[:2000])


# Materialization metadata: until when the partition is reconciled with the vendor.
RECONCILED_THROUGH = "reconciled_through"


def _reconciled_mark(window: Window | None, reconciled: bool, listed: int) -> dict[str, Any]:
    """The end of the window read, if every record the vendor listed in it landed, as the next
    sensor refresh's start. None if the vendor listed nothing: an outage answers a window that
    has records so, and the partition's next refresh then reads all of it again."""
    if window is None or not reconciled or not listed:
        return {}
    return {RECONCILED_THROUGH: MetadataValue.timestamp(window.end)}


# Materialization metadata: the days the run read whole in which the vendor listed nothing, in
# the whole day or in a part of it.
DAYS_READ_EMPTY = "days_read_empty"


def _days_read_empty(
    window: Window, partitions: Sequence[str], received: ResourceReport
) -> list[str]:
    """The run's partitions read whole in which the vendor listed no record, in the day or in
    a part of the window reaching into it. An outage that outlasts the reader's passes answers
    a part that has records so; the daily schedule reads such days once more
    (`schedules.py`)."""
    with_empty_parts = {day for part in received.empty_parts for day in _days_of(part)}
    days = []
    for key in partitions:
        start = datetime.fromisoformat(key).replace(tzinfo=UTC)
        read_whole = window.start <= start and start + timedelta(days=1) <= window.end
        listed = start.date() in received.days_listed
        if read_whole and (not listed or start.date() in with_empty_parts):
            days.append(key)
    return days


def _days_of(part: Window) -> set[date]:
    first, last = part.start.date(), (part.end - MILLISECOND).date()
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


def _report_load(
    context: AssetExecutionContext,
    pipeline: Pipeline,
    destination: str,
    contracts: list[ResourceContract],
    windows: dict[str, Window] | None,
    report: SyncReport,
    load_info: LoadInfo,
    everything: Window,
) -> Iterator[MaterializeResult | AssetCheckResult | AssetCheckEvaluation]:
    """Materializations with the load's reconciliation numbers, then each asset's checks; a
    failed blocking check fails the step, so nothing downstream of it runs. `windows` are
    the resources' windows read, None for a full refresh, which read `everything`."""
    load_ids = list(load_info.loads_ids)
    partitions = context.partition_keys
    # A run of a partition range records one materialization for all of them (Dagster takes no
    # metadata per partition from one run, dagster-io/dagster#21072): only a run of one
    # partition can say how many rows that partition holds. A sensor refresh reads part of it.
    partition = (
        Window.between(*context.partition_time_window)
        if windows is not None and len(partitions) == 1 else None
    )
    failed: set[str] = set()
    with pipeline.sql_client() as client:
        for contract in contracts:
            window = windows[contract.name] if windows is not None else None
            received = report[contract.name]
            selected_checks = {
                check.name
                for check in context.selected_asset_check_keys
                if check.asset_key == asset_key(contract)
            }
            run = CheckRun.of_load(client, destination, contract, window, received, load_ids,
                                   partition)
            stats = run.stats
            # Evaluated first: the materialization marks the window reconciled only if it was.
            evaluations = list(evaluate_checks(run, selected_checks, partitions))
            reconciled = any(check.evaluate is reconciled_with_vendor and evaluation.passed
                             for check, evaluation in evaluations)
            yield MaterializeResult(
                asset_key=asset_key(contract),
                metadata={
                    "window": str(window) if window else "full refresh",
                    **_reconciled_mark(window, reconciled, received.listed),
                    "vendor_total": received.vendor_total,
                    "records_received": received.listed,
                    "records_loaded": received.loaded,
                    "records_quarantined": received.defective,
                    **({DAYS_READ_EMPTY: MetadataValue.json(empty)}
                       if (empty := _days_read_empty(window or everything, partitions,
                                                     received)) else {}),
                    **({} if stats.rows_in_partition is None else {
                        "dagster/partition_row_count": stats.rows_in_partition
                    }),
                    "dagster/row_count": stats.rows,
                    "pages_fetched": received.requests,
                    "window_parts_paged_again": received.repaged,
                    "dlt_load_id": ", ".join(load_ids) or "none (nothing to load)",
                    "dagster/column_schema": MetadataValue.table_schema(
                        column_schema(contract, destination, run.unknown_columns)
                    ),
                },
            )
            for check, evaluation in evaluations:
                if not evaluation.passed and check.blocking:
                    failed.add(f"{contract.name} {check.name}")
                yield evaluation
    if failed:
        # Defective or missing vendor data: fetching again at once brings the same.
        _not_to_be_retried(context)
        raise Failure(
            description=f"Blocking checks failed: {', '.join(sorted(failed))}. Their "
            "metadata, in the asset's Checks tab, says what was found.",
        )
