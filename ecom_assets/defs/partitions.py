"""Daily UTC partitions on `updated_at`, from ECOM_PARTITIONS_START through today."""

import os

from dagster import DailyPartitionsDefinition

DEFAULT_PARTITIONS_START = "2026-01-01"

# Definitions need the first day when they load, so this one setting is read at import time.
daily_partitions = DailyPartitionsDefinition(
    start_date=os.getenv("ECOM_PARTITIONS_START") or DEFAULT_PARTITIONS_START,
    timezone="UTC",
    # Include the current, still-open day so today's changes can be loaded too.
    end_offset=1,
)
