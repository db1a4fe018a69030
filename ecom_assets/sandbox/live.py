"""The live shop: what the vendor holds now, the generated data set plus every change since.

The generated `Dataset` never changes. On top of it, per resource:

- `_Removed`, a Fenwick tree over the data set's sorted positions that marks the records that
  left their place (updated, so they moved; or deleted). Counting the removed records before a
  position and finding the k-th remaining one are O(log n).
- the overlay, a sorted list of (updated_at ms, id number, copy) keys: the records changed or
  created while the sandbox runs (copy 0), and the second copies a vendor bug serves of some
  records (copy 1, 2, ...: right after the record, or at their own `updated_at` if they have
  one).

Every page is the merge of the two, in (updated_at, id) order; its `total` and its records are
selected under one lock that every change also takes, so a page and its total always describe
the same instant (`version` counts the changes; responses carry it). Selecting a page costs
O(log² n + page size), whatever the number of changed records. The records themselves are
built after the lock is released, from the immutable state the selection captured.

A change moves a record's `updated_at` to now (or, with `late_arrival_ms`, to a moment up to
that long before now), so it leaves the window it was in and the records behind it shift by one
offset; a creation adds a record with updated_at = now. They happen on demand (`tick`,
`move_to_now`, `SandboxServer.update_now`) and, with a tick interval or rates, from a
background thread.
"""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_left, insort
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import simplejson

from .data import Bound, Dataset, Record, format_timestamp_ms, parse_timestamp_ms

OMIT: Any = object()
"""A `corrupt()` or `duplicate()` field value: leave the field out of the record."""


class Twice(NamedTuple):
    """A `corrupt()` or `duplicate()` field value: the field named twice in the record, with
    `first`, then `second` (an encoder's bug; JSON readers keep one of the two)."""

    first: Any
    second: Any

    def as_json(self, name: str) -> simplejson.RawJSON:
        """The field's value, then its name and second value, as the text that follows the
        name's first `"name":` in the record."""
        def dumped(value: Any) -> str:
            return simplejson.dumps(value, separators=(",", ":"), use_decimal=True)

        return simplejson.RawJSON(f"{dumped(self.first)},{dumped(name)}:{dumped(self.second)}")

# How often the background thread applies the changes due at the configured rates.
_BATCH_INTERVAL_S = 0.02
# Past this many removed positions in a row, find the next record through the tree.
_SCAN_LIMIT = 32


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Change(NamedTuple):
    """One change of the live shop, as the journal keeps it (`LiveFeed(journal=True)`).
    `version` is the shop's version right after it; `updated_ms` is None for a deletion."""

    version: int
    resource: str
    record_id: str
    number: int
    kind: str  # "create", "update", "delete"
    updated_ms: int | None


