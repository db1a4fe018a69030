"""SQL run inside the destination, for run metadata and asset checks.

Everything is a query through the dlt pipeline's own SQL client (one open client serves a whole
run's metadata and checks): nothing pulls a table into Python, and the same code serves any SQL
destination dlt supports.
"""

from collections.abc import Sequence
from typing import Any

from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase


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


def load_filter(load_ids: Sequence[str]) -> tuple[str, tuple]:
    """A where clause selecting the rows the loads `load_ids` wrote (none if there are none)."""
    if not load_ids:
        return "where false", ()
    return f"where _dlt_load_id in ({', '.join(['%s'] * len(load_ids))})", tuple(load_ids)
