"""Asset checks that enforce the schema contract and reconcile each load with the vendor.

They are declared with the assets (so they show on each asset in the UI) and evaluated in the
same step, right after the load, as SQL inside the destination: one pass over the table serves
all of them. The ERROR checks are blocking: a failed one stops everything downstream.
"""

import json
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    PartitionsDefinition,
    PreviewWarning,
)
from dlt.destinations.sql_client import SqlClientBase

from ecom_assets.contract import ResourceContract, storable
from ecom_assets.defs.sql import load_filter, query_all, table_columns
from ecom_assets.defs.translator import asset_key
from ecom_assets.ingest import ResourceReport, Window

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class TableStats:
    """What the checks and the run's metadata need of one table, from one scan of it."""

    rows: int
    distinct_ids: int
    null_ids: int
    rows_in_window: int
    written: int  # rows this run's loads wrote
    rows_in_partition: int | None  # rows of the run's one partition (None: not asked)
    nulls_in_window: dict[str, int]  # required column -> nulls within the window

    @classmethod
    def query(
        cls,
        client: SqlClientBase,
        contract: ResourceContract,
        window: Window | None,
        load_ids: Sequence[str],
        partition: Window | None = None,
    ) -> "TableStats":
        key, cursor = contract.primary_key, contract.cursor

        def within(span: Window | None) -> tuple[str, tuple[datetime, ...]]:
            if span is None:
                return "true", ()
            return f"{cursor} >= %s and {cursor} < %s", (span.start, span.end)

        in_window, window_params = within(window)
        in_partition, partition_params = within(partition)
        written, written_params = load_filter(load_ids)
        required = [f.name for f in contract.required_fields]
        selects = [
            "count(*)",
            f"count(distinct {key})",
            f"sum(case when {key} is null then 1 else 0 end)",
            f"sum(case when {in_window} then 1 else 0 end)",
            f"sum(case when {written.removeprefix('where ')} then 1 else 0 end)",
            f"sum(case when {in_partition} then 1 else 0 end)",
            *(f"sum(case when {in_window} and {name} is null then 1 else 0 end)"
              for name in required),
        ]
        params = (*window_params, *written_params, *partition_params,
                  *window_params * len(required))
        # No row when the table does not exist yet (an empty first load creates none).
        [row] = query_all(client, contract.name, "select " + ", ".join(selects),
                          params=params) or [(0,) * len(selects)]
        counts = [int(v or 0) for v in row]
        return cls(
            *counts[:5], rows_in_partition=counts[5] if partition else None,
            nulls_in_window=dict(zip(required, counts[6:], strict=True)),
        )


@dataclass(frozen=True)
class CheckRun:
    """What a check needs to know about the load it verifies."""

    client: SqlClientBase  # an open SQL client of the run's pipeline
    destination: str  # the dlt destination's name: duckdb, postgres, ...
    contract: ResourceContract
    window: Window | None
    received: ResourceReport
    load_ids: Sequence[str]
    stats: TableStats
    columns: dict[str, tuple[str, bool]]  # the table's: name -> (type, nullable)

    @classmethod
    def of_load(
        cls,
        client: SqlClientBase,
        destination: str,
        contract: ResourceContract,
        window: Window | None,
        received: ResourceReport,
        load_ids: Sequence[str],
        partition: Window | None = None,
    ) -> "CheckRun":
        """The load's table, its numbers and columns read once for every check (and the
        rows of `partition`, for the materialization)."""
        stats = TableStats.query(client, contract, window, load_ids, partition)
        columns = table_columns(client, contract.name)
        return cls(client, destination, contract, window, received, load_ids, stats, columns)

    @property
    def unknown_columns(self) -> list[str]:
        """The table's columns that are neither contract fields nor dlt's own."""
        return sorted(
            name for name in self.columns
            if name not in self.contract.field_names and not name.startswith("_dlt")
        )


@dataclass(frozen=True)
class Outcome:
    passed: bool
    metadata: dict[str, Any]


