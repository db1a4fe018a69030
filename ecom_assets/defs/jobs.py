"""The job the schedule and the sensor launch: a refresh of some partitions of some assets."""

from dagster import AssetSelection, define_asset_job

from ecom_assets.defs.translator import ASSET_GROUP

# What a run launched by the sensor or the schedule says, besides its partitions, of why it ran.
TRIGGER_TAG = "ecom/trigger"
# Dagster's tags for the partition, or the range of partitions, that a run reads.
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


def build_refresh_job():  # Dagster's type for it is not public
    """Its partitions are the assets' (Dagster infers them from the selection)."""
    return define_asset_job(
        name="ecom_refresh",
        selection=AssetSelection.groups(ASSET_GROUP),
        description="Refreshes daily partitions of the ecom assets: the schedule's whole-day "
        "reconciliation and the sensor's refreshes of what changed.",
    )
