"""The code location: every definition of the project, gathered in one `Definitions`."""

import gc

from dagster import Definitions, EnvVar, in_process_executor
from dagster_dlt import DagsterDltResource

from ecom_assets.defs.assets import ecom_vendor_sync
from ecom_assets.defs.jobs import ecom_daily_refresh_job
from ecom_assets.defs.resources import (
    ChangeSensorSettings,
    VendorApiResource,
    WarehouseResource,
)
from ecom_assets.defs.schedules import ecom_daily_refresh
from ecom_assets.defs.sensors import ecom_vendor_changes

defs = Definitions(
    assets=[ecom_vendor_sync],
    jobs=[ecom_daily_refresh_job],
    schedules=[ecom_daily_refresh],
    sensors=[ecom_vendor_changes],
    # Each run is one step (one dlt run): a step subprocess would only add start-up time.
    executor=in_process_executor,
    resources={
        "vendor_api": VendorApiResource(
            base_url=EnvVar("ECOM_API_BASE_URL"), api_key=EnvVar("ECOM_API_KEY")
        ),
        "warehouse": WarehouseResource(),
        "dlt": DagsterDltResource(),
        "change_sensor": ChangeSensorSettings(),
    },
)

# The objects of every import above live as long as the process: frozen, the collector skips
# them, which also spares the final collections at exit (0.8 s of each `dagster asset
# materialize` here; see BENCHMARKS.md).
gc.freeze()