def schema_types(run: CheckRun) -> Outcome:
    """Every contract column exists with its declared type and nullability; no variant columns."""
    actual = run.columns
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
        problems = ["the table does not exist yet"] if run.received.loaded else []
    return Outcome(
        passed=not problems,
        metadata={
            "problems": "; ".join(problems) or "none",
            "columns_checked": len(run.contract.fields),
            # Only nullability and presence where the contract declares no types for this
            # destination.
            "types_checked": all(
                field.type.sql_type(run.destination) for field in run.contract.fields
            ),
        },
    )


def not_null(run: CheckRun) -> Outcome:
    nulls = {name: n for name, n in run.stats.nulls_in_window.items() if n}
    return Outcome(
        passed=not nulls,
        metadata={
            "nulls_by_column": ", ".join(f"{k}: {v}" for k, v in nulls.items()) or "none",
            "scope": _scope(run.window),
        },
    )


def unique_id(run: CheckRun) -> Outcome:
    stats = run.stats
    return Outcome(
        passed=stats.rows == stats.distinct_ids and stats.null_ids == 0,
        metadata={
            "rows": stats.rows,
            "duplicate_ids": stats.rows - stats.distinct_ids - stats.null_ids,
            "null_ids": stats.null_ids,
        },
    )


def no_quarantined_records(run: CheckRun) -> Outcome:
    where, params = load_filter(run.load_ids)
    rows = query_all(
        run.client, run.contract.quarantine_table, "select record_id, violations", where, params
    )
    reasons: Counter[str] = Counter()
    for _, violations in rows:
        for violation in _as_list(violations):
            reasons[f"{violation.get('field')}: {violation.get('reason')}"] += 1
    return Outcome(
        passed=not rows,
        metadata={
            "quarantined": len(rows),
            "sample_ids": ", ".join([r for r, _ in rows if r][:SAMPLE_SIZE]) or "none",
            "violations": "; ".join(f"{r} ({n})" for r, n in reasons.most_common(SAMPLE_SIZE))
            or "none",
            "quarantine_table": f"{run.client.dataset_name}.{run.contract.quarantine_table}",
        },
    )


def reconciled_with_vendor(run: CheckRun) -> Outcome:
    """Every record the vendor listed in the window is in the table or in quarantine.

    The vendor's own count of each part of the window was matched, record for record, while it
    was read (a part that moved was read again); here the count that arrived must be the count
    that was routed, and every valid record routed must be a row of this run's load. Rows of
    the window the vendor no longer lists (updated since, into a later day, or deleted) are not
    a loss: the vendor files their newer version elsewhere.
    """
    received, stats = run.received, run.stats
    routed = received.loaded + received.defective + received.duplicate_copies
    # A full refresh also writes the last valid row of each record now defective.
    expected = received.distinct_loaded + received.kept
    problems = []
    if not received.complete:
        problems.append("the window was not read to its end")
    if routed != received.listed:
        problems.append(f"{received.listed} records listed but {routed} routed")
    if stats.written != expected:
        problems.append(f"{expected} rows to write but {stats.written} written")
    if received.vendor_holds == 0 and stats.rows:
        problems.append(
            f"the vendor answered that it holds no records at all, while the table holds "
            f"{stats.rows}: an outage or a misrouted tenant answers so, and nothing was "
            "removed; materialize this again once the vendor serves its records"
        )
    return Outcome(
        passed=not problems,
        metadata={
            "compared": (
                "the vendor's `total` of each part of the window with the records listed "
                "there, then the records listed with the rows this run wrote plus the records "
                "quarantined"
            ),
            "problems": "; ".join(problems) or "none",
            "vendor_total": received.vendor_total,
            **({} if received.vendor_holds is None else {"vendor_holds": received.vendor_holds}),
            "records_listed": received.listed,
            "rows_written": stats.written,
            "records_quarantined": received.defective,
            "rows_in_window": stats.rows_in_window,
            "rows_in_window_not_listed": max(stats.rows_in_window - stats.written, 0),
            "scope": _scope(run.window),
        },
    )


