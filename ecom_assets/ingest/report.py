"""What a sync received, per resource: the numbers reconciliation and run metadata are built on."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class ResourceReport:
    """Counts of one resource's sync. A window paged again (records moved while it was paged)
    is fetched more than once: `received` counts the final, reconciled pass (`valid` of them
    loaded, `quarantined_received` defective); `fetched` and `quarantined_fetched` count every
    pass, which is what dlt loads before its merge on `id` keeps one row per record."""

    resource: str
    vendor_total: int | None = None
    pages: int = 0
    received: int = 0
    quarantined: int = 0  # distinct defective records, one quarantine row each
    quarantined_received: int = 0  # the defective records among `received`
    fetched: int = 0
    quarantined_fetched: int = 0
    complete: bool = False  # the window was paged to its end, reconciled with `total`
    unknown_fields: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _pass_ended: bool = field(default=False, repr=False, compare=False)

    def __deepcopy__(self, memo: dict) -> ResourceReport:
        # dlt deep-copies the REST API config; the copies must count into this same report.
        return self

    @property
    def valid(self) -> int:
        return self.received - self.quarantined_received

    @property
    def paged_once(self) -> bool:
        """The window was reconciled in a single pass: every record fetched is distinct."""
        return self.complete and self.fetched == self.received

    def add_page(self, records: int) -> None:
        with self._lock:
            if self._pass_ended:  # the first page of the window's next pass
                self.quarantined_received = 0
                self._pass_ended = False
            self.pages += 1
            self.received += records
            self.fetched += records

    def restart_window(self) -> None:
        with self._lock:
            self.received = 0
            self.vendor_total = None
            # The page that ended the pass is routed (its defective records counted) after
            # this, and before the next pass's first page arrives.
            self._pass_ended = True

    def add_unknown_fields(self, names: Iterable[str]) -> None:
        """Fields the vendor sent that the contract does not declare."""
        self.unknown_fields.update(names)

    def add_quarantined(self, first_time: bool) -> None:
        """A defective record was fetched; `first_time` unless an earlier pass had it too."""
        with self._lock:
            self.quarantined_fetched += 1
            self.quarantined_received += 1
            self.quarantined += first_time


class SyncReport(dict[str, ResourceReport]):
    """Reports by resource name, created on first use."""

    def __missing__(self, resource: str) -> ResourceReport:
        report = self[resource] = ResourceReport(resource)
        return report
