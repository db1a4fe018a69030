"""The vendor's JSON, read and written back exactly.

Numbers are parsed as exact Decimals (money never passes through a float) and the non-finite
tokens some encoders emit (`NaN`, `Infinity`, `-Infinity`) as Decimal NaN and infinities, so a
defective record is quarantined instead of failing its whole page. Written back canonically
(keys sorted), numbers stay JSON numbers and non-finite values stay the tokens the vendor sent.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import simplejson

from ecom_assets.contract import storable


def parse_vendor_json(content: bytes | str) -> Any:
    """Raises ValueError for text that is not JSON."""
    try:
        return json.loads(content, parse_float=Decimal, parse_constant=Decimal)
    except ValueError:
        # Python refuses to read an integer longer than its limit (4,300 digits by default,
        # sys.set_int_max_str_digits): valid JSON, whose record, not its page, is defective.
        # Read again, such integers as Decimals; text that is not JSON fails again.
        return json.loads(content, parse_float=Decimal, parse_constant=Decimal,
                          parse_int=_integer)


def _integer(digits: str) -> int | Decimal:
    try:
        return int(digits)
    except ValueError:
        return Decimal(digits)


def dump_vendor_json(value: Any) -> str:
    # A lone surrogate, which no database stores, as the escape the vendor sent.
    return storable(
        simplejson.dumps(value, ensure_ascii=False, sort_keys=True, use_decimal=True)
    )


def is_non_finite(value: Any) -> bool:
    """`NaN`, `Infinity` or `-Infinity` as the vendor sent them."""
    return isinstance(value, Decimal) and not value.is_finite()
