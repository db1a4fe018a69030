"""Route each vendor record to its table or, if it breaks the contract, to quarantine.

dlt alone offers three answers to a defective record, each wrong here: a stray variant column
(`amount__v_text`), failing the whole load (`freeze`), or dropping it without trace
(`discard_row`). Instead a defective record goes to `<resource>_quarantine` with the raw record,
the reasons and the window, while the valid records of the same page still load. Quarantine
holds one row per distinct defective record (its exact content), however many runs see it,
with when it was first and last seen.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.extract.items_transform import ItemTransform
from dlt.extract.resource import DltResource

from ecom_assets.contract import ResourceContract, conform, conform_batch, json_type, storable
from ecom_assets.ingest.pages import DefectiveRecord, record_id
from ecom_assets.ingest.report import ResourceReport
from ecom_assets.ingest.vendor_json import RepeatedKeys, dump_vendor_json, is_non_finite
from ecom_assets.ingest.window import CLOCK_SKEW, Window, look_back, rfc3339

if TYPE_CHECKING:  # Arrow is imported by a run's first loaded records (contract.py)
    import pyarrow as pa

QUARANTINE_KEY = "quarantine_key"
QUARANTINE_COLUMNS: dict[str, dict[str, Any]] = {
    QUARANTINE_KEY: {"data_type": "text", "nullable": False},
    "record_id": {"data_type": "text", "nullable": True},
    "violations": {"data_type": "json", "nullable": False},
    "raw_record": {"data_type": "text", "nullable": False},
    "window_start": {"data_type": "timestamp", "nullable": True},
    "window_end": {"data_type": "timestamp", "nullable": True},
    "first_seen_at": {"data_type": "timestamp", "nullable": False},
    "last_seen_at": {"data_type": "timestamp", "nullable": False},
}
ARROW_BATCH_SIZE = 10_000
# A batch that breaks the contract somewhere is checked again in parts of this many records (a
# vendor page), and only a part that breaks it record by record.
RECHECKED_IN_PARTS_OF = 100
# A column hint, stored by dlt with the table's schema: the vendor field a column for a field the
# contract does not know holds, so that every later load puts that field, and only it, there.
VENDOR_FIELD_HINT = "x-vendor-field"
# dlt's table hint: the staging data of a merge holds each primary key once.
DEDUPLICATED = "x-stage-data-deduplicated"
# (table, key column, cursor column, ids, their cursor values, as Arrow arrays) -> the ids the
# table holds a later version of, with its time; None if there is no table yet (a first load),
# which no table appears in while the run reads.
HeldNewer = Callable[[str, str, str, Any, Any], Mapping[str, datetime] | None]


def quarantine_key(resource: str, raw_record: str) -> str:
    """One quarantine row per distinct defective record: its resource and exact content."""
    return hashlib.sha256(f"{resource}\0{raw_record}".encode()).hexdigest()[:32]


def add_quarantine(
    resource: DltResource,
    contract: ResourceContract,
    window: Window,
    report: ResourceReport,
    first_seen: Callable[[str], Mapping[str, datetime]],
    now: datetime,
    stored_columns: Callable[[str], Mapping[str, str | None]] = lambda table: {},
    held_newer: HeldNewer = lambda table, key, cursor, ids, stamps: None,
    late_arrival: timedelta = timedelta(0),
) -> None:
    """Route the resource's records through a `QuarantineRouter` into its table or into
    `<resource>_quarantine`, a table variant of the resource merged on `quarantine_key`.

    A dlt table variant starts as a copy of the resource's hints, so the contract's columns
    are cleared before the quarantine columns are set.
    """
    table = contract.quarantine_table
    resource.apply_hints(
        table_name=table,
        create_table_variant=True,
        columns={},
        primary_key=[QUARANTINE_KEY],
        write_disposition="merge",
    )
    resource.apply_hints(table_name=table, create_table_variant=True, columns=QUARANTINE_COLUMNS)
    resource.add_step(QuarantineRouter(
        contract, window, report, first_seen, now,
        stored_columns=partial(stored_columns, contract.name),
        held_newer=partial(held_newer, contract.name, contract.primary_key, contract.cursor),
        overtaken_by_more_than=look_back(late_arrival),
    ))


_NAMING = NamingConvention()


def vendor_field_hint(field: str) -> str:
    """The vendor field a column holds, as its hint records it: dlt's schema is JSON, which
    cannot hold a lone surrogate or a NUL, so those are written as their escapes."""
    return storable(field)


def _column_name(name: str) -> str | None:
    """`name` as dlt names columns (snake_case); None for a name dlt cannot use (`""`)."""
    try:
        return _NAMING.normalize_identifier(name) or None
    except ValueError:
        return None


class UnknownFieldColumns:
    """Columns for the fields the contract does not know, named as dlt names columns, without
    ever landing on another column: a name whose normal form is taken (`customerId` beside the
    contract's `customer_id`, `ID`, `updated-at`, two spellings of one new field, a column the
    table already has) gets a `vendor_` prefix, then a number. A field that earlier loads gave
    a column keeps it, whatever other fields a run brings: `stored_columns` gives the table's
    columns with the vendor field each holds (`VENDOR_FIELD_HINT`, None where none is
    recorded), read when a run first meets a new field. The mapping is kept in the report."""

    def __init__(
        self,
        contract: ResourceContract,
        mapping: dict[str, str],
        stored_columns: Callable[[], Mapping[str, str | None]] = dict,
    ) -> None:
        self._mapping = mapping
        self._contract_fields = contract.field_names
        self._taken = set(self._contract_fields) | set(mapping.values())
        self._read_stored_columns = stored_columns
        self._recorded: dict[str, str] | None = None  # field -> column, once a run needs it

    def add(self, fields: set[str]) -> None:
        new = fields - self._mapping.keys()
        if not new:
            return
        if self._recorded is None:
            stored = self._read_stored_columns()
            self._taken |= stored.keys()
            # A column the contract has since adopted is the contract's, not the field's.
            self._recorded = {
                field: column for column, field in stored.items()
                if field is not None and column not in self._contract_fields
            }
        for field in new:
            column = self._recorded.get(vendor_field_hint(field))
            if column is not None:
                self._mapping[field] = column
        # Fields already in normal form first: they keep their own name.
        for field in sorted(new - self._mapping.keys(), key=lambda f: (_column_name(f) != f, f)):
            base = _column_name(field)
            name = base or "vendor_field"  # a name dlt cannot use: "" or " "
            if name in self._taken or name.startswith("_dlt"):
                name = _column_name(f"vendor_{base}") or "vendor_field"
            number = 1
            while name in self._taken:
                number += 1
                name = f"{_column_name(f'vendor_{base}') or 'vendor_field'}_{number}"
            self._taken.add(name)
            self._mapping[field] = name

    def __getitem__(self, field: str) -> str:
        return self._mapping[field]


class QuarantineRouter(ItemTransform[Any]):
    """A dlt pipe step: splits each page into its typed records and its quarantine rows.

    It hands dlt the valid records as Arrow tables with the contract's types, which dlt writes
    straight to parquet: no per-record work in dlt.
    """

    def __init__(
        self,
        contract: ResourceContract,
        window: Window,
        report: ResourceReport,
        first_seen: Callable[[str], Mapping[str, datetime]],
        now: datetime,
        stored_columns: Callable[[], Mapping[str, str | None]] = dict,
        held_newer: Callable[[Any, Any], Mapping[str, datetime] | None] = (
            lambda ids, stamps: None
        ),
        overtaken_by_more_than: timedelta = CLOCK_SKEW,
    ) -> None:
        super().__init__(self.__call__)
        self.contract = contract
        self.window = window
        self.report = report
        self._first_seen_in_warehouse = first_seen
        self._first_seen: Mapping[str, datetime] | None = None  # asked for when needed
        self._now = now
        self._known = contract.field_names
        self._unknown = UnknownFieldColumns(contract, report.unknown_fields, stored_columns)
        self._records: list[Any] = []  # released records, routed a batch at a time
        self._batches_due = 0  # handed to dlt, not yet converted
        self._held_newer: Callable[..., Mapping[str, datetime] | None] | None = held_newer
        self._overtaken_by_more_than = overtaken_by_more_than
        self._quarantined: set[str] = set()  # keys written this run
        self._cursor_column = [f.name for f in contract.fields].index(contract.cursor)

    def __call__(self, page: Any, meta: Any = None) -> Iterator[Any]:
        """Once the window is read or a batch is due, its records' valid ones as Arrow tables
        and its quarantine rows. dlt does per-item schema work for Arrow tables, and
        `conform_batch` costs less per record the more records it is given."""
        self._records += page if isinstance(page, list) else [page]
        # Read now, not when dlt resumes the batches: the reader has released this page, so
        # `report.complete` says whether it is the window's last.
        if not (self.report.complete or len(self._records) >= ARROW_BATCH_SIZE):
            return iter(())
        records, self._records = self._records, []
        batches = deque(
            records[start : start + ARROW_BATCH_SIZE]
            for start in range(0, len(records), ARROW_BATCH_SIZE)
        )
        self._batches_due += len(batches)
        return self._routed(batches)

    def _routed(self, batches: deque[list[Any]]) -> Iterator[Any]:
        """Each batch converted when dlt asks for it, and let go of once dlt has its items: a
        reconciled unit comes as one page, which in one bulk-updated millisecond holds up to a
        million records, and Arrow holds one batch of them at a time."""
        while batches:  # a run with nothing to load never gets here, nor imports Arrow
            yield from self._converted(batches.popleft())

    def _converted(self, records: list[Any]) -> list[Any]:
        """The batch's valid records as one Arrow table, and its quarantine rows."""
        quarantined: list[dict[str, Any]] = []
        table, raw = self._typed(records, quarantined)
        self._batches_due -= 1
        converted: list[Any] = []
        if raw:
            converted.append(self._hand_over(table, raw, quarantined))
        if quarantined:
            converted.append(dlt.mark.with_table_name(quarantined, self.contract.quarantine_table))
        return converted

    def _typed(
        self, records: list[Any], quarantined: list[dict[str, Any]]
    ) -> tuple[pa.Table, list[dict[str, Any]]]:
        """The valid `records` as an Arrow table and as the vendor sent them, row for row; the
        others quarantined. Checked as one batch, else in parts, and record by record only in
        a part `conform_batch` refused (one with a defective record)."""
        import pyarrow as pa

        whole = self._checked(records)
        parts = [records] if whole is not None else [
            records[start : start + RECHECKED_IN_PARTS_OF]
            for start in range(0, len(records), RECHECKED_IN_PARTS_OF)
        ]
        columns: list[list[pa.Array]] = [[] for _ in self.contract.fields]
        raw: list[dict[str, Any]] = []
        # Part by part in order: fields the contract does not know get their columns in the
        # order records bring them, as `_conform` gives them.
        for part in parts:
            arrays = whole if whole is not None else self._checked(part)
            valid = part
            if arrays is None:
                typed, valid = self._conformed(part, quarantined)
                arrays = [
                    pa.array([r.get(f.name) for r in typed], f.type.arrow_type)
                    for f in self.contract.fields
                ]
            for column, array in zip(columns, arrays, strict=True):
                column.append(array)
            raw += valid
        return self._arrow(columns, raw), raw

    def _checked(self, records: list[Any]) -> list[pa.Array] | None:
        """`conform_batch`'s arrays if every record's `updated_at` lies in the window (then the
        fields they bring that the contract does not know are noted, as `_conform` notes
        them), else None."""
        arrays = conform_batch(self.contract, records)
        if arrays is None:
            return None
        import pyarrow as pa
        import pyarrow.compute as pc

        cursor = arrays[self._cursor_column]
        earliest, latest = (value.as_py() for value in pc.min_max(cursor).values())
        if not (self.window.contains(earliest) and self.window.contains(latest)):
            return None
        self.report.days_listed.update(pc.unique(pc.cast(cursor, pa.date32())).to_pylist())
        for record in records:
            if not record.keys() <= self._known:
                self._note_unknown(record, record.keys() - self._known)
        return arrays

    def _conformed(
        self, records: list[Any], quarantined: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The valid records, typed and as sent; the others quarantined, every violation
        named."""
        typed_records, raw = [], []
        for record in records:
            typed, violations = self._conform(record)
            if not violations:
                typed_records.append(typed)
                raw.append(record)
                continue
            sent = record.record if isinstance(record, DefectiveRecord) else record
            self._quarantine(sent, violations, quarantined)
        return typed_records, raw

    def _quarantine(
        self, raw: Any, violations: list[dict[str, str]], quarantined: list[dict[str, Any]]
    ) -> None:
        self.report.defective += 1
        row = self._quarantine_row(raw, violations)
        if row[QUARANTINE_KEY] not in self._quarantined:
            self._quarantined.add(row[QUARANTINE_KEY])
            quarantined.append(row)

    def _overtaken(
        self, table: pa.Table, raw: list[dict[str, Any]], quarantined: list[dict[str, Any]]
    ) -> pa.Table:
        """The table without the records whose id the warehouse holds in a version filed
        later, by more than a late arrival or the vendor's clocks explain: the vendor served
        an older copy (a twin read by another run, or a step back in time), which a merge
        would write over the newer row. They go to quarantine; the row stays."""
        if self._held_newer is None:
            return table
        ids, stamps = table.column(self.contract.primary_key), table.column(self.contract.cursor)
        held = self._held_newer(ids, stamps)
        if held is None:  # a first load: not asked again (each asking opens a connection)
            self._held_newer = None
        if not held:
            return table
        kept = [True] * table.num_rows
        for row, identifier in enumerate(ids.to_pylist()):
            later = held.get(identifier)
            if later is not None and later - stamps[row].as_py() > self._overtaken_by_more_than:
                kept[row] = False
                self._quarantine(raw[row], [{
                    "field": self.contract.cursor,
                    "reason": f"the table holds a later version of this id ({rfc3339(later)}): "
                    "the vendor served an older copy, a twin or a step back in time",
                }], quarantined)
        import pyarrow as pa

        return table.filter(pa.array(kept))

    def _conform(self, record: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
        if isinstance(record, DefectiveRecord):
            return {}, [{"field": self.contract.primary_key, "reason": record.reason}]
        if not isinstance(record, dict):
            reason = f"the record is {json_type(record)}, not an object"
            return {}, [{"field": "", "reason": reason}]
        typed, violations = conform(self.contract, record)
        if isinstance(record, RepeatedKeys):
            violations += repeated_key_violations(record)
        cursor = typed.get(self.contract.cursor)
        if isinstance(cursor, datetime):
            self.report.days_listed.add(cursor.date())
            if not self.window.contains(cursor):
                violations.append({
                    "field": self.contract.cursor,
                    "reason": f"{rfc3339(cursor)} lies outside the window {self.window} that "
                    "listed it (a wrong or far-future timestamp)",
                })
        # Most records hold only the contract's fields: a subset test allocates nothing.
        if not violations and not record.keys() <= self._known:
            self._note_unknown(record, record.keys() - self._known)
        return typed, violations

    def _note_unknown(self, record: dict[str, Any], fields: set[str]) -> None:
        """Columns for a valid record's fields that the contract does not know, in the order
        records bring them, and a count of their non-finite values."""
        self._unknown.add(fields)
        for field in fields:
            if is_non_finite(record[field]):
                self.report.non_finite_unknown[field] += 1

    def _hand_over(
        self, table: pa.Table, raw: list[dict[str, Any]], quarantined: list[dict[str, Any]]
    ) -> pa.Table:
        table = self._overtaken(table, raw, quarantined)
        self.report.loaded += table.num_rows
        self.report.add_loaded_ids(table.column(self.contract.primary_key))
        # A load whose records are each listed once lets dlt's merge skip its deduplication,
        # whose memory grows with the load. The window's last batch states the hint that
        # counts (the last one stated wins; dlt may interleave the batches of two flushes,
        # and the window is read once the reader released its last page, which dlt routes at
        # once); earlier ones state `False`, so that a load never inherits `True` from an
        # earlier run's schema, and the ids are counted once per window rather than at every
        # batch (quadratic in the window's size).
        deduplicated = (
            self.report.complete and not self._batches_due
            and self.report.distinct_loaded == self.report.loaded
        )
        hints = dlt.mark.make_hints(
            additional_table_hints={DEDUPLICATED: deduplicated},
            columns=[
                {"name": column, "data_type": "text", "nullable": True,
                 VENDOR_FIELD_HINT: vendor_field_hint(field)}
                for field, column in self.report.unknown_fields.items()
            ] or None,
        )
        return dlt.mark.with_hints(table, hints)

    def _arrow(self, columns: list[list[pa.Array]], raw: list[dict[str, Any]]) -> pa.Table:
        """Contract columns, in chunks, with their contract types; unknown fields, read from
        the records as sent, always as text, so their column type never depends on which
        values a batch held."""
        import pyarrow as pa

        fields = [
            pa.field(f.name, f.type.arrow_type, nullable=f.nullable) for f in self.contract.fields
        ]
        arrays = [
            pa.chunked_array(chunks, f.type.arrow_type)
            for f, chunks in zip(self.contract.fields, columns, strict=True)
        ]
        unknown = sorted(self.report.unknown_fields.items(), key=lambda item: item[1])
        fields += [pa.field(column, pa.string()) for _, column in unknown]
        arrays += [
            pa.chunked_array([pa.array([_as_text(r.get(field)) for r in raw], pa.string())])
            for field, _ in unknown
        ]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _quarantine_row(self, record: Any, violations: list[dict[str, str]]) -> dict[str, Any]:
        raw = dump_vendor_json(record)
        key = quarantine_key(self.contract.name, raw)
        if self._first_seen is None:  # the run's first defective record: rare, so read now
            self._first_seen = self._first_seen_in_warehouse(self.contract.quarantine_table)
        identifier = record_id(record, self.contract.primary_key)
        return {
            QUARANTINE_KEY: key,
            "record_id": identifier and storable(identifier),
            "violations": violations,
            "raw_record": raw,
            "window_start": self.window.start,
            "window_end": self.window.end,
            "first_seen_at": self._first_seen.get(key, self._now),
            "last_seen_at": self._now,
        }


def repeated_key_violations(record: RepeatedKeys) -> list[dict[str, str]]:
    """A record that names a field twice with different values: which one the vendor meant
    is unknown (a reader keeps the last)."""
    return [
        {"field": name, "reason": "named twice in the record, with different values"}
        for name in record.repeated
    ] + [
        {"field": name, "reason": "holds an object that names a key twice, with different "
         "values"}
        for name in record.holding
    ]


def _as_text(value: Any) -> str | None:
    """An unknown field's value as text: strings as they are (a lone surrogate as its escape,
    `\\ud800`), anything else as its JSON (a non-finite number as the vendor's token, `NaN`)."""
    if value is None:
        return None
    return storable(value) if isinstance(value, str) else dump_vendor_json(value)
