"""The sandbox's deterministic data set, derived from the API contract.

Every resource the sandbox serves is a `ResourceContract` (ecom_assets.contract: its path and
its typed fields) plus a small `SandboxResource` (how its ids look, which values its text
fields draw from, the range of its money). One generic generator builds a record field by
field from the contract's types, so a new resource needs no generator code of its own.

A record is a pure function of (resource, seed, its id number, its `updated_at`): its random
draws come from a keyed BLAKE2b hash of its id number. So any record can be built on its own, in
any order, in O(1): a page of 100 costs 100 record builds, whichever mode serves it. The data
set keeps, per resource, the integer `updated_at` keys (epoch milliseconds) of every record
sorted by (`updated_at`, `id`), plus the parallel id numbers, so finding a window is two
`bisect` calls. Records are built when first read: with `cache_records` (the default) in
chunks that are then kept; without it (`fresh`), afresh for every read, as a server backed by
a database does. Both give the same records. Records are plain dicts, sent as JSON as they
are: callers must not mutate them.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import threading
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import combinations
from typing import Any, TypeVar

from ecom_assets.contract import CONTRACTS, Field, FieldType, ResourceContract

RESOURCES = tuple(CONTRACTS)

Record = dict[str, Any]
Bound = str | datetime | None
T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DAY_MS = 86_400_000
# Ids are zero-padded, so ordering by id equals ordering by sequence number only while the
# number fits the padding (`prd_%07d` is the narrowest of the built-in resources).
MAX_SIZE = 9_999_999

_CURRENCIES = ("EUR", "USD", "GBP")
_PAYMENT_METHODS = ("card", "paypal", "bank_transfer")
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
)
_CATEGORIES = ("grocery", "beverages", "home", "stationery", "outdoor")
TAGS = ("new", "sale", "organic", "bestseller", "limited")
_WAREHOUSES = ("AMS-1", "FRA-2", "DUB-1", "WAW-3")

# RFC 3339 date-time: a `T` separator, optional fraction of any length, mandatory offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


@dataclass(frozen=True)
class SandboxSpec:
    """What to generate and how the server behaves.

    `size` records per resource, `updated_at` spread over [start, end), where `end` is `until`
    if given, else start + `days` (`recent()` builds a span that ends now). Every
    `string_money_every`-th record carries its money as a decimal string (0 disables that).
    With `unknown_fields` every record also carries a field the API contract does not list,
    as vendors add fields without notice; a clean sandbox (the default) sends only contract
    fields. With `cache_records` (the default) records are kept once built; without it every
    response builds its page afresh (the same records).
    """

    size: int = 5000
    start: datetime = _DEFAULT_START
    days: int = 31
    seed: int = 42
    string_money_every: int = 10
    latency_ms: float = 0
    unknown_fields: bool = False
    cache_records: bool = True
    until: datetime | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be between 0 and {MAX_SIZE}")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if self.string_money_every < 0 or self.latency_ms < 0:
            raise ValueError("string_money_every and latency_ms must not be negative")
        if self.until is not None:
            if self.until.utcoffset() is None:
                raise ValueError("until must be timezone-aware")
            if not self.start < self.until <= self.start + timedelta(days=self.days):
                raise ValueError("until must lie in (start, start + days]")

    @classmethod
    def recent(
        cls, days: int = 30, now: datetime | None = None, **kwargs: Any
    ) -> SandboxSpec:
        """A spec whose data ends now: the last `days` UTC calendar days, today included.

        Precisely: let `last` be the last whole millisecond strictly before `now` (default: the
        current time) and `today` the UTC day holding it (today, unless `now` is exactly
        midnight). Then start = today 00:00:00.000Z minus (days - 1) days, until = `now`, and
        every `updated_at` lies in [start, last]: no record is in the future. Today's partition
        always holds records: at least the one pinned at today 00:00:00.000Z, and its share of
        the rest. Other arguments (size, seed, ...) are passed on.
        """
        if days < 1:
            raise ValueError("days must be at least 1")
        now = datetime.now(UTC) if now is None else now
        last_ms = parse_timestamp_ms(now) - 1
        today = _EPOCH + timedelta(days=last_ms // _DAY_MS)
        start = today - timedelta(days=days - 1)
        return cls(start=start, days=days, until=now.astimezone(UTC), **kwargs)

    @property
    def end(self) -> datetime:
        """Exclusive end of the `updated_at` span."""
        return self.until if self.until is not None else self.start + timedelta(days=self.days)


DEFAULT_SPEC = SandboxSpec()


@dataclass(frozen=True)
class Code:
    """A generated reference code: `prefix` + a number zero-padded to `width`, e.g.
    ord_00001234. `share` None: the record's own id number (a code per record, like a SKU);
    else a random number in 1..size*share (capped by the width), so records share codes."""

    prefix: str
    width: int
    share: float | None = None

    def population(self, size: int) -> int:
        limit = 10**self.width - 1
        return max(min(int(size * (self.share or 1)), limit), 1)


_BLOCK_KEY = struct.Struct("<QI").pack
_UNPACK_WORDS = struct.Struct("<16I").unpack


def _words(hasher: Any, number: int, block: int) -> tuple[int, ...]:
    """16 random 32-bit words: block `block` of record `number`'s stream."""
    hasher = hasher.copy()
    hasher.update(_BLOCK_KEY(number, block))
    return _UNPACK_WORDS(hasher.digest())


