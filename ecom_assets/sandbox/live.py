"""`--live`: a sandbox whose vendor keeps creating and updating records while it runs.

Live records are created with `updated_at` = now, after everything in the generated data set
(whose span lies in the past), and an update moves a live record to now as a real vendor's
would. So the live records always follow the data set in the vendor's (updated_at, id) order.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_left, insort
from datetime import UTC, datetime
from typing import Any

from .data import RESOURCES, Dataset, Record, parse_timestamp_ms

_ID_PREFIX = {"order_payments": "pay_", "products": "prd_"}


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _rfc3339(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class LiveFeed:
    """Per resource, the live records sorted by (updated_at, id), with a ticking thread."""

    def __init__(
        self, dataset: Dataset, interval_s: float | None, per_tick: int, seed: int = 7
    ) -> None:
        self._dataset = dataset
        self._interval_s = interval_s
        self._per_tick = per_tick
        self._rng = random.Random(seed)
        self._keys: dict[str, list[tuple[int, str]]] = {r: [] for r in RESOURCES}
        self._records: dict[str, dict[str, Record]] = {r: {} for r in RESOURCES}
        self._next_number = {r: dataset.size(r) + 1 for r in RESOURCES}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-live", daemon=True)

    def start(self) -> None:
        """Tick every `interval_s` seconds; without an interval the feed changes only when
        told to (`tick`, `move_to_now`)."""
        if self._interval_s:
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def records(self, resource: str, since: str | None, before: str | None) -> list[Record]:
        """Live records with since <= updated_at < before, in (updated_at, id) order."""
        with self._lock:
            keys = self._keys[resource]
            lo = 0 if since is None else bisect_left(keys, (parse_timestamp_ms(since), ""))
            hi = len(keys) if before is None else bisect_left(
                keys, (parse_timestamp_ms(before), "")
            )
            return [self._records[resource][record_id] for _, record_id in keys[lo:hi]]

    def move_to_now(self, resource: str, record: Record) -> None:
        """A record of the data set is updated now: from here on it is a live record."""
        with self._lock:
            if record["id"] in self._records[resource]:
                self._touch(resource, record["id"])
                return
            now = _now_ms()
            self._records[resource][record["id"]] = {**record, "updated_at": _rfc3339(now)}
            insort(self._keys[resource], (now, record["id"]))

    def tick(self) -> None:
        """Create `per_tick` records per resource and update one existing live record."""
        with self._lock:
            for resource in RESOURCES:
                for _ in range(self._per_tick):
                    self._create(resource)
                if self._records[resource]:
                    self._touch(resource, self._rng.choice(sorted(self._records[resource])))

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.tick()

    def _create(self, resource: str) -> None:
        template = self._rng.choice(self._dataset.slice(resource, 0, 100))
        number = self._next_number[resource]
        self._next_number[resource] += 1
        width = 8 if resource == "order_payments" else 7
        now = _now_ms()
        record: dict[str, Any] = {
            **template,
            "id": f"{_ID_PREFIX[resource]}{number:0{width}d}",
            "created_at": _rfc3339(now),
            "updated_at": _rfc3339(now),
        }
        self._records[resource][record["id"]] = record
        insort(self._keys[resource], (now, record["id"]))

    def _touch(self, resource: str, record_id: str) -> None:
        record = self._records[resource][record_id]
        self._keys[resource].remove((parse_timestamp_ms(record["updated_at"]), record_id))
        now = _now_ms()
        self._records[resource][record_id] = {**record, "updated_at": _rfc3339(now)}
        insort(self._keys[resource], (now, record_id))
