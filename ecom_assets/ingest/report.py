"""What a sync received, per resource: the numbers reconciliation and run metadata are built on."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Arrow is imported by a run's first loaded records (contract.py)
    import pyarrow as pa

    from ecom_assets.ingest.window import Window


@dataclass
class ResourceReport:
    """One resource's sync. The reader fills in what the vendor listed (`vendor_total` is its
    own count of the window, summed over the reconciled units); the router what was loaded and
    what was quarantined. Every record listed is either loaded or quarantined."""

    resource: str
    vendor_total: int = 0
    listed: int = 0  # records the reconciled units held
    requests: int = 0  # page requests sent, discarded passes included
    units: int = 0  # parts of the window reconciled one by one
    repaged: int = 0  # passes discarded because the vendor changed their part while paged
    complete: bool = False  # every unit reconciled with the vendor's `total`
    # The vendor's count of all its records, asked when a window listed none (None: not asked).
    vendor_holds: int | None = None
    empty_parts: list[Window] = field(default_factory=list)  # units the vendor listed none in
    days_listed: set[date] = field(default_factory=set)  # UTC days of the records' `updated_at`
    loaded: int = 0  # valid records handed to dlt
    defective: int = 0  # listed records that went to quarantine
    duplicate_copies: int = 0  # identical copies of a record the vendor served twice
    kept: int = 0  # a full refresh's rows kept for records whose current version is defective
    unknown_fields: dict[str, str] = field(default_factory=dict)  # vendor field -> column
    non_finite_unknown: Counter[str] = field(default_factory=Counter)  # field -> values
    _loaded_ids: list[pa.Array] = field(default_factory=list, repr=False)

    def __deepcopy__(self, memo: dict) -> ResourceReport:
        # dlt deep-copies the REST API config; the copies must count into this same report.
        return self

    def add_loaded_ids(self, ids: pa.Array | pa.ChunkedArray) -> None:
        """Ids of valid records handed to dlt. Kept as Arrow strings, a few bytes per record: a
        million ids in a Python set would cost some 70 MB."""
        import pyarrow as pa

        self._loaded_ids.extend(ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids])

    @property
    def loaded_ids(self) -> pa.ChunkedArray:
        import pyarrow as pa

        return pa.chunked_array(self._loaded_ids, pa.string())

    @property
    def distinct_loaded(self) -> int:
        """Records loaded, each counted once (a record that moved into a later part of the
        window while it was read is listed, and loaded, in both)."""
        if not self._loaded_ids:
            return 0
        import pyarrow.compute as pc

        return pc.count_distinct(self.loaded_ids).as_py()


class SyncReport(dict[str, ResourceReport]):
    """Reports by resource name, created on first use."""

    def __missing__(self, resource: str) -> ResourceReport:
        report = self[resource] = ResourceReport(resource)
        return report
