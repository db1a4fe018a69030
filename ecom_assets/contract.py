"""The schema contract of the vendor API, declared once.

Every field of `OrderPayment` and `Product` in the vendor's OpenAPI document is listed here with
its type and nullability. This one declaration drives the dlt column hints (types and NOT NULL),
the column types expected in each destination, the Dagster column schema shown in the UI, the
record validation that quarantines defective records, and the asset checks. No Dagster
imports: the dlt source uses it too.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal
from enum import Enum
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

# The destinations whose column types the contract declares (and the tests run against).
SQL_DESTINATIONS = ("duckdb", "postgres")
MONEY_PRECISION = 18
MONEY_SCALE = 2
_CENT = Decimal("0.01")
# Rounding to cents in a context of its own: a thread's current one (a library may narrow it)
# must not decide whether a record loads. One digit more than the column holds: an amount just
# under the limit with a third decimal rounds up to the limit (9999999999999999.995), and is
# then told apart from what was sent.
_CENTS = Context(prec=MONEY_PRECISION + 1)
# The contract's form of money sent as a string (ASCII digits only).
_MONEY_STRING = re.compile(r"-?[0-9]+(\.[0-9]{1,2})?")
_LONE_SURROGATE = "not valid Unicode: a lone surrogate (an escape such as \\ud800)"
_NUL = "a NUL character (\\u0000), which PostgreSQL cannot store"
_MONEY_LIMIT = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)


class FieldType(Enum):
    """A contract type: its dlt data type, the Arrow type records are handed to dlt in
    (`arrow_type`), and the column type each supported destination must end up with, as its
    information_schema shows it (DuckDB, PostgreSQL)."""

    TEXT = ("text", ("VARCHAR", "CHARACTER VARYING"))
    MONEY = (
        "decimal",
        (f"DECIMAL({MONEY_PRECISION},{MONEY_SCALE})", f"NUMERIC({MONEY_PRECISION},{MONEY_SCALE})"),
    )
    TIMESTAMP = ("timestamp", ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE"))
    BOOLEAN = ("bool", ("BOOLEAN", "BOOLEAN"))
    TEXT_LIST = ("json", ("JSON", "JSONB"))

    def __init__(self, dlt_type: str, sql_types: tuple[str, str]) -> None:
        self.dlt_type = dlt_type
        self.sql_types = dict(zip(SQL_DESTINATIONS, sql_types, strict=True))

    @property
    def arrow_type(self) -> pa.DataType:
        return _arrow_types()[self]

    def sql_type(self, destination: str) -> str | None:
        """The column type on `destination`; None for a destination the contract does not
        know (its types are then dlt's choice, and the schema check says it did not check
        them)."""
        return self.sql_types.get(destination)


@cache
def _arrow_types() -> dict[FieldType, pa.DataType]:
    # Arrow is imported by the first run that converts records: a run with none to load (most
    # sensor refreshes) and a code server that only evaluates sensors spare its start-up.
    import pyarrow as pa

    return {
        FieldType.TEXT: pa.string(),
        FieldType.MONEY: pa.decimal128(MONEY_PRECISION, MONEY_SCALE),
        FieldType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
        FieldType.BOOLEAN: pa.bool_(),
        FieldType.TEXT_LIST: pa.list_(pa.string()),
    }


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    nullable: bool
    description: str
    # The values the vendor's schema allows (an OpenAPI `enum`); None: any value of the type.
    allowed: frozenset[str] | None = None
    # A nullable field whose schema type has no null (OpenAPI: optional, not `[type, "null"]`)
    # may be absent, and then its column is null, but an explicit null is a defect.
    null_allowed: bool = True

    @property
    def constraint(self) -> str | None:
        """The allowed values as the UI shows them."""
        return f"one of {', '.join(sorted(self.allowed))}" if self.allowed else None


@dataclass(frozen=True)
class ResourceContract:
    """One API resource: where it lives, its fields, and the table it lands in."""

    name: str
    path: str
    description: str
    fields: tuple[Field, ...]
    primary_key: str = "id"
    cursor: str = "updated_at"

    @property
    def quarantine_table(self) -> str:
        return f"{self.name}_quarantine"

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    @property
    def required_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.nullable)

    @cached_property
    def rules(self) -> tuple[tuple[str, Any, bool, Field], ...]:
        """Per field: name, parser, nullable, field. `conform` runs once per record of every
        load: this spares it the lookups of each field's parser and attributes."""
        return tuple((f.name, _PARSERS[f.type], f.nullable, f) for f in self.fields)

    def dlt_columns(self, dedup: bool = True) -> dict[str, dict[str, Any]]:
        """dlt column hints: exact types, and NOT NULL where the contract requires a value;
        with `dedup`, the merge keeps the latest version of a record a load holds twice."""
        columns: dict[str, dict[str, Any]] = {}
        for field in self.fields:
            column: dict[str, Any] = {
                "name": field.name,
                "data_type": field.type.dlt_type,
                "nullable": field.nullable,
                "description": field.description,
            }
            if field.type is FieldType.MONEY:
                column.update(precision=MONEY_PRECISION, scale=MONEY_SCALE)
            if field.type is FieldType.TIMESTAMP:
                column.update(timezone=True)
            if dedup and field.name == self.cursor:
                # A load holding a record twice (it moved into a later part of the window
                # while that was read) keeps its latest version; without the hint, either.
                column.update(dedup_sort="desc")
            columns[field.name] = column
        return columns