class Draws:
    """The random draws of one record: a stream of 32-bit words from a keyed BLAKE2b hash of
    the record's id number (16 words a digest), so each record has its own stream, whatever
    order records are built in."""

    __slots__ = ("_block", "_hasher", "_next", "_number")

    def __init__(self, hasher: Any, number: int, first_block: int = 0) -> None:
        self._hasher = hasher
        self._number = number
        self._block = first_block
        self._next: Callable[[], int] = iter(()).__next__

    def _digest(self, block: int) -> tuple[int, ...]:
        return _words(self._hasher, self._number, block)

    def _refill(self) -> None:
        self._next = iter(self._digest(self._block)).__next__
        self._block += 1

    def words(self, blocks: int) -> tuple[int, ...]:
        """The first 16 * `blocks` words of the stream at once."""
        if blocks == 1:
            return self._digest(0)
        return tuple(word for block in range(blocks) for word in self._digest(block))

    def word(self) -> int:
        """A uniform 32-bit integer."""
        try:
            return self._next()
        except StopIteration:
            self._refill()
            return self._next()

    def choice(self, options: Sequence[T]) -> T:
        return options[(self.word() * len(options)) >> 32]

    def bits(self, count: int) -> int:
        """A uniform integer of `count` <= 64 bits."""
        return ((self.word() << 32) | self.word()) >> (64 - count)


@dataclass(frozen=True)
class SandboxResource:
    """How the sandbox fills one contract resource's records.

    - `id_prefix`, `id_width`: the primary key, e.g. pay_00000042 (zero-padded, so ids sort
      in sequence order).
    - `values`: per TEXT field name, the pool its values are drawn from.
    - `codes`: per TEXT field name, a generated reference code (see `Code`).
    - `money`: the range of every MONEY field, in cents (inclusive).
    - `unknown_field`: (name, draw -> value), a field the contract does not list, sent only
      with `SandboxSpec.unknown_fields`.
    - `tags`: the pool of TEXT_LIST values (a record holds 0..3 distinct ones).
    - `null_share`: how often a nullable field is null (absent, for one whose type has no
      null); `true_share`: how often a BOOLEAN is true; `created_share`: how often a record
      was never modified (`created_at` equal to `updated_at`, else up to `created_days` days
      earlier).

    TEXT fields without a pool or code, and not enumerated by the contract, get
    `<field name>_<6 digits>`.
    """

    id_prefix: str
    id_width: int
    values: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    codes: Mapping[str, Code] = field(default_factory=dict)
    money: tuple[int, int] = (50, 250_000)
    unknown_field: tuple[str, Callable[[Draws], Any]] | None = None
    tags: Sequence[str] = TAGS
    null_share: float = 0.15
    true_share: float = 0.85
    created_share: float = 0.2
    created_days: int = 90

    @property
    def capacity(self) -> int:
        """The highest id number that keeps ids in sequence order."""
        return 10**self.id_width - 1

    def record_id(self, number: int) -> str:
        return f"{self.id_prefix}{number:0{self.id_width}d}"

    def number(self, record_id: Any) -> int:
        """The sequence number of an id of this resource; ValueError for anything else."""
        if isinstance(record_id, str) and record_id.startswith(self.id_prefix):
            digits = record_id[len(self.id_prefix) :]
            if digits.isdigit() and digits.isascii():
                return int(digits)
        raise ValueError(f"not an id of this resource: {record_id!r}")


