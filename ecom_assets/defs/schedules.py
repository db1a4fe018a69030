"""The daily safety net: yesterday's partition of every asset, reconciled as a whole."""

from datetime import timedelta

from dagster import (
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)


def build_daily_schedule(
    job: JobDefinition | UnresolvedAssetJobDefinition, partitions_def: DailyPartitionsDefinition
) -> ScheduleDefinition:
    @schedule(
        name="ecom_daily_refresh",
        job=job,
        cron_schedule="15 0 * * *",
        execution_timezone="UTC",
        # On: it reconciles the whole of yesterday once it is over, which the sensor's
        # refreshes of what changed do not.
        default_status=DefaultScheduleStatus.RUNNING,
        description="Reloads yesterday's partition of every asset, reconciling the whole day.",
    )
    def ecom_daily_refresh(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
        first = partitions_def.start.strftime("%Y-%m-%d")
        if yesterday < first:
            return SkipReason(f"{yesterday} is before the first partition, {first}")
        return RunRequest(partition_key=yesterday, run_key=yesterday)

    return ecom_daily_refresh