def json_type(value: Any) -> str:
    """The JSON type of a parsed vendor value, for messages: a string, a number, an object..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    return {str: "a string", dict: "an object", list: "an array"}.get(
        type(value), type(value).__name__
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {json_type(value)}")
    if not value.isascii() or "\x00" in value:  # checked in full only then: most text is ASCII
        _refuse_unstorable(value)
    return value


def _refuse_unstorable(text: str) -> None:
    """Text that cannot be stored as sent: a lone surrogate, or a NUL, which dlt's INSERT
    statements for PostgreSQL would drop without a word."""
    if not is_unicode(text):
        raise ValueError(_LONE_SURROGATE)
    if "\x00" in text:
        raise ValueError(_NUL)


def is_unicode(text: str) -> bool:
    """Whether `text` can be stored: JSON's escapes can spell half of a UTF-16 pair alone."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """`text` with each lone surrogate and NUL written as JSON escapes them, `\\ud800` and
    `\\u0000`."""
    if not is_unicode(text):
        text = text.encode("utf-8", "backslashreplace").decode()
    return text.replace("\x00", "\\u0000")


def _money(value: Any) -> Decimal:
    # Parsed from the JSON text of a number or from a decimal string, never through a float:
    # the sandbox and real vendors send "12.50" and 12.5 for the same amount.
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"expected a decimal number or decimal string, got {json_type(value)}")
    if isinstance(value, str) and not _MONEY_STRING.fullmatch(value):
        raise ValueError(f"not a decimal string with at most {MONEY_SCALE} fractional digits: "
                         f"{value[:40]!r}")
    # A float through its shortest text, never its binary expansion.
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"not a finite number: {amount}")
    # `copy_abs`, not `abs`: arithmetic on 1e1000000 overflows Python's decimal context.
    if amount.copy_abs() >= _MONEY_LIMIT:
        text = str(amount)  # a defective amount may have thousands of digits
        shown = text if len(text) <= 40 else f"{text[:20]}... ({amount:.2E})"
        raise ValueError(f"out of range for DECIMAL({MONEY_PRECISION},{MONEY_SCALE}): {shown}")
    # In cents, as the column stores it: 12.500 is 12.50, and 0E+17 is 0.00 (Arrow refuses
    # its exponent).
    cents = amount.quantize(_CENT, context=_CENTS)
    if cents != amount:
        raise ValueError(f"not a decimal with at most {MONEY_SCALE} fractional digits: {amount}")
    return cents


# RFC 3339's date-time: date, `T` (or the space it allows), time with optional fraction, then
# the offset (checked apart, to say that it is missing). Python's `fromisoformat` alone also
# reads ISO 8601's other forms (`20260102T100000Z`, week dates, `10Z`, decimal commas) and
# cuts a longer fraction to microseconds.
_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)?"
)
MICROSECOND_DIGITS = 6


# The separators of `2026-01-02T10:00:00.123Z`, the contract's form, and where they stand: a
# value laid out so is read by `fromisoformat` digit by digit as RFC 3339 reads it, so the
# common case skips the pattern's cost.
_CONTRACT_FORM_SEPARATORS = ("-", "-", "T", ":", ":", ".", "Z")
_separators = operator.itemgetter(4, 7, 10, 13, 16, 19, 23)


def in_contract_form(value: str) -> bool:
    """Whether `value` is laid out as `2026-01-02T10:00:00.123Z`: such values, when valid,
    sort as the times they stand for."""
    return len(value) == 24 and _separators(value) == _CONTRACT_FORM_SEPARATORS


def parse_timestamp(value: Any) -> datetime:
    """An RFC 3339 timestamp with an offset (`Z` or `+hh:mm`) as an aware UTC datetime."""
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 timestamp string, got {json_type(value)}")
    if not in_contract_form(value):
        form = _RFC3339.fullmatch(value)
        if form is None:
            raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}")
        fraction, offset = form.groups()
        if offset is None:
            raise ValueError(f"timestamp without a UTC offset: {value[:40]!r}")
        if fraction and len(fraction) - 1 > MICROSECOND_DIGITS:
            raise ValueError(
                f"more precise than the microseconds a timestamp column holds: {value[:40]!r}"
            )
        if value[17:19] == "60":
            raise ValueError(f"a leap second, which a timestamp column cannot hold: {value!r}")
        value = value.upper()  # RFC 3339 allows `t` and `z`, `fromisoformat` does not
    try:  # the ranges, and the digits: month 13, 30 February, hour 24
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59.999-01:00 lies past datetime's range in UTC
        raise ValueError(f"out of range: {value[:40]!r}") from None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {json_type(value)}")
    return value


def _text_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of strings")
    for item in value:
        _refuse_unstorable(item)
    return value


_PARSERS = {
    FieldType.TEXT: _text,
    FieldType.MONEY: _money,
    FieldType.TIMESTAMP: parse_timestamp,
    FieldType.BOOLEAN: _boolean,
    FieldType.TEXT_LIST: _text_list,
}


def conform(
    contract: ResourceContract, record: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Convert a raw vendor record to contract types.

    Returns the converted record (unknown fields kept as they came) and the list of violations,
    each `{"field": ..., "reason": ...}`. A record with any violation must not be loaded.
    """
    converted = dict(record)
    violations: list[dict[str, str]] = []
    for name, parse, nullable, field in contract.rules:
        value = record.get(name)
        if value is None:
            if not nullable:
                reason = "missing" if name not in record else "null"
                violations.append({"field": name, "reason": f"required field is {reason}"})
            elif not field.null_allowed and name in record:
                reason = "null: the field may be absent, but its type has no null"
                violations.append({"field": name, "reason": reason})
            continue
        if parse is _text and type(value) is str and value.isascii() and "\x00" not in value:
            pass  # as `_text` would find, without the call: most fields are such text
        else:
            try:
                converted[name] = parse(value)
            except ValueError as exc:
                violations.append({"field": name, "reason": str(exc)})
                continue
        if field.allowed is not None and value not in field.allowed:
            reason = f"{str(value)[:40]!r} is not {field.constraint}"
            violations.append({"field": name, "reason": reason})
    return converted, violations


