"""The code location: every definition of the project, built from the resource contracts."""

import gc
from collections.abc import Iterable

from dagster import Definitions, in_process_executor

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.defs.assets import build_sync_assets
from ecom_assets.defs.jobs import build_refresh_job
from ecom_assets.defs.partitions import daily_partitions
from ecom_assets.defs.resources import build_resources
from ecom_assets.defs.schedules import build_daily_schedule
from ecom_assets.defs.sensors import build_change_sensor
from ecom_assets.settings import Settings, get_settings


def build_definitions(
    contracts: Iterable[ResourceContract] = CONTRACTS.values(), settings: Settings | None = None
) -> Definitions:
    """Assets, checks, job, schedule, sensor and resources for `contracts`: a new resource is
    one more contract (see README, "Add a resource")."""
    contracts = list(contracts)
    settings = settings or get_settings()
    partitions = daily_partitions(settings.partitions_start)
    job = build_refresh_job(partitions)
    return Definitions(
        assets=[build_sync_assets(contracts, partitions, settings.destination)],
        jobs=[job],
        schedules=[build_daily_schedule(job, partitions)],
        sensors=[
            build_change_sensor(contracts, job, partitions, settings.sensor_interval_seconds)
        ],
        # Each run is one step (one dlt run): a step subprocess would only add start-up time.
        executor=in_process_executor,
        resources=build_resources(settings),
    )


defs = build_definitions()

# The objects of every import above live as long as the process: frozen, the collector skips
# them, which also spares the final collections at exit.
gc.freeze()
