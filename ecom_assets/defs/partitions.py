"""Daily UTC partitions on `updated_at`, from the first partition day through today."""

from datetime import date

from dagster import DailyPartitionsDefinition


def daily_partitions(start: date) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(
        start_date=start.isoformat(),
        timezone="UTC",
        # Include the current, still-open day so today's changes can be loaded too.
        end_offset=1,
    )
