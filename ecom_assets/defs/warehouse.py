"""SQL run inside the destination, for run metadata and asset checks.

Everything is a query through the dlt pipeline's own SQL client (one open client serves a
whole run's metadata and checks): nothing pulls a table into
Python, and the same code serves any SQL destination dlt supports.
"""

from collections.abc import Sequence
from typing import Any

from dagster import MetadataValue
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase

from ecom_assets.contract import ResourceContract
from ecom_assets.defs.translator import column_schema
from ecom_assets.ingest import Window
from ecom_assets.ingest.report import ResourceReport


def query_all(
    client: SqlClientBase, table: str, select: str, where: str = "", params: Sequence[Any] = ()
) -> list[tuple]:
    """`{select} from <dataset>.<table> {where}`; no rows if the table does not exist yet (an
    empty first load creates no table)."""
    name = client.make_qualified_table_name(table)
    try:
        return list(client.execute_sql(f"{select} from {name} {where}", *params) or [])
    except DatabaseUndefinedRelation:
        return []


def query_one(
    client: SqlClientBase, table: str, select: str, where: str = "", params: Sequence[Any] = ()
) -> tuple | None:
    """The first row of `query_all`, None if there is none."""
    rows = query_all(client, table, select, where, params)
    return rows[0] if rows else None


def table_columns(client: SqlClientBase, table: str) -> dict[str, tuple[str, bool]]:
    """Column name -> (data type as the destination reports it, nullable). PostgreSQL reports
    a decimal as `numeric` alone: its precision and scale are added, as DuckDB shows them."""
    rows = client.execute_sql(
        "select column_name, data_type, is_nullable, numeric_precision, numeric_scale "
        "from information_schema.columns where table_schema = %s and table_name = %s",
        client.dataset_name,
        table,
    )
    columns = {}
    for name, data_type, nullable, precision, scale in rows:
        data_type = data_type.upper()
        if data_type == "NUMERIC" and precision is not None:
            data_type = f"NUMERIC({precision},{scale})"
        columns[name] = (data_type, nullable == "YES")
    return columns


def window_filter(contract: ResourceContract, window: Window | None) -> tuple[str, tuple]:
    """A where clause selecting the rows whose cursor lies in `window` (all rows if None)."""
    if window is None:
        return "", ()
    return f"where {contract.cursor} >= %s and {contract.cursor} < %s", (window.start, window.end)


def count_rows(
    client: SqlClientBase, contract: ResourceContract, window: Window | None = None
) -> int:
    where, params = window_filter(contract, window)
    row = query_one(client, contract.name, "select count(*)", where, params)
    return int(row[0]) if row else 0


def sync_metadata(
    client: SqlClientBase,
    destination: str,
    contract: ResourceContract,
    window: Window | None,
    received: ResourceReport,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        # The contract's schema, not dlt's inferred one: types, nullability, descriptions.
        "dagster/column_schema": MetadataValue.table_schema(
            column_schema(contract, destination, received.unknown_fields)
        ),
        "window": str(window) if window else "full refresh",
        "vendor_total": received.vendor_total or 0,
        "records_received": received.received,
        "records_loaded": received.valid,
        "records_quarantined": received.quarantined,
        "dagster/row_count": count_rows(client, contract),
    }
    if window:
        metadata["dagster/partition_row_count"] = count_rows(client, contract, window)
    return metadata
