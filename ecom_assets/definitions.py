"""The code location: every definition of the project, gathered in one `Definitions`."""

from dagster import Definitions, EnvVar, in_process_executor
from dagster_dlt import DagsterDltResource

from ecom_assets.defs.assets import ecom_vendor_sync
from ecom_assets.defs.resources import DuckDBWarehouseResource, VendorApiResource

defs = Definitions(
    assets=[ecom_vendor_sync],
    # Each run is one step (one dlt run): a step subprocess would only add start-up time.
    executor=in_process_executor,
    resources={
        "vendor_api": VendorApiResource(
            base_url=EnvVar("ECOM_API_BASE_URL"), api_key=EnvVar("ECOM_API_KEY")
        ),
        "warehouse": DuckDBWarehouseResource(),
        "dlt": DagsterDltResource(),
    },
)
