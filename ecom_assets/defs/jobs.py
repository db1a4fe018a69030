"""The job the schedule and the sensor launch: a refresh of some partitions of some assets."""

from dagster import AssetSelection, PartitionsDefinition, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from ecom_assets.defs.translator import ASSET_GROUP

# What a run launched by the sensor or the schedule says, besides its partitions, of why it ran.
TRIGGER_TAG = "ecom/trigger"
# Dagster's tags for the partition, or the range of partitions, that a run reads.
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


def build_refresh_job(partitions_def: PartitionsDefinition) -> UnresolvedAssetJobDefinition:
    return define_asset_job(
        name="ecom_refresh",
        selection=AssetSelection.groups(ASSET_GROUP),
        partitions_def=partitions_def,
        description="Refreshes daily partitions of the ecom assets: the schedule's whole-day "
        "reconciliation and the sensor's refreshes of what changed.",
    )