# The contract's timestamp form with its fields' ranges, as RE2 (Arrow) reads it: a value that
# matches is one `parse_timestamp` reads, unless its day is past its month's end, which Arrow's
# parser refuses too. Year 0 is out, which Python's datetime refuses and Arrow reads.
_CONTRACT_FORM = (
    r"^([1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$"
)


def _text_array(values: list[Any]) -> pa.Array | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not set(map(type, values)) <= {str, type(None)}:  # Arrow would take bytes
        return None
    array = pa.array(values, pa.string())  # refuses a lone surrogate
    return None if pc.any(pc.match_substring(array, "\x00")).as_py() else array


_REFUSED = object()


def _money_array(values: list[Any]) -> pa.Array | None:
    import pyarrow as pa

    amounts = [_exact_amount(value) for value in values]
    if any(amount is _REFUSED for amount in amounts):
        return None
    return pa.array(amounts, FieldType.MONEY.arrow_type)


def _exact_amount(value: Any) -> Any:
    """`value` as an amount Arrow converts to the column exactly, as `_money` reads it; None
    for None; `_REFUSED` for anything else, which `_money` is left to judge. Arrow refuses a
    non-finite amount or one more precise than cents, but wraps a Decimal of more than 38
    digits around without a word (12.000...0 with 41 zeros becomes 0.00): only amounts of at
    most 2 decimals and 16 integer digits reach it."""
    kind = type(value)
    if value is None or (kind is int and -_MONEY_LIMIT < value < _MONEY_LIMIT):
        return value
    if kind is str and _MONEY_STRING.fullmatch(value):
        value = Decimal(value)
    elif kind is not Decimal:  # a boolean, a float (JSON is read as Decimal), a large int
        return _REFUSED
    exponent = value.as_tuple().exponent  # a letter for NaN and infinities
    if type(exponent) is int and exponent >= -MONEY_SCALE and value.adjusted() < (
        MONEY_PRECISION - MONEY_SCALE
    ):
        return value
    return _REFUSED


def _timestamp_array(values: list[Any]) -> pa.Array | None:
    import pyarrow.compute as pc

    array = _text_array(values)
    if array is None or not pc.all(pc.match_substring_regex(array, _CONTRACT_FORM)).as_py():
        return None
    return pc.cast(array, FieldType.TIMESTAMP.arrow_type)


