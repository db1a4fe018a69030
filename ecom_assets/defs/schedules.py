"""The daily safety net: the partition of the day just over, of every asset, reconciled as a
whole once its late arrivals are in, and once more the days that runs read whole while the
vendor listed nothing in them."""

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from ecom_assets.contract import ResourceContract
from ecom_assets.defs.assets import DAYS_READ_EMPTY
from ecom_assets.defs.jobs import (
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    PARTITION_TAG,
    TRIGGER_TAG,
)
from ecom_assets.defs.translator import asset_key
from ecom_assets.ingest.window import look_back

# The trigger of a run that reads again days read empty: a day still empty then is believed.
EMPTY_DAY_READ_AGAIN = "empty_day_read_again"
_UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED,
               DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def build_daily_schedule(
    contracts: Sequence[ResourceContract],
    job_name: str,
    partitions_def: DailyPartitionsDefinition,
    late_arrival: timedelta,
) -> ScheduleDefinition:
    # A day is reconciled once the last of its records can have landed: its end plus the
    # look-back for late arrivals (00:15 UTC by default).
    after_day_end = look_back(late_arrival)
    minutes = int(after_day_end.total_seconds()) // 60

    def day_over(tick: datetime) -> str:
        return ((tick - after_day_end).date() - timedelta(days=1)).isoformat()

    @schedule(
        name="ecom_daily_refresh",
        job_name=job_name,
        cron_schedule=f"{minutes % 60} {minutes // 60 % 24} * * *",
        execution_timezone="UTC",
        # On: it reconciles the whole of each day once it is over, which the sensor's
        # refreshes of what changed do not.
        default_status=DefaultScheduleStatus.RUNNING,
        description="Reloads the partition of the day just over, once its late arrivals are in, "
        "reconciling the whole day, and reads again the days that runs found empty.",
    )
    def ecom_daily_refresh(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
        ended = day_over(context.scheduled_execution_time)
        first = partitions_def.start.strftime("%Y-%m-%d")
        if ended < first:
            return SkipReason(f"{ended} is before the first partition, {first}")
        requests = [RunRequest(partition_key=ended, run_key=ended)]
        # An outage that outlasts the reader's passes answers a day that has records with
        # nothing, as a day without records does: a day later, it is over.
        read_empty = _partitions_read_empty(context.instance, contracts)
        being_read = _days_being_read_again(context.instance)
        days = {day: keys for day, keys in read_empty.items()
                if first <= day < ended and day not in being_read}
        for first_day, last_day, keys in _consecutive(days):
            tags = {TRIGGER_TAG: EMPTY_DAY_READ_AGAIN}
            if first_day != last_day:  # one run for days in a row, as a backfill's
                tags |= {PARTITION_RANGE_START: first_day, PARTITION_RANGE_END: last_day}
            requests.append(RunRequest(
                partition_key=first_day if first_day == last_day else None,
                run_key=f"{ended}:{first_day}..{last_day}",
                asset_selection=keys,
                tags=tags,
            ))
        return requests

    return ecom_daily_refresh


def _partitions_read_empty(
    instance: DagsterInstance, contracts: Sequence[ResourceContract]
) -> dict[str, list[AssetKey]]:
    """The partitions whose latest materialization read the day whole and found it empty,
    however long ago, with the assets so read; not those of runs that read such a day again."""
    days: dict[str, list[AssetKey]] = {}
    run_triggers: dict[str, str | None] = {}
    for contract in contracts:
        key = asset_key(contract)
        latest = instance.get_latest_storage_id_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION
        )
        if not latest:
            continue
        records = instance.fetch_materializations(
            AssetRecordsFilter(key, storage_ids=list(latest.values())), len(latest)
        ).records
        for record in records:
            materialization = record.asset_materialization
            partition = materialization.partition if materialization else None
            listed = materialization.metadata.get(DAYS_READ_EMPTY) if materialization else None
            if partition is None or listed is None or partition not in listed.value:
                continue
            if record.run_id not in run_triggers:
                run = instance.get_run_by_id(record.run_id)
                run_triggers[record.run_id] = run.tags.get(TRIGGER_TAG) if run else None
            if run_triggers[record.run_id] != EMPTY_DAY_READ_AGAIN:
                days.setdefault(partition, []).append(key)
    return days


def _days_being_read_again(instance: DagsterInstance) -> set[str]:
    """The days of runs reading days again that have not finished: not asked for twice."""
    days: set[str] = set()
    runs = instance.get_runs(
        RunsFilter(tags={TRIGGER_TAG: EMPTY_DAY_READ_AGAIN}, statuses=_UNFINISHED)
    )
    for run in runs:
        first = run.tags.get(PARTITION_RANGE_START) or run.tags.get(PARTITION_TAG)
        if first:
            last = date.fromisoformat(run.tags.get(PARTITION_RANGE_END) or first)
            day = date.fromisoformat(first)
            while day <= last:
                days.add(day.isoformat())
                day += timedelta(days=1)
    return days


def _consecutive(days: dict[str, list[AssetKey]]) -> list[tuple[str, str, list[AssetKey]]]:
    """Runs of days in a row read empty by the same assets: (first day, last day, assets)."""
    groups: list[tuple[str, str, list[AssetKey]]] = []
    for day in sorted(days):
        if groups:
            first, last, keys = groups[-1]
            following = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
            if day == following and days[day] == keys:
                groups[-1] = (first, day, keys)
                continue
        groups.append((day, day, days[day]))
    return groups
