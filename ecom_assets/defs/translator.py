"""How dlt resources appear in Dagster: keys, group, owners, kinds and the contract's columns."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import (
    AssetKey,
    AssetSpec,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.ingest.source import DATASET_NAME

ASSET_GROUP = "ecom"
OWNERS = ["team:data-platform"]


def asset_key(contract: ResourceContract) -> AssetKey:
    return AssetKey([DATASET_NAME, contract.name])


def column_schema(contract: ResourceContract, unknown_fields: Iterable[str] = ()) -> TableSchema:
    """The contract as Dagster's `dagster/column_schema`, with nullability constraints, plus
    the columns of fields the vendor sent that the contract does not know."""
    return TableSchema(
        columns=[
            *(
                TableColumn(
                    name=field.name,
                    type=field.type.duckdb_type,
                    description=field.description,
                    constraints=TableColumnConstraints(nullable=field.nullable),
                )
                for field in contract.fields
            ),
            *(
                TableColumn(name=name, type="VARCHAR", description="Not in the contract.")
                for name in sorted(unknown_fields)
            ),
        ]
    )


class EcomDltTranslator(DagsterDltTranslator):
    def __init__(self, destination_name: str = "duckdb") -> None:
        self.destination_name = destination_name

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        contract = CONTRACTS[data.resource.name]
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
            kinds={"dlt", self.destination_name},
            metadata={
                "dagster/column_schema": MetadataValue.table_schema(column_schema(contract)),
                "dagster/table_name": f"{DATASET_NAME}.{contract.name}",
                "vendor_endpoint": contract.path,
                "primary_key": contract.primary_key,
            },
        )
