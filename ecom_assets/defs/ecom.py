"""Every definition of the code location, built from the list of resource contracts.

dg loads this module from the defs folder (`ecom_assets/definitions.py`); the other modules of
the folder hold one kind of definition each, as builders that take the contracts.
"""

from collections.abc import Iterable
from datetime import timedelta

import dagster as dg

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.defs.assets import build_sync_assets
from ecom_assets.defs.jobs import build_refresh_job
from ecom_assets.defs.partitions import daily_partitions
from ecom_assets.defs.resources import build_resources
from ecom_assets.defs.schedules import build_daily_schedule
from ecom_assets.defs.sensors import build_change_sensor
from ecom_assets.ingest.scrubbing import SECRETS
from ecom_assets.settings import Settings, get_settings


def build_definitions(
    contracts: Iterable[ResourceContract] = CONTRACTS.values(), settings: Settings | None = None
) -> dg.Definitions:
    """Assets and their checks, the refresh job, its schedule and sensor, and the resources,
    for `contracts`: a new resource is one more contract (README, "Add a resource")."""
    contracts = list(contracts)
    settings = settings or get_settings()
    # The runs of this code location log through dlt and urllib3: never the key or password.
    SECRETS.add(*settings.secrets)
    partitions = daily_partitions(settings.partitions_start)
    job = build_refresh_job()
    return dg.Definitions(
        assets=[build_sync_assets(contracts, partitions, settings.destination)],
        jobs=[job],
        schedules=[build_daily_schedule(
            contracts, job.name, partitions, timedelta(minutes=settings.late_arrival_minutes)
        )],
        sensors=[
            build_change_sensor(contracts, job.name, partitions, settings.sensor_interval_seconds)
        ],
        # Each run is one step (one dlt run): a step subprocess would only add start-up time.
        executor=dg.in_process_executor,
        # Run logs at INFO: Dagster's per-output DEBUG events say nothing a person reads.
        loggers={"console": dg.colored_console_logger.configured({"log_level": "INFO"})},
        resources=build_resources(settings),
    )


@dg.definitions
def ecom_definitions() -> dg.Definitions:
    return build_definitions(CONTRACTS.values(), get_settings())
