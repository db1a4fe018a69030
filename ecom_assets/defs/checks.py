"""Asset checks that enforce the schema contract, run as SQL inside the destination.

They are declared with the assets (so they show on each asset in the UI) and evaluated in the
same step, right after the load. The ERROR checks are blocking: a failed one stops everything
downstream of the asset in the run.
"""

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec
from dlt.destinations.sql_client import SqlClientBase

from ecom_assets.contract import CONTRACTS, ResourceContract
from ecom_assets.defs.translator import asset_key
from ecom_assets.defs.warehouse import (
    count_rows,
    query_all,
    query_one,
    table_columns,
    window_filter,
)
from ecom_assets.ingest import Window
from ecom_assets.ingest.report import ResourceReport

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class CheckRun:
    """What a check needs to know about the load it verifies."""

    client: SqlClientBase  # an open SQL client of the run's pipeline
    destination: str  # the dlt destination's name: duckdb, postgres, ...
    contract: ResourceContract
    window: Window | None
    received: ResourceReport
    load_ids: Sequence[str]


@dataclass(frozen=True)
class Outcome:
    passed: bool
    metadata: dict[str, Any]


def schema_types(run: CheckRun) -> Outcome:
    """Every contract column exists with its declared type and nullability; no variant columns."""
    actual = table_columns(run.client, run.contract.name)
    problems = []
    for field in run.contract.fields:
        column = actual.get(field.name)
        if column is None:
            problems.append(f"{field.name}: missing")
            continue
        data_type, nullable = column
        declared = field.type.sql_type(run.destination)
        if declared is not None and data_type != declared:
            problems.append(f"{field.name}: {data_type}, contract says {declared}")
        if nullable != field.nullable:
            problems.append(f"{field.name}: nullable={nullable}, contract says {field.nullable}")
    variants = sorted(name for name in actual if "__v_" in name)
    problems += [f"{name}: dlt variant column (a value of the wrong type)" for name in variants]
    if not actual:
        # dlt creates a table with its first row: an empty first load has nothing to check.
        problems = ["the table does not exist yet"] if run.received.valid else []
    return Outcome(
        passed=not problems,
        metadata={
            "problems": problems or ["none"],
            "columns_checked": len(run.contract.fields),
            # Only nullability and presence where the contract declares no types for this
            # destination.
            "types_checked": all(
                field.type.sql_type(run.destination) for field in run.contract.fields
            ),
        },
    )


def not_null(run: CheckRun) -> Outcome:
    required = [f.name for f in run.contract.required_fields]
    where, params = window_filter(run.contract, run.window)
    counts = ", ".join(f"sum(case when {name} is null then 1 else 0 end)" for name in required)
    row = query_one(run.client, run.contract.name, f"select {counts}", where, params)
    nulls = {name: int(n or 0) for name, n in zip(required, row or (), strict=False) if n}
    return Outcome(
        passed=not nulls,
        metadata={"nulls_by_column": nulls or {"none": 0}, "scope": _scope(run.window)},
    )


def unique_id(run: CheckRun) -> Outcome:
    key = run.contract.primary_key
    row = query_one(
        run.client,
        run.contract.name,
        f"select count(*), count(distinct {key}), "
        f"sum(case when {key} is null then 1 else 0 end)",
    )
    rows, distinct, nulls = (int(v or 0) for v in row) if row else (0, 0, 0)
    return Outcome(
        passed=rows == distinct and nulls == 0,
        metadata={"rows": rows, "duplicate_ids": rows - distinct - nulls, "null_ids": nulls},
    )


def no_quarantined_records(run: CheckRun) -> Outcome:
    rows = []
    if run.load_ids:
        marks = ", ".join(["%s"] * len(run.load_ids))
        rows = query_all(
            run.client,
            run.contract.quarantine_table,
            "select record_id, violations",
            f"where _dlt_load_id in ({marks})",
            tuple(run.load_ids),
        )
    reasons: Counter[str] = Counter()
    for _, violations in rows:
        for violation in _as_list(violations):
            reasons[f"{violation.get('field')}: {violation.get('reason')}"] += 1
    return Outcome(
        passed=not rows,
        metadata={
            "quarantined": len(rows),
            "sample_ids": [record_id for record_id, _ in rows if record_id][:SAMPLE_SIZE],
            "violations": dict(reasons.most_common(SAMPLE_SIZE)) or {"none": 0},
            "quarantine_table": f"{run.client.dataset_name}.{run.contract.quarantine_table}",
        },
    )


def matches_vendor_total(run: CheckRun) -> Outcome:
    in_table = count_rows(run.client, run.contract, run.window)
    vendor_total = run.received.vendor_total or 0
    return Outcome(
        passed=in_table == vendor_total,
        metadata={
            "rows_in_table": in_table,
            "vendor_total": vendor_total,
            "difference": in_table - vendor_total,
            "quarantined_this_run": run.received.quarantined,
            "scope": _scope(run.window),
        },
    )


def known_fields_only(run: CheckRun) -> Outcome:
    unknown = sorted(run.received.unknown_fields)
    in_table = sorted(
        name
        for name in table_columns(run.client, run.contract.name)
        if name not in run.contract.field_names and not name.startswith("_dlt")
    )
    return Outcome(
        passed=not unknown,
        metadata={
            "unknown_fields_this_run": unknown or ["none"],
            "columns_not_in_contract": in_table or ["none"],
            "note": "Unknown vendor fields are kept as text columns; add them to the contract.",
        },
    )


@dataclass(frozen=True)
class Check:
    evaluate: Callable[[CheckRun], Outcome]
    description: str
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR

    @property
    def name(self) -> str:
        return self.evaluate.__name__


CHECKS = (
    Check(schema_types, "Every contract column has its declared type and nullability; no dlt "
          "variant columns."),
    Check(not_null, "No nulls in required columns, within the run's window."),
    Check(unique_id, "The primary key `id` is unique and never null across the table."),
    Check(no_quarantined_records, "No record of this run broke the contract and was quarantined."),
    Check(matches_vendor_total, "Rows in the run's window equal the vendor's own `total`."),
    Check(
        known_fields_only,
        "The vendor sent no fields the contract does not know; new fields are kept as columns.",
        AssetCheckSeverity.WARN,
    ),
)


def check_specs() -> list[AssetCheckSpec]:
    # Only ERROR checks block: an unknown new vendor field must not stop downstream assets.
    return [
        AssetCheckSpec(
            name=check.name,
            asset=asset_key(contract),
            description=check.description,
            blocking=check.severity is AssetCheckSeverity.ERROR,
        )
        for contract in CONTRACTS.values()
        for check in CHECKS
    ]


def evaluate_checks(run: CheckRun, selected: set[str]) -> Iterator[AssetCheckResult]:
    for check in CHECKS:
        if check.name in selected:
            outcome = check.evaluate(run)
            yield AssetCheckResult(
                asset_key=asset_key(run.contract),
                check_name=check.name,
                passed=outcome.passed,
                severity=check.severity,
                metadata=outcome.metadata,
            )


def _scope(window: Window | None) -> str:
    return str(window) if window else "whole table"


def _as_list(violations: Any) -> list[dict[str, Any]]:
    parsed = json.loads(violations) if isinstance(violations, str) else violations
    return parsed if isinstance(parsed, list) else []
