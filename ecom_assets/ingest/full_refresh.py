"""A full refresh that cannot lose data: staged, validated, guarded, then swapped in.

Everything the vendor has is first loaded (merged, so a record read twice keeps its latest
version) into a dataset of its own, `<dataset>_refresh`. Only then is each table compared with
what it would become: the records the vendor lists, plus the last valid row of every record whose
current version is defective (as a merge keeps it; every row not listed, while a defective record
has no readable id to tell which row it is). Rows the refresh did not see are looked for
among the records that changed while it ran before they count as removed, and a refresh that
would remove too much of a table is refused. The swap is one dlt `replace` load per table, in a
transaction: readers see the old table until it commits, and a failure leaves it as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase

from ecom_assets.contract import FieldType, ResourceContract
from ecom_assets.ingest.quarantine import QUARANTINE_COLUMNS, QUARANTINE_KEY, VENDOR_FIELD_HINT
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.source import SOURCE_NAME
from ecom_assets.ingest.warehouse import DATASET_NAME, Warehouse
from ecom_assets.ingest.window import Window

if TYPE_CHECKING:  # Arrow is imported by a run's first loaded records (contract.py)
    import pyarrow as pa

REFRESH_DATASET = f"{DATASET_NAME}_refresh"
ARROW_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class TableChange:
    """What replacing one table with the staged refresh would do to it."""

    table: str
    rows_now: int
    rows_staged: int
    rows_kept: int  # last valid rows of records whose current version is defective
    rows_removed: int  # rows of records the vendor no longer lists

    def refusal(self, max_removed_share: float) -> str | None:
        """Why replacing the table is refused, or None if it may be replaced."""
        if not self.rows_now or self.rows_removed <= max_removed_share * self.rows_now:
            return None
        if self.rows_staged + self.rows_kept == 0:
            what = "empty it"
        else:
            what = f"remove {self.rows_removed / self.rows_now:.0%} of it"
        return (
            f"{DATASET_NAME}.{self.table}: the refresh would {what} ({self.rows_removed} of "
            f"{self.rows_now} rows; at most {max_removed_share:.0%} may go, "
            f"ECOM_FULL_REFRESH_MAX_REMOVED_SHARE); the vendor listed {self.rows_staged} "
            "records"
        )


class StagedRefresh:
    """The refresh dataset of one run: `reset`, load any number of windows with `pipeline`,
    inspect `changes`, then `swap`."""

    def __init__(self, warehouse: Warehouse, run_id: str, main: dlt.Pipeline) -> None:
        self.warehouse = warehouse
        self.main = main
        self.pipeline = warehouse.pipeline(f"{run_id}-refresh", dataset_name=REFRESH_DATASET)

    def reset(self) -> None:
        """Start from an empty refresh dataset (a failed refresh may have left one)."""
        with self.pipeline.sql_client() as client:
            if client.has_dataset():
                client.drop_dataset()

    def changes(self, contracts: Sequence[ResourceContract]) -> list[TableChange]:
        """Per table: its rows now, and which of them the refresh would keep or remove."""
        changes = []
        with self.main.sql_client() as client:
            for contract in contracts:
                now, kept, removed = _counts_or_zero(
                    client,
                    "select count(*), "
                    "sum(case when s.id is null and q.id is not null then 1 else 0 end), "
                    "sum(case when s.id is null and q.id is null then 1 else 0 end) "
                    + self._table_against_staged(client, contract),
                )
                if self._quarantined_without_id(client, contract):
                    kept, removed = kept + removed, 0
                staged_ids = self._ids(client, contract.name, contract.primary_key)
                staged, *_ = _counts_or_zero(client, f"select count(*) from {staged_ids} s")
                changes.append(TableChange(contract.name, now, staged, kept, removed))
        return changes

    def empty_parts_losing_rows(
        self, contracts: Sequence[ResourceContract], report: SyncReport
    ) -> list[Window]:
        """The parts of the window the vendor listed nothing in, where the table holds rows
        the refresh would remove: an outage answers a part that has records so, now and then
        for longer than the reader's passes."""
        parts: set[Window] = set()
        with self.main.sql_client() as client:
            for contract in contracts:
                if self._quarantined_without_id(client, contract):
                    continue  # it removes no row
                sql = (  # the rows `changes` counts as removed, within a part
                    f"select 1 {self._table_against_staged(client, contract)} "
                    "where s.id is null and q.id is null "
                    f"and t.{contract.cursor} >= %s and t.{contract.cursor} < %s limit 1"
                )
                for part in set(report[contract.name].empty_parts) - parts:
                    try:
                        if client.execute_sql(sql, part.start, part.end):
                            parts.add(part)
                    except DatabaseUndefinedRelation:  # no table yet: nothing to lose
                        break
        return sorted(parts, key=lambda part: part.start)

    def swap(self, contracts: Sequence[ResourceContract]) -> LoadInfo:
        """Replace each table with its staged rows and the rows it keeps, and merge the
        refresh's quarantine into the table's."""
        resources = []
        for contract in contracts:
            resources.append(dlt.resource(
                self._rows(contract), name=contract.name, write_disposition="replace",
                primary_key=contract.primary_key,
                columns={**self._vendor_field_columns(contract.name),
                         **contract.dlt_columns(dedup=False)},
                max_table_nesting=0,
            ))
            resources.append(dlt.resource(
                self._quarantine(contract), name=contract.quarantine_table,
                write_disposition="merge", primary_key=QUARANTINE_KEY,
                columns=QUARANTINE_COLUMNS, max_table_nesting=0,
            ))
        return self.main.run(resources, loader_file_format=self.warehouse.loader_file_format)

    def _vendor_field_columns(self, table: str) -> dict[str, Any]:
        """The staged table's columns for fields the contract does not know, with the vendor
        field each holds, for the table's schema in the main dataset."""
        schema = self.pipeline.schemas.get(SOURCE_NAME)
        columns = schema.get_table_columns(table) if schema and table in schema.tables else {}
        return {name: dict(c) for name, c in columns.items() if VENDOR_FIELD_HINT in c}

    def _rows(self, contract: ResourceContract) -> Iterator[pa.Table]:
        """The staged rows, and the table's rows of records the refresh quarantined and did
        not stage, with the columns of both."""
        with self.main.sql_client() as client:
            staged_columns = _columns(client, REFRESH_DATASET, contract.name)
            if not staged_columns:
                return  # nothing staged: the table is emptied (the guard allowed it)
            main_columns = _columns(client, DATASET_NAME, contract.name)
            columns = sorted((staged_columns | main_columns) - {"_dlt_load_id", "_dlt_id"})

            def select(available: set[str]) -> str:
                return ", ".join(c if c in available else f"null as {c}" for c in columns)

            key = contract.primary_key
            sql = f"select {select(staged_columns)} from {self._staged(contract.name)}"
            if main_columns:
                staged_ids = self._ids(client, contract.name, key)
                sql += (
                    f" union all select {select(main_columns)} from "
                    f"{client.make_qualified_table_name(contract.name)} where {key} not in "
                    f"(select id from {staged_ids} s)"
                )
                if not self._quarantined_without_id(client, contract):
                    quarantined_ids = self._ids(client, contract.quarantine_table, "record_id")
                    sql += f" and {key} in (select id from {quarantined_ids} q)"
            for batch in _arrow_batches(client, sql):
                yield _as_contract_types(batch, contract)

    def _quarantine(self, contract: ResourceContract) -> Iterator[list[dict[str, Any]]]:
        with self.main.sql_client() as client:
            names = list(QUARANTINE_COLUMNS)
            try:
                rows = client.execute_sql(
                    f"select {', '.join(names)} from {self._staged(contract.quarantine_table)}"
                )
            except DatabaseUndefinedRelation:
                return
            records = [dict(zip(names, row, strict=True)) for row in rows or []]
            yield [{**r, "violations": _json(r["violations"])} for r in records]

    def _table_against_staged(self, client: SqlClientBase, contract: ResourceContract) -> str:
        """A FROM clause: each row of the table (`t`) with its id among the staged (`s.id`)
        and the quarantined (`q.id`), null where it is not."""
        key = contract.primary_key
        return (
            f"from {client.make_qualified_table_name(contract.name)} t "
            f"left join {self._ids(client, contract.name, key)} s on s.id = t.{key} "
            f"left join {self._ids(client, contract.quarantine_table, 'record_id')} q "
            f"on q.id = t.{key}"
        )

    def _quarantined_without_id(self, client: SqlClientBase, contract: ResourceContract) -> bool:
        """Whether the refresh quarantined a record without a readable id: any row it did not
        stage may be that record's last valid version, so none is removed."""
        staged = self._staged(contract.quarantine_table)
        try:
            return bool(client.execute_sql(
                f"select 1 from {staged} where record_id is null limit 1"
            ))
        except DatabaseUndefinedRelation:
            return False

    def _staged(self, table: str) -> str:
        """`table` of the refresh dataset, qualified for SQL run by the main pipeline's client
        (both datasets live in one database)."""
        with self.pipeline.sql_client() as client:
            return client.make_qualified_table_name(table)

    def _ids(self, client: SqlClientBase, table: str, column: str) -> str:
        """A subquery of the distinct `column` values of staged `table`, as `id` (none if
        nothing was staged there)."""
        staged = self._staged(table)
        try:
            client.execute_sql(f"select 1 from {staged} limit 0")
        except DatabaseUndefinedRelation:
            return "(select cast(null as varchar) as id where false)"
        return f"(select distinct {column} as id from {staged})"


