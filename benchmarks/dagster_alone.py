"""Variant (e) of `make bench`: what a `dagster asset materialize` of this project costs
without fetching or loading anything.

A code location with the project's asset shape (the same specs, partitions, backfill policy,
checks and executor, and the same imports, since it imports the project's definitions) whose
step does nothing: it reports each selected asset materialized and each check passed. (c) minus
(e) is what the sync itself costs inside Dagster; (e) is a floor no sync through this CLI can
go under, whatever its client does.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Definitions,
    MaterializeResult,
    in_process_executor,
    multi_asset,
)

# The project's code location is imported whole, for the same imports (and their `gc.freeze`).
import ecom_assets.definitions  # noqa: F401
from ecom_assets.defs.assets import ecom_vendor_sync


@multi_asset(
    name=ecom_vendor_sync.op.name,
    specs=list(ecom_vendor_sync.specs),
    check_specs=list(ecom_vendor_sync.check_specs),
    can_subset=True,
    partitions_def=ecom_vendor_sync.partitions_def,
    backfill_policy=ecom_vendor_sync.backfill_policy,
)
def dagster_alone(context: AssetExecutionContext) -> Iterator[MaterializeResult | AssetCheckResult]:
    for key in context.selected_asset_keys:
        yield MaterializeResult(asset_key=key)
    for check in context.selected_asset_check_keys:
        yield AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)


defs = Definitions(assets=[dagster_alone], executor=in_process_executor)
