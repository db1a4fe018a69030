"""Route each vendor record to its table or, if it breaks the contract, to quarantine.

dlt alone offers three answers to a defective record, each wrong here: a stray variant column
(`amount__v_text`), failing the whole load (`freeze`), or dropping it without trace
(`discard_row`). Instead a defective record goes to `<resource>_quarantine` with the raw
record, the violations and the window, while the valid records of the same page still load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
import pyarrow as pa
from dlt.extract.items_transform import ItemTransform
from dlt.extract.resource import DltResource

from ecom_assets.contract import ResourceContract, conform
from ecom_assets.ingest.page import vendor_json
from ecom_assets.ingest.report import ResourceReport
from ecom_assets.ingest.window import Window

QUARANTINE_COLUMNS: dict[str, dict[str, Any]] = {
    "record_id": {"data_type": "text", "nullable": True},
    "violations": {"data_type": "json", "nullable": False},
    "raw_record": {"data_type": "text", "nullable": False},
    "window_start": {"data_type": "timestamp", "nullable": True},
    "window_end": {"data_type": "timestamp", "nullable": True},
    "quarantined_at": {"data_type": "timestamp", "nullable": False},
}


def add_quarantine(
    resource: DltResource, contract: ResourceContract, window: Window | None, report: ResourceReport
) -> None:
    """Route the resource's records through a `QuarantineRouter` into its table or into
    `<resource>_quarantine`, an append-only table variant of the resource.

    A dlt table variant starts as a copy of the resource's hints, so the contract's columns,
    primary key and merge disposition are cleared before the quarantine columns are set.
    """
    table = contract.quarantine_table
    resource.apply_hints(
        table_name=table,
        create_table_variant=True,
        columns={},
        primary_key=[],
        write_disposition="append",
    )
    resource.apply_hints(table_name=table, create_table_variant=True, columns=QUARANTINE_COLUMNS)
    resource.add_step(QuarantineRouter(contract, window, report))


ARROW_BATCH_SIZE = 10_000
# dlt's table hint: the staging data of a merge holds each primary key once.
DEDUPLICATED = "x-stage-data-deduplicated"


class _SkippedDedupSortFilter(logging.Filter):
    """Drops dlt's warning that the `dedup_sort` hint "will be ignored" because the staging
    data is declared deduplicated: that is the design, not a fault. The hint orders the
    versions of a record that a window paged again holds; a window paged once holds one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Staging data is declared as already deduplicated" not in record.getMessage()


logging.getLogger("dlt").addFilter(_SkippedDedupSortFilter())


def _as_text(value: Any) -> str | None:
    """An unknown field's value as text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return vendor_json(value)


def _arrow_page(
    contract: ResourceContract, records: list[dict[str, Any]], unknown: list[str]
) -> pa.Table:
    """Typed records as an Arrow table: contract columns with their contract types; unknown
    fields always as text, so their column type never depends on which values a batch held."""
    fields = [pa.field(f.name, f.type.arrow_type, nullable=f.nullable) for f in contract.fields]
    fields += [pa.field(name, pa.string()) for name in unknown]
    columns = [
        pa.array([r.get(f.name) for r in records], type=f.type.arrow_type)
        for f in contract.fields
    ]
    columns += [
        pa.array([_as_text(r.get(name)) for r in records], type=pa.string()) for name in unknown
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


class QuarantineRouter(ItemTransform[Any]):
    """A dlt pipe step: splits each page into its typed records and its quarantine rows.

    It works on whole pages and hands dlt each page's valid records as one Arrow table with
    the contract's types, which dlt writes straight to parquet: no per-record work in dlt.
    """

    def __init__(
        self, contract: ResourceContract, window: Window | None, report: ResourceReport
    ) -> None:
        super().__init__(self.__call__)
        self.contract = contract
        self.window = window
        self.report = report
        self._batch: list[dict[str, Any]] = []
        # A window paged again returns its defective records again: quarantine each once.
        self._quarantined: set[str] = set()

    def __call__(self, page: Any, meta: Any = None) -> Iterator[Any]:
        # Routed now, not in a generator dlt may resume later: dlt fetches the next page only
        # after this call, so this page is counted in the pass the paginator checked it in.
        return iter(self._route(page if isinstance(page, list) else [page]))

    def _route(self, page: list[Any]) -> list[Any]:
        """The page's valid records, batched into Arrow tables, and its quarantine rows."""
        quarantined = []
        known = self.contract.field_names
        for record in page:
            if not isinstance(record, dict):
                violations = [{"field": "", "reason": f"record is a {type(record).__name__}"}]
            else:
                typed, violations = conform(self.contract, record)
                if not violations:
                    self._batch.append(typed)
                    self.report.add_unknown_fields(k for k in record if k not in known)
                    continue
            row = self._quarantine_row(record, violations)
            first_time = row["raw_record"] not in self._quarantined
            self._quarantined.add(row["raw_record"])
            self.report.add_quarantined(first_time)
            if first_time:
                quarantined.append(row)
        routed = []
        # dlt does per-item schema work for Arrow tables, so pages are batched; the paginator
        # has seen this page already, so the window's last page flushes what is left.
        if self._batch and (self.report.complete or len(self._batch) >= ARROW_BATCH_SIZE):
            batch, self._batch = self._batch, []
            table = _arrow_page(self.contract, batch, sorted(self.report.unknown_fields))
            # A window reconciled in one pass holds each record once, so dlt's merge may skip
            # its deduplication, whose memory grows with the load. Every batch states the hint,
            # so a window paged again never inherits `True` from an earlier run's schema.
            hints = dlt.mark.make_hints(
                additional_table_hints={DEDUPLICATED: self.report.paged_once}
            )
            routed.append(dlt.mark.with_hints(table, hints))
        if quarantined:
            routed.append(dlt.mark.with_table_name(quarantined, self.contract.quarantine_table))
        return routed

    def _quarantine_row(self, record: Any, violations: list[dict[str, str]]) -> dict[str, Any]:
        record_id = record.get(self.contract.primary_key) if isinstance(record, dict) else None
        return {
            "record_id": record_id if isinstance(record_id, str) else None,
            "violations": violations,
            "raw_record": vendor_json(record),
            "window_start": self.window.start if self.window else None,
            "window_end": self.window.end if self.window else None,
            "quarantined_at": datetime.now(UTC),
        }
