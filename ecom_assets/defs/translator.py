"""How dlt resources appear in Dagster: keys, group, owners, kinds and the contract's columns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from dagster import (
    AssetKey,
    AssetSpec,
    FreshnessPolicy,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

from ecom_assets.contract import FieldType, ResourceContract
from ecom_assets.ingest.warehouse import DATASET_NAME

ASSET_GROUP = "ecom"
OWNERS = ["team:data-platform"]
# The daily schedule reconciles each day once it is over and the sensor refreshes what changes:
# a day without a successful materialization means both stopped.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=25))


def asset_key(contract: ResourceContract) -> AssetKey:
    return AssetKey([DATASET_NAME, contract.name])


def column_schema(
    contract: ResourceContract, destination: str, unknown_columns: Iterable[str] = ()
) -> TableSchema:
    """The contract as Dagster's `dagster/column_schema` (column types of `destination`), with
    nullability constraints, plus the columns of fields the vendor sent that the contract does
    not know."""
    return TableSchema(
        columns=[
            *(
                TableColumn(
                    name=field.name,
                    type=field.type.sql_type(destination) or field.type.dlt_type,
                    description=field.description,
                    constraints=TableColumnConstraints(
                        nullable=field.nullable,
                        other=[field.constraint] if field.constraint else [],
                    ),
                )
                for field in contract.fields
            ),
            *(
                TableColumn(
                    name=name,
                    type=FieldType.TEXT.sql_type(destination) or FieldType.TEXT.dlt_type,
                    description="Not in the contract.",
                )
                for name in sorted(unknown_columns)
            ),
        ]
    )


class EcomDltTranslator(DagsterDltTranslator):
    """Keys, group, owners, kinds and the contract's column schema of each resource's asset.
    The destination is the assets' kind and decides the column types shown in the UI."""

    def __init__(self, contracts: Mapping[str, ResourceContract], destination: str) -> None:
        self.contracts = contracts
        self.destination = destination

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        contract = self.contracts[data.resource.name]
        return super().get_asset_spec(data).replace_attributes(
            key=asset_key(contract),
            deps=[],
            group_name=ASSET_GROUP,
            description=(
                f"{contract.description}\n\nLoaded by dlt from the vendor's `{contract.path}`, "
                f"merged on `{contract.primary_key}`; daily UTC partitions on "
                f"`{contract.cursor}`. Defective records go to "
                f"`{DATASET_NAME}.{contract.quarantine_table}`."
            ),
            owners=OWNERS,
            kinds={"dlt", self.destination},
            freshness_policy=FRESHNESS,
            metadata={
                "dagster/column_schema": MetadataValue.table_schema(
                    column_schema(contract, self.destination)
                ),
                "destination": self.destination,
                "dagster/table_name": f"{DATASET_NAME}.{contract.name}",
                "vendor_endpoint": contract.path,
                "primary_key": contract.primary_key,
            },
        )