class _Removed:
    """The set of removed positions among 0..n-1, as a Fenwick tree of counts."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self._tree: list[int] = []  # allocated on the first removal
        self._flags = bytearray()
        self._top = 1 << max(size.bit_length() - 1, 0)

    def __contains__(self, position: int) -> bool:
        return bool(self.count) and bool(self._flags[position])

    def add(self, position: int) -> None:
        if not self._tree:
            self._tree = [0] * (self.size + 1)
            self._flags = bytearray(self.size)
        if self._flags[position]:
            return
        self._flags[position] = 1
        self.count += 1
        tree, index = self._tree, position + 1
        while index <= self.size:
            tree[index] += 1
            index += index & -index

    def before(self, position: int) -> int:
        """How many positions < `position` are removed."""
        if not self.count:
            return 0
        tree, total = self._tree, 0
        while position > 0:
            total += tree[position]
            position &= position - 1
        return total

    def select(self, rank: int) -> int:
        """The position of the remaining record with 0-based `rank`, or `size` if none."""
        if not self.count:
            return min(rank, self.size)
        tree, position, wanted, step = self._tree, 0, rank + 1, self._top
        while step:
            candidate = position + step
            if candidate <= self.size:
                kept = step - tree[candidate]
                if kept < wanted:
                    position, wanted = candidate, wanted - kept
            step >>= 1
        return position

    def next_kept(self, position: int) -> int:
        """The first remaining position >= `position` (or `size`)."""
        if not self.count:
            return position
        flags, stop = self._flags, min(position + _SCAN_LIMIT, self.size)
        while position < stop:
            if not flags[position]:
                return position
            position += 1
        if position >= self.size:
            return self.size
        return self.select(position - self.before(position))


# What a page's selection captures, enough to build its records outside the lock:
# (number, current ms, base position or -1, origin ms, created?, copy, defects, copy fields)
_Entry = tuple[int, int, int, int, bool, int, dict[str, Any] | None, dict[str, Any] | None]


class _Shop:
    """The current state of one resource. Not thread-safe: `LiveFeed` holds the lock."""

    def __init__(self, dataset: Dataset, resource: str) -> None:
        self.dataset = dataset
        self.resource = resource
        self.spec = dataset.builders[resource].resource
        self.cursor = dataset.contracts[resource].cursor
        self.keys = dataset.keys(resource)
        self.numbers = dataset.numbers(resource)
        self.size = len(self.keys)
        self.removed = _Removed(self.size)
        self.overlay: list[tuple[int, int, int]] = []
        # id number -> (updated_at ms, ms the record was built with, created live?)
        self.live: dict[int, tuple[int, int, bool]] = {}
        self.copies: dict[int, list[dict[str, Any]]] = {}
        # (id number, copy) -> updated_at ms of a copy filed at its own time, not the record's
        self.filed: dict[tuple[int, int], int] = {}
        self.defects: dict[int, dict[str, Any]] = {}
        self.deleted: set[int] = set()
        self.next_number = self.size + 1
        self.empty = False

    # -- reading -------------------------------------------------------------------------

    def select(
        self, since_ms: int | None, before_ms: int | None, offset: int, limit: int
    ) -> tuple[int, list[_Entry]]:
        """The window's total and the entries at [offset, offset + limit) of its records."""
        keys, numbers, overlay, removed = self.keys, self.numbers, self.overlay, self.removed
        lo = 0 if since_ms is None else bisect_left(keys, since_ms)
        hi = self.size if before_ms is None else max(lo, bisect_left(keys, before_ms))
        olo = 0 if since_ms is None else bisect_left(overlay, (since_ms,))
        ohi = len(overlay) if before_ms is None else max(olo, bisect_left(overlay, (before_ms,)))
        removed_lo = removed.before(lo)
        first_rank = lo - removed_lo
        n_base = hi - lo - (removed.before(hi) - removed_lo)
        n_over = ohi - olo
        total = n_base + n_over
        if offset >= total:
            return total, []

        def base_key(rank: int) -> tuple[int, int, int]:
            position = removed.select(first_rank + rank)
            return keys[position], numbers[position], 0

        # How many of the window's first `offset` records are data set records: the smallest
        # b whose next base record does not precede the overlay record ending the prefix.
        b_lo, b_hi = max(0, offset - n_over), min(offset, n_base)
        while b_lo < b_hi:
            b = (b_lo + b_hi) // 2
            if base_key(b) < overlay[olo + offset - b - 1]:
                b_lo = b + 1
            else:
                b_hi = b
        position = removed.select(first_rank + b_lo) if b_lo < n_base else hi
        o = olo + offset - b_lo
        entries: list[_Entry] = []
        while len(entries) < limit:
            if position < hi and (
                o >= ohi or (keys[position], numbers[position], 0) < overlay[o]
            ):
                number = numbers[position]
                entries.append(self._entry(number, keys[position], position, 0))
                position = removed.next_kept(position + 1)
            elif o < ohi:
                ms, number, copy = overlay[o]
                entries.append(self._entry(number, ms, -1, copy))
                o += 1
            else:
                break
        return total, entries

    def _entry(self, number: int, ms: int, position: int, copy: int) -> _Entry:
        live = self.live.get(number) if position < 0 else None
        origin, created = (live[1], live[2]) if live else (ms, False)
        if copy and live is None and position < 0:  # a copy of a data set record in place
            position = self.dataset.position(self.resource, number)
        fields = self.copies[number][copy - 1] if copy else None
        return (number, ms, position, origin, created, copy, self.defects.get(number), fields)

    def build(self, entries: list[_Entry]) -> list[Record]:
        """The records of selected entries (no lock needed: entries are immutable)."""
        dataset, resource, cursor = self.dataset, self.resource, self.cursor
        records = []
        for number, ms, position, origin, created, copy, defects, fields in entries:
            if position >= 0:
                record = dataset.record_at(resource, position)
            else:
                record = dataset.build(resource, number, origin, created)
                if ms != origin:
                    record[cursor] = format_timestamp_ms(ms)
            if defects:
                record = _patched(record, defects)
            if copy:
                record = _patched(record, fields or {})
            records.append(record)
        return records

    def live_entries(self, since_ms: int | None, before_ms: int | None) -> list[_Entry]:
        overlay = self.overlay
        lo = 0 if since_ms is None else bisect_left(overlay, (since_ms,))
        hi = len(overlay) if before_ms is None else max(lo, bisect_left(overlay, (before_ms,)))
        # Without defects: the records as the shop holds them.
        return [
            (number, ms, -1, *self.live[number][1:], 0, None, None)
            for ms, number, copy in overlay[lo:hi]
            if copy == 0
        ]

    # -- changing ------------------------------------------------------------------------

    def number(self, record_id: str) -> int:
        number = self.spec.number(record_id)
        if not 1 <= number < self.next_number or number in self.deleted:
            raise ValueError(f"no {self.resource} record {record_id!r}")
        return number

    def current_ms(self, number: int) -> int:
        if number in self.live:
            return self.live[number][0]
        return self.keys[self.dataset.position(self.resource, number)]

    def _following(self, number: int, first_copy: int) -> list[int]:
        """The record (copy 0) and its copies from `first_copy` on that move with it."""
        copies = range(first_copy, len(self.copies.get(number, ())) + 1)
        return [copy for copy in copies if (number, copy) not in self.filed]

    def _drop(self, ms: int, number: int, first_copy: int) -> None:
        """Take the record's overlay keys (from copy `first_copy` on) out of the overlay."""
        for copy in self._following(number, first_copy):
            del self.overlay[bisect_left(self.overlay, (ms, number, copy))]

    def _place(self, ms: int, number: int, first_copy: int) -> None:
        for copy in self._following(number, first_copy):
            insort(self.overlay, (ms, number, copy))

    def move(self, number: int, ms: int, position: int | None = None) -> None:
        """The record's `updated_at` becomes `ms`."""
        if number in self.live:
            old_ms, origin, created = self.live[number]
            self._drop(old_ms, number, 0)
            self.live[number] = (ms, origin, created)
        else:
            if position is None:
                position = self.dataset.position(self.resource, number)
            self.removed.add(position)
            self._drop(self.keys[position], number, 1)
            self.live[number] = (ms, self.keys[position], False)
        self._place(ms, number, 0)

    def create(self, ms: int) -> int | None:
        """A new record with updated_at `ms`; None once the ids' padding is used up (ids
        would no longer sort in sequence order)."""
        number = self.next_number
        if number > self.spec.capacity:
            return None
        self.next_number += 1
        self.live[number] = (ms, ms, True)
        insort(self.overlay, (ms, number, 0))
        return number

    def delete(self, number: int) -> None:
        if number in self.live:
            ms, _, _ = self.live.pop(number)
            self._drop(ms, number, 0)
        else:
            position = self.dataset.position(self.resource, number)
            self.removed.add(position)
            self._drop(self.keys[position], number, 1)
        for copy in range(1, len(self.copies.pop(number, ())) + 1):
            if (ms := self.filed.pop((number, copy), None)) is not None:
                del self.overlay[bisect_left(self.overlay, (ms, number, copy))]
        self.deleted.add(number)

    def copy(self, number: int, fields: dict[str, Any]) -> None:
        """A second record with the same id: right after the record, or filed at its own
        `updated_at` (a timestamp string in `fields`), where an ORDER BY puts it."""
        try:
            filed = parse_timestamp_ms(fields.get(self.cursor))  # type: ignore[arg-type]
        except (TypeError, ValueError):  # none, or a defective one: the copy follows its record
            filed = None
        copies = self.copies.setdefault(number, [])
        copies.append(fields)
        if filed is not None:
            self.filed[number, len(copies)] = filed
        insort(self.overlay, (self.current_ms(number) if filed is None else filed, number,
                              len(copies)))

    def pick(self, rng: random.Random) -> tuple[int, int | None] | None:
        """A random existing record (data set or live): its number and, for a data set
        record still in place, its position."""
        population = self.next_number - 1
        for _ in range(16):
            if not population:
                return None
            draw = rng.randrange(population)
            if draw < self.size:
                if draw not in self.removed:
                    return self.numbers[draw], draw
                number = self.numbers[draw]
            else:
                number = draw + 1
            if number in self.live:
                return number, None
        return None


