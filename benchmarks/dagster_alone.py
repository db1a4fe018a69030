"""Variant (e) of `make bench`: what a `dg launch` of this project costs without fetching or
loading anything.

A code location with the project's asset shape (the same specs, partitions, backfill policy,
checks and executor, and the same imports) whose step does nothing: it reports each selected
asset materialized and each check passed, recorded as the project records them (one
evaluation per partition of a range, each an event Dagster stores). (c) minus (e) is what the
sync itself costs inside Dagster; (e) is a floor no sync through this CLI can go under,
whatever its client does.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetExecutionContext,
    AssetsDefinition,
    Definitions,
    MaterializeResult,
    in_process_executor,
    multi_asset,
)

from ecom_assets.defs.checks import CHECKS, Outcome, check_events
from ecom_assets.defs.ecom import build_definitions

PASSED = Outcome(passed=True, metadata={})


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
    ) -> Iterator[MaterializeResult | AssetCheckResult | AssetCheckEvaluation]:
        for key in context.selected_asset_keys:
            yield MaterializeResult(asset_key=key)
        selected = {(key.asset_key, key.name) for key in context.selected_asset_check_keys}
        for key in context.selected_asset_keys:
            for check in CHECKS:
                if (key, check.name) in selected:
                    yield from check_events(check, key, PASSED, context.partition_keys)

    return dagster_alone


defs = Definitions(assets=[_doing_nothing()], executor=in_process_executor)
