"""The safety net: after midnight UTC, reload yesterday's partition of every asset."""

from datetime import timedelta

from dagster import RunRequest, ScheduleEvaluationContext, schedule

from ecom_assets.defs.jobs import ecom_daily_refresh_job


@schedule(
    name="ecom_daily_refresh",
    job=ecom_daily_refresh_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    description="Reloads yesterday's partition of both assets, catching anything a sensor missed.",
)
def ecom_daily_refresh(context: ScheduleEvaluationContext) -> RunRequest:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    return RunRequest(partition_key=yesterday, run_key=yesterday)
