"""Route each vendor record to its table or, if it breaks the contract, to quarantine.

dlt alone offers three answers to a defective record, each wrong here: a stray variant column
(`amount__v_text`), failing the whole load (`freeze`), or dropping it without trace
(`discard_row`). Instead a defective record goes to `<resource>_quarantine` with the raw
record, the violations and the window, while the valid records of the same page still load.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from ecom_assets.contract import ResourceContract, conform
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


def add_quarantine_table(resource: DltResource, contract: ResourceContract) -> None:
    """Declare `<resource>_quarantine` as an append-only table variant of the resource.

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


class QuarantineRouter:
    """A dlt `yield_map` step: yields the typed record, or a quarantine row in its place."""

    def __init__(
        self, contract: ResourceContract, window: Window | None, report: ResourceReport
    ) -> None:
        self.contract = contract
        self.window = window
        self.report = report

    def __call__(self, record: Any) -> Iterator[Any]:
        if not isinstance(record, dict):
            violations = [{"field": "", "reason": f"record is a {type(record).__name__}"}]
        else:
            typed, violations = conform(self.contract, record)
            if not violations:
                yield typed
                return
        self.report.add_quarantined()
        yield dlt.mark.with_table_name(
            self._quarantine_row(record, violations), self.contract.quarantine_table
        )

    def _quarantine_row(self, record: Any, violations: list[dict[str, str]]) -> dict[str, Any]:
        record_id = record.get(self.contract.primary_key) if isinstance(record, dict) else None
        return {
            "record_id": record_id if isinstance(record_id, str) else None,
            "violations": violations,
            "raw_record": json.dumps(record, ensure_ascii=False, sort_keys=True, default=str),
            "window_start": self.window.start if self.window else None,
            "window_end": self.window.end if self.window else None,
            "quarantined_at": datetime.now(timezone.utc),
        }