def _patched(record: Record, fields: dict[str, Any]) -> Record:
    patched = {**record, **fields}
    return {
        name: value.as_json(name) if isinstance(value, Twice) else value
        for name, value in patched.items() if value is not OMIT
    }


class LiveFeed:
    """The vendor's current records per resource, changing while the sandbox runs.

    - `interval_s`, `per_tick`: every `interval_s` seconds, `tick()` (as `--live` always did).
    - `changes_per_second`: updates of random existing records (data set or live), each
      moving the record's `updated_at` to now.
    - `creates_per_second`: new records with updated_at = now.
      Both rates are for the whole shop: each change or creation picks a resource at random.
      The background thread applies what is due every 20 ms, in one batch under the lock.
    - `late_arrival_ms`: background changes and creations (and `tick`) get updated_at = now
      minus uniform(0, late_arrival_ms) instead, as late arrivals do (never before the
      record's previous `updated_at`).
    - `journal`: keep every change (`journal` property), for tests that replay them.

    Thread-safe; all state sits behind one lock.
    """

    def __init__(
        self,
        dataset: Dataset,
        interval_s: float | None = None,
        per_tick: int = 5,
        seed: int = 7,
        changes_per_second: float = 0,
        creates_per_second: float = 0,
        late_arrival_ms: int = 0,
        journal: bool = False,
    ) -> None:
        if changes_per_second < 0 or creates_per_second < 0 or late_arrival_ms < 0:
            raise ValueError("rates and late_arrival_ms must not be negative")
        self._dataset = dataset
        self._interval_s = interval_s
        self._per_tick = per_tick
        self.changes_per_second = changes_per_second
        self.creates_per_second = creates_per_second
        self.late_arrival_ms = late_arrival_ms
        self._rng = random.Random(seed)
        self._shops = {resource: _Shop(dataset, resource) for resource in dataset.resources}
        self._lock = threading.Lock()
        self._version = 0
        self._journal: list[Change] | None = [] if journal else None
        self._paused = False
        self._due = [0.0, 0.0]  # changes, creations not yet applied
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the background thread if there is a tick interval or a rate; without, the
        shop changes only when told to (`tick`, `move_to_now`, ...)."""
        background = self._interval_s or self.changes_per_second or self.creates_per_second
        if background and self._thread is None and not self._stopped.is_set():
            self._thread = threading.Thread(target=self._run, name="sandbox-live", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (for good); on-demand changes still work."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def pause(self) -> None:
        """Hold the background changes (after any batch in progress) until `resume()`."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def _run(self) -> None:
        rates = self.changes_per_second or self.creates_per_second
        interval = self._interval_s
        last = time.monotonic()
        next_tick = last + interval if interval else None
        while True:
            timeout = _BATCH_INTERVAL_S
            if not rates:
                assert next_tick is not None
                timeout = max(next_tick - time.monotonic(), 0)
            if self._stopped.wait(timeout):
                return
            now = time.monotonic()
            if interval and next_tick is not None and now >= next_tick:
                next_tick += interval
                if next_tick < now:  # fell behind: the next tick a whole interval from now
                    next_tick = now + interval
                with self._lock:
                    if not self._paused:
                        self._tick()
            if rates:
                # A stalled thread catches up with at most a second of changes.
                elapsed, last = min(now - last, 1.0), now
                with self._lock:
                    if not self._paused:
                        self._apply_rates(elapsed)

    def _apply_rates(self, elapsed: float) -> None:
        self._due[0] += self.changes_per_second * elapsed
        self._due[1] += self.creates_per_second * elapsed
        changes, creations = int(self._due[0]), int(self._due[1])
        self._due[0] -= changes
        self._due[1] -= creations
        shops = list(self._shops.values())
        for _ in range(changes):
            self._change(self._rng.choice(shops))
        for _ in range(creations):
            self._create(self._rng.choice(shops))

    # -- the state -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """How many changes the shop has seen (creations, updates, deletions)."""
        with self._lock:
            return self._version

    @property
    def journal(self) -> list[Change]:
        """Every change so far, oldest first (only with `journal=True`)."""
        if self._journal is None:
            raise RuntimeError("the journal is off: LiveFeed(journal=True)")
        with self._lock:
            return list(self._journal)

    def page(
        self, resource: str, since: Bound, before: Bound, offset: int, limit: int
    ) -> tuple[int, list[Record], int] | None:
        """One consistent snapshot of a window: its `total`, its records at
        [offset, offset + limit), and the version they describe; None while the resource
        serves nothing (`serve_empty`)."""
        shop = self._shop(resource)
        since_ms = None if since is None else parse_timestamp_ms(since)
        before_ms = None if before is None else parse_timestamp_ms(before)
        with self._lock:
            if shop.empty:
                return None
            total, entries = shop.select(since_ms, before_ms, offset, limit)
            version = self._version
        return total, shop.build(entries), version

    def window(self, resource: str, since: Bound = None, before: Bound = None) -> list[Record]:
        """All records of a window as the vendor serves them now (defects included)."""
        page = self.page(resource, since, before, 0, 1 << 62)
        return [] if page is None else page[1]

    def records(self, resource: str, since: Bound, before: Bound) -> list[Record]:
        """Live records (changed or created while running) with since <= updated_at < before,
        in (updated_at, id) order, as the shop holds them (without defects or copies)."""
        shop = self._shop(resource)
        since_ms = None if since is None else parse_timestamp_ms(since)
        before_ms = None if before is None else parse_timestamp_ms(before)
        with self._lock:
            entries = shop.live_entries(since_ms, before_ms)
        return shop.build(entries)

    def tick(self) -> None:
        """Create `per_tick` records per resource and update one existing live record."""
        with self._lock:
            self._tick()

    def move_to_now(self, resource: str, record: Record) -> None:
        """A record (of the data set, or live) is updated now: its `updated_at` becomes now."""
        self.update(resource, record["id"], now_ms())

    def update(self, resource: str, record_id: str, updated_ms: int) -> None:
        """The record's `updated_at` becomes `updated_ms` (epoch ms)."""
        shop = self._shop(resource)
        with self._lock:
            self._move(shop, shop.number(record_id), updated_ms)

    def create(self, resource: str, updated_ms: int | None = None) -> str:
        """A new record, updated_at = now by default; returns its id."""
        shop = self._shop(resource)
        with self._lock:
            number = self._create(shop, now_ms() if updated_ms is None else updated_ms)
        if number is None:
            raise ValueError(f"{resource}: no ids left")
        return shop.spec.record_id(number)

    def delete(self, resource: str, record_id: str) -> None:
        shop = self._shop(resource)
        with self._lock:
            number = shop.number(record_id)
            shop.delete(number)
            self._log(shop, number, "delete", None)

    def corrupt(self, resource: str, record_id: str, fields: dict[str, Any]) -> None:
        shop = self._shop(resource)
        with self._lock:
            shop.defects[shop.spec.number(record_id)] = dict(fields)

    def duplicate(self, resource: str, record_id: str, fields: dict[str, Any]) -> None:
        shop = self._shop(resource)
        with self._lock:
            shop.copy(shop.number(record_id), dict(fields))

    def serve_empty(self, resource: str, empty: bool) -> None:
        shop = self._shop(resource)
        with self._lock:
            shop.empty = empty

    # -- under the lock ------------------------------------------------------------------

    def _shop(self, resource: str) -> _Shop:
        try:
            return self._shops[resource]
        except KeyError:
            message = f"unknown resource {resource!r}, expected one of {tuple(self._shops)}"
            raise ValueError(message) from None

    def _stamp(self, previous_ms: int | None = None) -> int:
        """Now, or with late arrivals up to `late_arrival_ms` earlier (never before the
        record's previous updated_at, if that is not in the future)."""
        now = now_ms()
        if not self.late_arrival_ms:
            return now
        stamp = now - int(self._rng.random() * self.late_arrival_ms)
        if previous_ms is not None and previous_ms <= now:
            stamp = max(stamp, previous_ms)
        return stamp

    def _tick(self) -> None:
        for shop in self._shops.values():
            for _ in range(self._per_tick):
                self._create(shop)
            if shop.live:
                number = self._rng.choice(list(shop.live))
                self._move(shop, number, self._stamp(shop.live[number][0]))

    def _change(self, shop: _Shop) -> None:
        picked = shop.pick(self._rng)
        if picked is not None:
            number, position = picked
            previous = shop.keys[position] if position is not None else shop.live[number][0]
            self._move(shop, number, self._stamp(previous), position)

    def _move(self, shop: _Shop, number: int, ms: int, position: int | None = None) -> None:
        shop.move(number, ms, position)
        self._log(shop, number, "update", ms)

    def _create(self, shop: _Shop, ms: int | None = None) -> int | None:
        number = shop.create(self._stamp() if ms is None else ms)
        if number is not None:
            self._log(shop, number, "create", shop.live[number][0])
        return number

    def _log(self, shop: _Shop, number: int, kind: str, ms: int | None) -> None:
        self._version += 1
        if self._journal is not None:
            record_id = shop.spec.record_id(number)
            self._journal.append(
                Change(self._version, shop.resource, record_id, number, kind, ms)
            )
