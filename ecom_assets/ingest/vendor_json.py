"""The vendor's JSON, read and written back exactly.

Numbers are parsed as exact Decimals (money never passes through a float) and the non-finite
tokens some encoders emit (`NaN`, `Infinity`, `-Infinity`) as Decimal NaN and infinities, so a
defective record is quarantined instead of failing its whole page. Written back canonically
(keys sorted), numbers stay JSON numbers and non-finite values stay the tokens the vendor sent.
An object that names a key twice with different values is read as `RepeatedKeys`, which keeps
every value: a reader that kept one of them would load a value the vendor may not have meant.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import simplejson
from simplejson import RawJSON

from ecom_assets.contract import storable


class RepeatedKeys(dict):
    """A JSON object that names a key more than once, with different values. As a dict it
    holds each key's last value, as Python's reader keeps it; `pairs` holds every value in the
    order sent, and is what it is written back as."""

    def __init__(self, pairs: list[tuple[str, Any]], repeated: list[str], holding: list[str]):
        super().__init__(pairs)
        self.pairs = [[key, value] for key, value in pairs]  # changed in place by scrubbing
        self.repeated = repeated  # keys named twice, with different values
        self.holding = holding  # keys whose value holds such an object, deeper down

    def for_json(self) -> RawJSON:
        members = sorted(self.pairs, key=lambda pair: pair[0])  # stable: repeats stay in order
        return RawJSON("{" + ", ".join(
            f"{dump_vendor_json(key)}: {dump_vendor_json(value)}" for key, value in members
        ) + "}")


def parse_vendor_json(content: bytes | str) -> Any:
    """Raises ValueError for text that is not JSON."""
    repeats: list[RepeatedKeys] = []

    def read_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        read = dict(pairs)
        if len(read) == len(pairs):  # the rule: a key named once
            return read
        repeated = _differing(pairs)
        if not repeated:  # repeated with the same value: nothing to choose between
            return read
        repeats.append(RepeatedKeys(pairs, repeated, []))
        return repeats[-1]

    try:
        body = json.loads(content, parse_float=Decimal, parse_constant=Decimal,
                          object_pairs_hook=read_object)
    except ValueError:
        # Python refuses to read an integer longer than its limit (4,300 digits by default,
        # sys.set_int_max_str_digits): valid JSON, whose record, not its page, is defective.
        # Read again, such integers as Decimals; text that is not JSON fails again.
        body = json.loads(content, parse_float=Decimal, parse_constant=Decimal,
                          parse_int=_integer, object_pairs_hook=read_object)
    # Rare: each object around one that repeats a key says which of its keys leads there.
    return _marked(body)[0] if repeats else body


def _differing(pairs: list[tuple[str, Any]]) -> list[str]:
    values: dict[str, set[str]] = {}
    for key, value in pairs:
        values.setdefault(key, set()).add(dump_vendor_json(value))
    return [key for key, seen in values.items() if len(seen) > 1]


def _marked(value: Any) -> tuple[Any, bool]:
    """`value` with each object that holds a `RepeatedKeys` deeper down made one, naming the
    keys that lead there; and whether `value` is or holds one."""
    if isinstance(value, list):
        marked = [_marked(item) for item in value]
        return [item for item, _ in marked], any(held for _, held in marked)
    if not isinstance(value, dict):
        return value, False
    pairs = value.pairs if isinstance(value, RepeatedKeys) else list(value.items())
    marked_pairs, holding = [], []
    for key, member in pairs:
        member, held = _marked(member)
        marked_pairs.append((key, member))
        if held and key not in holding:
            holding.append(key)
    if isinstance(value, RepeatedKeys):
        return RepeatedKeys(marked_pairs, value.repeated, holding), True
    if holding:
        return RepeatedKeys(marked_pairs, [], holding), True
    return value, False


def _integer(digits: str) -> int | Decimal:
    try:
        return int(digits)
    except ValueError:
        return Decimal(digits)


def dump_vendor_json(value: Any) -> str:
    # A lone surrogate, which no database stores, as the escape the vendor sent.
    return storable(
        simplejson.dumps(value, ensure_ascii=False, sort_keys=True, use_decimal=True,
                         for_json=True)
    )


def is_non_finite(value: Any) -> bool:
    """`NaN`, `Infinity` or `-Infinity` as the vendor sent them."""
    return isinstance(value, Decimal) and not value.is_finite()
