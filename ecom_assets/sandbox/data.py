"""The sandbox's deterministic data set.

Each resource is generated from a seed and kept sorted by (`updated_at`, `id`), with a
parallel list of integer `updated_at` keys (epoch milliseconds), so finding any window is two
`bisect` calls. Only the keys are drawn up front; records are built in fixed chunks when first
read, so a million records per resource start serving in about a second. Records are the plain
dicts the server sends as JSON: callers must not mutate them.
"""

from __future__ import annotations

import random
import re
import threading
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import combinations
from typing import Any, TypeVar

RESOURCES = ("order_payments", "products")

Record = dict[str, Any]
Bound = str | datetime | None
T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DAY_MS = 86_400_000
# Ids are zero-padded, so ordering by id equals ordering by sequence number only while the
# number fits the padding (`prd_%07d` is the narrowest).
MAX_SIZE = 9_999_999

_CURRENCIES = ("EUR", "USD", "GBP")
_PAYMENT_STATUSES = ("pending", "succeeded", "failed", "refunded")
_PAYMENT_METHODS = ("card", "paypal", "bank_transfer", None)
_PRODUCT_NAMES = (
    "Café crème 250 g",
    "Crème brûlée kit",
    "Müsli Classic 750 g",
    "Smørrebrød board",
    "Jalapeño salsa 300 ml",
    "Zürich tote bag",
    "Green tea 🍵 sampler",
    "Dark chocolate 🍫 bar 100 g",
    "Plain notebook A5",
    "Steel water bottle",
)
# Quotes, backslashes and newlines exercise JSON escaping on both ends.
_DESCRIPTIONS = (
    "Best seller.",
    'Our "house" favourite.',
    "Two lines:\nfirst, then second.",
    "Path-like text C:\\goods\\item",
    "Fairtrade, organic, 100 % arabica.",
    None,
)
_CATEGORIES = ("grocery", "beverages", "home", "stationery", "outdoor", None)
_TAGS = ("new", "sale", "organic", "bestseller", "limited")
# Every choice of 0..3 distinct tags, so one random draw picks a whole tag list.
_TAG_LISTS = [tags for count in range(4) for tags in combinations(_TAGS, count)]
_WAREHOUSES = ("AMS-1", "FRA-2", "DUB-1", "WAW-3")

# RFC 3339 date-time: a `T` separator, optional fraction of any length, mandatory offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


@dataclass(frozen=True)
class SandboxSpec:
    """What to generate and how the server behaves.

    `size` records per resource, `updated_at` spread over [start, start + days). Every
    `string_money_every`-th record carries its money as a decimal string (0 disables that).
    With `unknown_fields` every record also carries a field the API contract does not list,
    as vendors add fields without notice.
    """

    size: int = 5000
    start: datetime = _DEFAULT_START
    days: int = 31
    seed: int = 42
    string_money_every: int = 10
    latency_ms: float = 0
    unknown_fields: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be between 0 and {MAX_SIZE}")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if self.string_money_every < 0 or self.latency_ms < 0:
            raise ValueError("string_money_every and latency_ms must not be negative")

    @property
    def end(self) -> datetime:
        """Exclusive end of the `updated_at` span."""
        return self.start + timedelta(days=self.days)


DEFAULT_SPEC = SandboxSpec()