SANDBOX_RESOURCES: dict[str, SandboxResource] = {
    "order_payments": SandboxResource(
        id_prefix="pay_",
        id_width=8,
        values={"currency": _CURRENCIES, "payment_method": _PAYMENT_METHODS},
        # Fewer orders than payments (some were retried), a fifth as many customers.
        codes={"order_id": Code("ord_", 8, 0.8), "customer_id": Code("cus_", 6, 0.2)},
        money=(50, 250_000),
        unknown_field=("gateway_reference", lambda draw: f"gw_{draw.bits(48):012x}"),
        null_share=0.25,
    ),
    "products": SandboxResource(
        id_prefix="prd_",
        id_width=7,
        values={
            "name": _PRODUCT_NAMES,
            "currency": _CURRENCIES,
            "description": _DESCRIPTIONS,
            "category": _CATEGORIES,
        },
        codes={"product_id": Code("SKU-", 6)},
        money=(99, 99_999),
        unknown_field=("warehouse_code", lambda draw: draw.choice(_WAREHOUSES)),
        null_share=1 / 6,
    ),
}


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


# Every "HH:MM:SS" of a day and every ".mmmZ": formatting a timestamp is three table lookups
# and a concatenation.
_CLOCK = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


@cache
def _date_prefix(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")


def format_timestamp_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    return (
        _date_prefix(epoch_ms // _DAY_MS) + _CLOCK[epoch_ms // 1000 % 86_400] + _MILLIS[
            epoch_ms % 1000]
    )


def _money(cents: int, as_string: bool) -> str | int | float:
    """Money from integer cents, never via float arithmetic on the value: "12.50" as a string;
    as a number 12.5 (cents / 100 is the double nearest 12.50, which JSON renders exactly), or
    an int for whole amounts, as real APIs send them."""
    whole, fraction = divmod(cents, 100)
    if as_string:
        return f"{whole}.{fraction:02d}"
    return whole if fraction == 0 else cents / 100


# One field's value from (the record's random words, id number, updated_at ms, created now?).
_Maker = Callable[[tuple[int, ...], int, int, bool], Any]
_WORD = 1 << 32


class RecordBuilder:
    """Builds the records of one resource from its contract and its sandbox spec.

    Each field owns fixed slots among the record's random 32-bit words (one for a choice,
    two for a nullable field's null draw and value, ...), so a record costs one hash and a
    few table lookups per field.
    """

    def __init__(
        self,
        spec: SandboxSpec,
        contract: ResourceContract,
        resource: SandboxResource,
    ) -> None:
        self.contract = contract
        self.resource = resource
        self._hasher = hashlib.blake2b(
            f"{contract.name}:{spec.seed}".encode(), digest_size=64
        )
        self._slots = 0
        self._makers: list[tuple[str, _Maker]] = [
            (f.name, self._maker(spec, f)) for f in contract.fields
        ]
        self._blocks = -(-self._slots // 16)
        # Optional fields whose type has no null (`tags`) are left out where others are null.
        self._absent_when_null = tuple(
            f.name for f in contract.fields if f.nullable and not f.null_allowed
        )
        self._unknown: tuple[str, Callable[[Draws], Any]] | None = None
        if spec.unknown_fields and resource.unknown_field is not None:
            self._unknown = resource.unknown_field

    def build(self, number: int, updated_ms: int, created_now: bool = False) -> Record:
        """The record with id number `number` and `updated_at` `updated_ms`; `created_now`: a
        record just created (its other timestamps equal `updated_at`)."""
        if self._blocks == 1:
            words = _words(self._hasher, number, 0)
        else:
            words = Draws(self._hasher, number).words(self._blocks)
        record = {
            name: make(words, number, updated_ms, created_now) for name, make in self._makers
        }
        for name in self._absent_when_null:
            if record[name] is None:
                del record[name]
        if self._unknown is not None:
            name, generate = self._unknown
            record[name] = generate(Draws(self._hasher, number, first_block=self._blocks))
        return record

    def _slot(self, count: int = 1) -> int:
        first, self._slots = self._slots, self._slots + count
        return first

    def _maker(self, spec: SandboxSpec, f: Field) -> _Maker:
        if not f.nullable or f.name in (self.contract.primary_key, self.contract.cursor):
            return self._value_maker(spec, f)
        slot = self._slot()
        null_below = int(self.resource.null_share * _WORD)
        maker = self._value_maker(spec, f)

        def nullable(words: tuple[int, ...], number: int, updated_ms: int, created: bool) -> Any:
            if words[slot] < null_below:
                return None
            return maker(words, number, updated_ms, created)

        return nullable

    def _value_maker(self, spec: SandboxSpec, f: Field) -> _Maker:
        res = self.resource
        name = f.name
        if name == self.contract.primary_key:
            prefix, width = res.id_prefix, res.id_width
            return lambda _w, number, _u, _c: prefix + str(number).zfill(width)
        if name == self.contract.cursor:
            return lambda _w, _n, updated_ms, _c: format_timestamp_ms(updated_ms)
        match f.type:
            case FieldType.TEXT:
                return self._text_maker(spec, f)
            case FieldType.MONEY:
                slot, (low, high) = self._slot(), res.money
                every, count = spec.string_money_every, high - low + 1

                def money(words: tuple[int, ...], number: int, _u: int, _c: bool) -> Any:
                    cents = low + ((words[slot] * count) >> 32)
                    return _money(cents, every > 0 and number % every == 0)

                return money
            case FieldType.TIMESTAMP:
                slot = self._slot(2)
                unmodified = int(res.created_share * _WORD)
                back = res.created_days * _DAY_MS

                def earlier(words: tuple[int, ...], _n: int, updated_ms: int, created: bool) -> str:
                    if created or words[slot] < unmodified:
                        return format_timestamp_ms(updated_ms)
                    return format_timestamp_ms(updated_ms - ((words[slot + 1] * back) >> 32))

                return earlier
            case FieldType.BOOLEAN:
                slot, true_below = self._slot(), int(res.true_share * _WORD)
                return lambda words, _n, _u, _c: words[slot] < true_below
            case FieldType.TEXT_LIST:
                # Every choice of 0..3 distinct tags, so one draw picks a whole list.
                lists = [list(c) for k in range(4) for c in combinations(res.tags, k)]
                return self._choice(lists, copy=True)
        raise ValueError(f"field {name!r}: no sandbox values for type {f.type}")

    def _choice(self, options: Sequence[Any], copy: bool = False) -> _Maker:
        slot, options, count = self._slot(), tuple(options), len(options)
        if copy:  # a fresh list per record: callers may hold records a long time
            return lambda words, _n, _u, _c: list(options[(words[slot] * count) >> 32])
        return lambda words, _n, _u, _c: options[(words[slot] * count) >> 32]

    def _text_maker(self, spec: SandboxSpec, f: Field) -> _Maker:
        res = self.resource
        if f.allowed is not None:
            return self._choice(sorted(f.allowed))  # frozenset order varies between runs
        if f.name in res.values:
            return self._choice(res.values[f.name])
        if f.name in res.codes:
            code = res.codes[f.name]
            prefix, width = code.prefix, code.width
            if code.share is None:
                return lambda _w, number, _u, _c: prefix + str(number).zfill(width)
            slot, population = self._slot(), code.population(spec.size)
            return lambda words, _n, _u, _c: (
                prefix + str(1 + ((words[slot] * population) >> 32)).zfill(width)
            )
        slot, label = self._slot(), f.name
        return lambda words, _n, _u, _c: f"{label}_{(words[slot] * 1_000_000) >> 32:06d}"


def _sorted_order(spec: SandboxSpec, resource: str) -> tuple[list[int], list[int]]:
    """`updated_at` (epoch ms) and id number of every record, in (`updated_at`, `id`) order.

    Uniform over the span, except the first few id numbers, which sit exactly on day
    boundaries (00:00:00.000 and 23:59:59.999) for boundary tests; the repeated boundary
    makes an (updated_at, id) tie. A span ending inside a day (`recent`) also pins a record at
    that last day's midnight, so the last day is never empty.
    """
    # A string seed is hashed deterministically (independent of PYTHONHASHSEED).
    rand = random.Random(f"{resource}:{spec.seed}").random
    start_ms = (spec.start - _EPOCH) // _MS
    end_ms = parse_timestamp_ms(spec.end)
    span_ms = end_ms - start_ms
    first_midnight = -(-start_ms // _DAY_MS) * _DAY_MS
    last_midnight = (end_ms - 1) // _DAY_MS * _DAY_MS
    boundaries = [
        first_midnight,
        first_midnight + _DAY_MS - 1,
        first_midnight + _DAY_MS,
        first_midnight + _DAY_MS,
        end_ms // _DAY_MS * _DAY_MS - 1,
    ]
    if end_ms % _DAY_MS and last_midnight not in (first_midnight, first_midnight + _DAY_MS):
        boundaries.append(last_midnight)
    pinned = [ms for ms in boundaries if start_ms <= ms < end_ms][: spec.size]
    updated = [start_ms + int(rand() * span_ms) for _ in range(spec.size)]
    updated[: len(pinned)] = pinned
    # Stable sort: records with equal updated_at stay in id order.
    order = sorted(range(spec.size), key=updated.__getitem__)
    return [updated[i] for i in order], [i + 1 for i in order]


# In cached mode, records are built in chunks of this many sorted positions, on first use.
_CHUNK_SIZE = 1000


class Dataset:
    """Every resource's generated records, sorted ascending by (`updated_at`, `id`).

    `contracts` (default: ecom_assets.contract.CONTRACTS) are the resources served; each
    needs a `SandboxResource`, from `resources` or else `SANDBOX_RESOURCES`.

    Construction only draws and sorts the `updated_at` keys (about a second per million
    records); records are built when read (see the module docstring). Immutable: the live
    shop's changes (server.live) lie on top of it. Thread-safe.
    """

    def __init__(
        self,
        spec: SandboxSpec = DEFAULT_SPEC,
        contracts: Mapping[str, ResourceContract] | None = None,
        resources: Mapping[str, SandboxResource] | None = None,
    ) -> None:
        self.spec = spec
        self.contracts: dict[str, ResourceContract] = dict(
            CONTRACTS if contracts is None else contracts
        )
        sandbox_resources = {**SANDBOX_RESOURCES, **(resources or {})}
        self.builders: dict[str, RecordBuilder] = {}
        self._keys: dict[str, list[int]] = {}
        self._numbers: dict[str, list[int]] = {}
        self._positions: dict[str, list[int]] = {}
        self._chunks: dict[str, dict[int, list[Record]]] = {}
        self._lock = threading.Lock()
        for name, contract in self.contracts.items():
            if name not in sandbox_resources:
                raise ValueError(f"no SandboxResource for resource {name!r}")
            sandbox_resource = sandbox_resources[name]
            if spec.size > sandbox_resource.capacity:
                raise ValueError(f"size {spec.size} overflows the ids of {name!r}")
            self.builders[name] = RecordBuilder(spec, contract, sandbox_resource)
            self._keys[name], self._numbers[name] = _sorted_order(spec, name)
            self._chunks[name] = {}

    @property
    def resources(self) -> tuple[str, ...]:
        """The names of the resources served."""
        return tuple(self.contracts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dataset):
            return NotImplemented
        return self.resources == other.resources and all(
            self.all(resource) == other.all(resource) for resource in self.resources
        )

    __hash__ = None  # type: ignore[assignment]

    def size(self, resource: str) -> int:
        return len(self.keys(resource))

    def keys(self, resource: str) -> list[int]:
        """The sorted `updated_at` keys (epoch ms) of every record; do not mutate."""
        try:
            return self._keys[resource]
        except KeyError:
            message = f"unknown resource {resource!r}, expected one of {self.resources}"
            raise ValueError(message) from None

    def numbers(self, resource: str) -> list[int]:
        """The id numbers in sorted order, parallel to `keys`; do not mutate."""
        self.keys(resource)
        return self._numbers[resource]

    def position(self, resource: str, number: int) -> int:
        """The sorted position of the record with id number `number` (1..size)."""
        numbers = self.numbers(resource)
        if not 1 <= number <= len(numbers):
            raise ValueError(f"no {resource} record number {number} in the data set")
        with self._lock:
            positions = self._positions.get(resource)
            if positions is None:  # the inverse permutation, built on first use
                positions = [0] * (len(numbers) + 1)
                for position, n in enumerate(numbers):
                    positions[n] = position
                self._positions[resource] = positions
        return positions[number]

    def window_bounds(
        self, resource: str, since: Bound = None, before: Bound = None
    ) -> tuple[int, int]:
        """Positions [lo, hi) of the records with since <= updated_at < before (None means
        unbounded): two bisects on the sorted keys.

        Raises ValueError for an unknown resource or an unparsable bound.
        """
        keys = self.keys(resource)
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
        keys = self.keys(resource)
        stop = min(stop, len(keys))
        if start >= stop:
            return []
        if not self.spec.cache_records:
            build, numbers = self.builders[resource].build, self._numbers[resource]
            return [build(numbers[p], keys[p]) for p in range(start, stop)]
        rows: list[Record] = []
        for chunk in range(start // _CHUNK_SIZE, -(-stop // _CHUNK_SIZE)):
            base = chunk * _CHUNK_SIZE
            rows += self._chunk(resource, chunk)[max(start - base, 0) : stop - base]
        return rows

    def record_at(self, resource: str, position: int) -> Record:
        """The record at one sorted position."""
        if not self.spec.cache_records:
            number, key = self.numbers(resource)[position], self._keys[resource][position]
            return self.builders[resource].build(number, key)
        return self._chunk(resource, position // _CHUNK_SIZE)[position % _CHUNK_SIZE]

    def build(self, resource: str, number: int, updated_ms: int, created_now: bool = False
              ) -> Record:
        """A record of `resource` built afresh (never cached), e.g. for a live change."""
        self.keys(resource)
        return self.builders[resource].build(number, updated_ms, created_now)

    def _chunk(self, resource: str, chunk: int) -> list[Record]:
        with self._lock:
            rows = self._chunks[resource].get(chunk)
            if rows is None:
                part = slice(chunk * _CHUNK_SIZE, (chunk + 1) * _CHUNK_SIZE)
                build = self.builders[resource].build
                rows = [
                    build(number, key)
                    for number, key in zip(
                        self._numbers[resource][part], self._keys[resource][part], strict=True
                    )
                ]
                self._chunks[resource][chunk] = rows
            return rows