def known_fields_only(run: CheckRun) -> Outcome:
    mapping = run.received.unknown_fields
    in_table = run.unknown_columns
    metadata: dict[str, Any] = {
        "unknown_fields_this_run": ", ".join(
            field if column == field else f"{storable(field)} -> {column}"
            for field, column in sorted(mapping.items())
        ) or "none",
        "columns_not_in_contract": ", ".join(in_table) or "none",
        "note": "Unknown vendor fields are kept as text columns; add them to the contract.",
    }
    if run.received.non_finite_unknown:
        metadata["non_finite_values_kept_as_text"] = ", ".join(
            f"{field}: {n}" for field, n in sorted(run.received.non_finite_unknown.items())
        )
    return Outcome(passed=not mapping, metadata=metadata)


@dataclass(frozen=True)
class Check:
    evaluate: Callable[[CheckRun], Outcome]
    description: str
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR

    @property
    def name(self) -> str:
        return self.evaluate.__name__

    @property
    def blocking(self) -> bool:
        return self.severity is AssetCheckSeverity.ERROR


CHECKS = (
    Check(schema_types, "Every contract column has its declared type and nullability; no dlt "
          "variant columns."),
    Check(not_null, "No nulls in required columns, within the run's window."),
    Check(unique_id, "The primary key is unique and never null across the table."),
    Check(no_quarantined_records, "No record of this run broke the contract and was quarantined."),
    Check(reconciled_with_vendor, "Every record the vendor listed in the run's window, by its "
          "own `total` for each part of it, is a row this run wrote or in quarantine; a vendor "
          "claiming to hold no records at all is not believed over the table's rows."),
    Check(
        known_fields_only,
        "The vendor sent no fields the contract does not know; new fields are kept as columns.",
        AssetCheckSeverity.WARN,
    ),
)


# What a full refresh must pass on its staged tables before it replaces anything. A record now
# defective keeps its last valid row, so quarantine does not stop a refresh.
STAGED_CHECKS = tuple(c for c in CHECKS if c.blocking and c.evaluate is not no_quarantined_records)


def check_specs(
    contracts: Sequence[ResourceContract], partitions_def: PartitionsDefinition
) -> list[AssetCheckSpec]:
    """The checks of every asset, partitioned like the assets: each run records one evaluation
    per partition it loaded, which the UI shows per partition."""
    with warnings.catch_warnings():
        # Partitioned checks are a preview feature of Dagster 1.13; the warning says only that.
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            AssetCheckSpec(
                name=check.name,
                asset=asset_key(contract),
                description=check.description,
                # Only ERROR checks block: an unknown new vendor field must not stop
                # downstream assets.
                blocking=check.blocking,
                partitions_def=partitions_def,
            )
            for contract in contracts
            for check in CHECKS
        ]


def evaluate_checks(
    run: CheckRun, selected: set[str], partition_keys: Sequence[str]
) -> Iterator[tuple[Check, AssetCheckResult | AssetCheckEvaluation]]:
    """Each selected check, evaluated once, recorded for every partition of the run."""
    for check in CHECKS:
        if check.name in selected:
            outcome = check.evaluate(run)
            for event in check_events(check, asset_key(run.contract), outcome, partition_keys):
                yield check, event


def check_events(
    check: Check, key: AssetKey, outcome: Outcome, partition_keys: Sequence[str]
) -> list[AssetCheckResult | AssetCheckEvaluation]:
    """What Dagster records of one evaluated check: a result for a run of one partition; for a
    range, an evaluation per partition (a result would be recorded without a partition, and
    each partition's planned evaluation would show as skipped). Each is an event Dagster
    stores on its own."""
    result = {
        "asset_key": key, "check_name": check.name, "passed": outcome.passed,
        "severity": check.severity, "metadata": outcome.metadata,
    }
    if len(partition_keys) == 1:
        return [AssetCheckResult(**result)]
    return [
        AssetCheckEvaluation(**result, blocking=check.blocking, partition=partition)
        for partition in partition_keys
    ]


def _scope(window: Window | None) -> str:
    return str(window) if window else "whole table"


def _as_list(violations: Any) -> list[dict[str, Any]]:
    parsed = json.loads(violations) if isinstance(violations, str) else violations
    return parsed if isinstance(parsed, list) else []
