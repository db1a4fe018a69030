"""Variant (e) of `make bench`: what a `dg launch` of this project costs without fetching or
loading anything.

A code location with the project's asset shape (the same specs, partitions, backfill policy,
checks and executor, and the same imports) whose step does nothing: it reports each selected
asset materialized and each check passed. (c) minus (e) is what the sync itself costs inside
Dagster; (e) is a floor no sync through this CLI can go under, whatever its client does.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetsDefinition,
    Definitions,
    MaterializeResult,
    in_process_executor,
    multi_asset,
)

from ecom_assets.defs.ecom import build_definitions


def _doing_nothing() -> AssetsDefinition:
    """The project's multi-asset, its step replaced by one that does nothing."""
    definitions = build_definitions()
    project = definitions.resolve_assets_def(
        next(iter(definitions.resolve_asset_graph().get_all_asset_keys()))
    )

    @multi_asset(
        name=project.op.name,
        specs=list(project.specs),
        check_specs=list(project.check_specs),
        can_subset=True,
        partitions_def=project.partitions_def,
        backfill_policy=project.backfill_policy,
    )
    def dagster_alone(
        context: AssetExecutionContext,
    ) -> Iterator[MaterializeResult | AssetCheckResult]:
        for key in context.selected_asset_keys:
            yield MaterializeResult(asset_key=key)
        for check in context.selected_asset_check_keys:
            yield AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    return dagster_alone


defs = Definitions(assets=[_doing_nothing()], executor=in_process_executor)