def _boolean_array(values: list[Any]) -> pa.Array | None:
    import pyarrow as pa

    if not set(map(type, values)) <= {bool, type(None)}:
        return None
    return pa.array(values, pa.bool_())


def _text_list_array(values: list[Any]) -> pa.Array:
    import pyarrow as pa

    for value in values:
        if value is not None:
            _text_list(value)
    return pa.array(values, FieldType.TEXT_LIST.arrow_type)


_ARRAY_CONVERTERS = {
    FieldType.TEXT: _text_array,
    FieldType.MONEY: _money_array,
    FieldType.TIMESTAMP: _timestamp_array,
    FieldType.BOOLEAN: _boolean_array,
    FieldType.TEXT_LIST: _text_list_array,
}


def conform_batch(contract: ResourceContract, records: list[Any]) -> list[pa.Array] | None:
    """The contract's columns of `records` as Arrow arrays, each converted and checked as a
    whole: the values `conform` gives, when every record is one `conform` finds no violation
    in; None if any record may break the contract, to be conformed one by one.

    Checking and converting records one by one was most of a sync's own work per record (50,000
    sandbox records: 0.29 s; 0.12 s this way). It may refuse a valid batch (a timestamp in
    another RFC 3339 form, say), never accept a defective one.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if set(map(type, records)) != {dict}:  # `RepeatedKeys`, a defective or non-object record
        return None
    arrays = []
    for name, _, nullable, field in contract.rules:
        values = [record.get(name) for record in records]
        try:
            array = _ARRAY_CONVERTERS[field.type](values)
        except (pa.ArrowException, ValueError, TypeError):
            return None
        if array is None:
            return None
        if array.null_count and not nullable:
            return None
        if array.null_count and not field.null_allowed and any(
            name in record and record[name] is None for record in records
        ):
            return None
        if field.allowed is not None and not pc.all(
            pc.is_in(array, value_set=pa.array(sorted(field.allowed)))
        ).as_py():
            return None
        arrays.append(array)
    return arrays


ORDER_PAYMENTS = ResourceContract(
    name="order_payments",
    path="/v1/order_payments",
    description="Payments made against orders, one row per payment, as the vendor reports them.",
    fields=(
        Field("id", FieldType.TEXT, False, "Primary key of the payment, e.g. pay_00000042."),
        Field("order_id", FieldType.TEXT, False, "The order this payment belongs to."),
        Field("customer_id", FieldType.TEXT, False, "The paying customer."),
        Field("amount", FieldType.MONEY, False, "Amount paid, exact decimal with 2 digits."),
        Field("currency", FieldType.TEXT, False, "ISO 4217 currency code, e.g. EUR."),
        Field(
            "status",
            FieldType.TEXT,
            False,
            "pending, succeeded, failed or refunded.",
            allowed=frozenset({"pending", "succeeded", "failed", "refunded"}),
        ),
        Field("payment_method", FieldType.TEXT, True, "card, paypal, bank_transfer, ..."),
        Field("created_at", FieldType.TIMESTAMP, False, "When the payment was created (UTC)."),
        Field("updated_at", FieldType.TIMESTAMP, False, "Last change at the vendor (UTC)."),
    ),
)

PRODUCTS = ResourceContract(
    name="products",
    path="/v1/products",
    description="The merchant's product catalogue, one row per product.",
    fields=(
        Field("id", FieldType.TEXT, False, "Primary key of the product, e.g. prd_0000042."),
        Field("product_id", FieldType.TEXT, False, "The merchant's own product code (SKU)."),
        Field("name", FieldType.TEXT, False, "Product name."),
        Field("price", FieldType.MONEY, False, "Unit price, exact decimal with 2 digits."),
        Field("currency", FieldType.TEXT, False, "ISO 4217 currency code of the price."),
        Field("description", FieldType.TEXT, True, "Free-text description."),
        Field("category", FieldType.TEXT, True, "Catalogue category."),
        Field("active", FieldType.BOOLEAN, False, "Whether the product is on sale."),
        Field("tags", FieldType.TEXT_LIST, True, "Tags, a JSON list of strings (or absent).",
              null_allowed=False),
        Field("created_at", FieldType.TIMESTAMP, False, "When the product was created (UTC)."),
        Field("updated_at", FieldType.TIMESTAMP, False, "Last change at the vendor (UTC)."),
    ),
)

CONTRACTS: dict[str, ResourceContract] = {c.name: c for c in (ORDER_PAYMENTS, PRODUCTS)}
