"""Jobs that schedules target."""

from dagster import AssetSelection, define_asset_job

from ecom_assets.defs.partitions import daily_partitions
from ecom_assets.defs.translator import ASSET_GROUP

ecom_daily_refresh_job = define_asset_job(
    name="ecom_daily_refresh",
    selection=AssetSelection.groups(ASSET_GROUP),
    partitions_def=daily_partitions,
    description="Reloads one daily partition of every ecom asset.",
)