def parse_timestamp_ms(value: str | datetime) -> int:
    """The first epoch millisecond at or after `value` (a strict RFC 3339 string or an aware
    datetime). Rounding up keeps both filters exact on millisecond keys: `key >= t` and
    `key < t` hold exactly when they hold against the rounded-up value.

    Raises ValueError for anything else, including naive datetimes.
    """
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")
        micros = (value - _EPOCH) // timedelta(microseconds=1)
        return -(-micros // 1000)
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zulu, sign, offset_hours, offset_minutes = match.groups()[6:]
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    if not zulu:
        offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        moment -= offset if sign == "+" else -offset
    fraction = fraction or ""
    millis = int(fraction[:3].ljust(3, "0"))
    if fraction[3:].strip("0"):
        millis += 1
    return (moment - _EPOCH) // _MS + millis


@cache
def _clock_strings() -> tuple[list[str], list[str]]:
    """Every "HH:MM:SS" of a day and every ".mmmZ": formatting a million timestamps then is
    two table lookups and a concatenation each."""
    clock = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    return clock, [f".{ms:03d}Z" for ms in range(1000)]


def _timestamps(epoch_ms: list[int]) -> list[str]:
    """Epoch milliseconds as RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    if not epoch_ms:
        return []
    clock, millis = _clock_strings()
    first_day = min(epoch_ms) // _DAY_MS
    dates = [
        (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
        for day in range(first_day, max(epoch_ms) // _DAY_MS + 1)
    ]
    return [
        dates[ms // _DAY_MS - first_day] + clock[ms // 1000 % 86_400] + millis[ms % 1000]
        for ms in epoch_ms
    ]


def _money(cents: int, as_string: bool) -> str | int | float:
    """Money from integer cents, never via float arithmetic on the value: "12.50" as a string;
    as a number 12.5 (cents / 100 is the double nearest 12.50, which JSON renders exactly), or
    an int for whole amounts, as real APIs send them."""
    whole, fraction = divmod(cents, 100)
    if as_string:
        return f"{whole}.{fraction:02d}"
    return whole if fraction == 0 else cents / 100


def _sorted_order(spec: SandboxSpec, resource: str) -> tuple[list[int], list[int]]:
    """`updated_at` (epoch ms) and id number of every record, in (`updated_at`, `id`) order.

    Uniform over the span, except the first few id numbers, which sit exactly on day
    boundaries (00:00:00.000 and 23:59:59.999) for boundary tests; the repeated boundary
    makes an (updated_at, id) tie.
    """
    # A string seed is hashed deterministically (independent of PYTHONHASHSEED).
    rand = random.Random(f"{resource}:{spec.seed}").random
    start_ms = (spec.start - _EPOCH) // _MS
    span_ms = spec.days * _DAY_MS
    first_midnight = -(-start_ms // _DAY_MS) * _DAY_MS
    last_midnight = (start_ms + span_ms) // _DAY_MS * _DAY_MS
    boundaries = (
        first_midnight,
        first_midnight + _DAY_MS - 1,
        first_midnight + _DAY_MS,
        first_midnight + _DAY_MS,
        last_midnight - 1,
    )
    pinned = [ms for ms in boundaries if start_ms <= ms < start_ms + span_ms][: spec.size]
    updated = [start_ms + int(rand() * span_ms) for _ in range(spec.size)]
    updated[: len(pinned)] = pinned
    # Stable sort: records with equal updated_at stay in id order.
    order = sorted(range(spec.size), key=updated.__getitem__)
    return [updated[i] for i in order], [i + 1 for i in order]


class _Columns:
    """Random columns for one chunk of consecutive records (in sorted order).

    Each chunk has its own seed, so it can be built on demand in any order and still come out
    the same. Whole columns in comprehensions are several times faster than building each
    record field by field.
    """

    def __init__(
        self,
        spec: SandboxSpec,
        resource: str,
        chunk: int,
        numbers: list[int],
        updated_ms: list[int],
    ) -> None:
        self.rng = random.Random(f"{resource}:{spec.seed}:{chunk}")
        self.spec = spec
        self.numbers = numbers
        self.updated_ms = updated_ms
        self.size = len(numbers)

    def choices(self, options: Sequence[T]) -> list[T]:
        rand, count = self.rng.random, len(options)
        return [options[int(rand() * count)] for _ in range(self.size)]

    def integers(self, low: int, high: int) -> list[int]:
        """Uniform integers in [low, high]."""
        rand, count = self.rng.random, high - low + 1
        return [low + int(rand() * count) for _ in range(self.size)]

    def money(self, low_cents: int, high_cents: int) -> list[str | int | float]:
        every = self.spec.string_money_every
        cents = self.integers(low_cents, high_cents)
        return [
            _money(c, every > 0 and n % every == 0)
            for n, c in zip(self.numbers, cents, strict=True)
        ]

    def created_ms(self) -> list[int]:
        """At or before `updated_at`; a fifth of the records were never modified."""
        rand = self.rng.random
        return [u if rand() < 0.2 else u - int(rand() * 90 * _DAY_MS) for u in self.updated_ms]


def _order_payments(draw: _Columns) -> dict[str, list[Any]]:
    size = draw.spec.size
    orders = max(size * 4 // 5, 1)  # fewer orders than payments: some were retried
    customers = max(min(size // 5, 999_999), 1)
    getrandbits = draw.rng.getrandbits
    return {
        "id": [f"pay_{n:08d}" for n in draw.numbers],
        "order_id": [f"ord_{n:08d}" for n in draw.integers(1, orders)],
        "customer_id": [f"cus_{n:06d}" for n in draw.integers(1, customers)],
        "amount": draw.money(50, 250_000),
        "currency": draw.choices(_CURRENCIES),
        "status": draw.choices(_PAYMENT_STATUSES),
        "payment_method": draw.choices(_PAYMENT_METHODS),
        "created_at": _timestamps(draw.created_ms()),
        "updated_at": _timestamps(draw.updated_ms),
        "gateway_reference": [f"gw_{getrandbits(48):012x}" for _ in range(draw.size)],
    }


def _products(draw: _Columns) -> dict[str, list[Any]]:
    rand = draw.rng.random
    return {
        "id": [f"prd_{n:07d}" for n in draw.numbers],
        "product_id": [f"SKU-{n:06d}" for n in draw.numbers],
        "name": draw.choices(_PRODUCT_NAMES),
        "price": draw.money(99, 99_999),
        "currency": draw.choices(_CURRENCIES),
        "description": draw.choices(_DESCRIPTIONS),
        "category": draw.choices(_CATEGORIES),
        "active": [rand() < 0.85 for _ in range(draw.size)],
        "tags": [list(tags) for tags in draw.choices(_TAG_LISTS)],
        "created_at": _timestamps(draw.created_ms()),
        "updated_at": _timestamps(draw.updated_ms),
        "warehouse_code": draw.choices(_WAREHOUSES),
    }


_GENERATORS = {"order_payments": _order_payments, "products": _products}
UNKNOWN_FIELDS = {"order_payments": "gateway_reference", "products": "warehouse_code"}
# Records are built in chunks of this many sorted positions, on first use.
_CHUNK_SIZE = 1000


class Dataset:
    """Every resource's records, sorted ascending by (`updated_at`, `id`).

    Construction only draws and sorts the `updated_at` keys (about a second per million
    records); the records themselves are built chunk by chunk the first time they are read,
    then kept. Thread-safe.
    """

    def __init__(self, spec: SandboxSpec = DEFAULT_SPEC) -> None:
        self.spec = spec
        self._keys: dict[str, list[int]] = {}
        self._numbers: dict[str, list[int]] = {}
        self._chunks: dict[str, dict[int, list[Record]]] = {}
        self._lock = threading.Lock()
        for resource in RESOURCES:
            self._keys[resource], self._numbers[resource] = _sorted_order(spec, resource)
            self._chunks[resource] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dataset):
            return NotImplemented
        return all(self.all(resource) == other.all(resource) for resource in RESOURCES)

    def size(self, resource: str) -> int:
        return len(self._resource_keys(resource))

    def window_bounds(
        self, resource: str, since: Bound = None, before: Bound = None
    ) -> tuple[int, int]:
        """Positions [lo, hi) of the records with since <= updated_at < before (None means
        unbounded): two bisects on the sorted keys.

        Raises ValueError for an unknown resource or an unparsable bound.
        """
        keys = self._resource_keys(resource)
        lo = 0 if since is None else bisect_left(keys, parse_timestamp_ms(since))
        hi = len(keys) if before is None else bisect_left(keys, parse_timestamp_ms(before))
        return lo, max(lo, hi)

    def records(self, resource: str, since: Bound = None, before: Bound = None) -> list[Record]:
        """The records with since <= updated_at < before, in (updated_at, id) order."""
        lo, hi = self.window_bounds(resource, since, before)
        return self.slice(resource, lo, hi)

    def all(self, resource: str) -> list[Record]:
        return self.records(resource)

    def slice(self, resource: str, start: int, stop: int) -> list[Record]:
        """The records at sorted positions [start, stop), e.g. one page of a window."""
        stop = min(stop, len(self._resource_keys(resource)))
        rows: list[Record] = []
        for chunk in range(start // _CHUNK_SIZE, -(-stop // _CHUNK_SIZE)):
            base = chunk * _CHUNK_SIZE
            rows += self._chunk(resource, chunk)[max(start - base, 0) : stop - base]
        return rows

    def _chunk(self, resource: str, chunk: int) -> list[Record]:
        with self._lock:
            rows = self._chunks[resource].get(chunk)
            if rows is None:
                part = slice(chunk * _CHUNK_SIZE, (chunk + 1) * _CHUNK_SIZE)
                draw = _Columns(
                    self.spec,
                    resource,
                    chunk,
                    self._numbers[resource][part],
                    self._keys[resource][part],
                )
                columns = _GENERATORS[resource](draw)
                if not self.spec.unknown_fields:
                    del columns[UNKNOWN_FIELDS[resource]]
                names = tuple(columns)
                rows = [
                    dict(zip(names, values, strict=True))
                    for values in zip(*columns.values(), strict=True)
                ]
                self._chunks[resource][chunk] = rows
            return rows

    def _resource_keys(self, resource: str) -> list[int]:
        try:
            return self._keys[resource]
        except KeyError:
            message = f"unknown resource {resource!r}, expected one of {RESOURCES}"
            raise ValueError(message) from None