def _counts_or_zero(client: SqlClientBase, sql: str) -> tuple[int, ...]:
    """The counts of `sql`'s one row; zeros if its table does not exist yet."""
    try:
        [row] = client.execute_sql(sql)
    except DatabaseUndefinedRelation:
        return (0, 0, 0)
    return tuple(int(value or 0) for value in row)


def _columns(client: SqlClientBase, dataset: str, table: str) -> set[str]:
    rows = client.execute_sql(
        "select column_name from information_schema.columns "
        "where table_schema = %s and table_name = %s",
        dataset, table,
    )
    return {name for (name,) in rows or []}


def _arrow_batches(client: SqlClientBase, sql: str) -> Iterator[pa.Table]:
    import pyarrow as pa

    native = client.native_connection
    if hasattr(native, "sql"):  # DuckDB reads straight into Arrow
        for batch in native.sql(sql).to_arrow_reader(ARROW_BATCH_ROWS):
            yield pa.Table.from_batches([batch])
        return
    with client.execute_query(sql) as cursor:
        yield from cursor.iter_arrow(chunk_size=ARROW_BATCH_ROWS)


def _as_contract_types(batch: pa.Table, contract: ResourceContract) -> pa.Table:
    """The staged rows with the contract's Arrow types and nullability, as the router hands
    dlt its batches (JSON lists come back from the database as text)."""
    import pyarrow as pa

    for field in contract.fields:
        index = batch.schema.get_field_index(field.name)
        column = batch.column(index)
        if field.type is FieldType.TEXT_LIST and pa.types.is_string(column.type):
            column = pa.array([_json(v) for v in column.to_pylist()], field.type.arrow_type)
        batch = batch.set_column(
            index, pa.field(field.name, field.type.arrow_type, nullable=field.nullable),
            column.cast(field.type.arrow_type),
        )
    return batch


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
