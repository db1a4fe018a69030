"""Variant (f) of `make bench`: a minimal Dagster run through the same CLI.

One daily-partitioned asset whose step returns at once, on the in-process executor: what any
run of a partitioned asset costs, which a refresh of this project is compared with.
"""

from dagster import DailyPartitionsDefinition, Definitions, asset, in_process_executor


@asset(partitions_def=DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1))
def minimal() -> None:
    """Returns at once."""


defs = Definitions(assets=[minimal], executor=in_process_executor)
