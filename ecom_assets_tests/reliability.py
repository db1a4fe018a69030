"""`make reliability`: the contract's vendor faults and defects, one case each, and what the user
gets. Writes docs/reliability.md (generated: never edit it by hand).

Each case starts a fresh sandbox vendor, makes it misbehave, materializes one partition of
`ecom/order_payments` (or of the case's resource) in process, then compares the table with
what the vendor lists in that day, and searches every log line, Dagster event and file the run
produced for the API key.
Exits non-zero if any case did not behave as expected.
"""

import argparse
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import duckdb
from dagster import DagsterInstance

from ecom_assets.sandbox.server import Fault, SandboxServer, Twice
from ecom_assets_tests.support import SMALL_SPEC, Sync, day, failure_message, partition_key, rows

KEY = "reliability-key-9b7c3e"
PARTITION = 1
# A live shop: records changing every second, all day.
CHANGES_PER_SECOND = 10


@dataclass(frozen=True)
class Case:
    name: str
    misbehave: Callable[[SandboxServer], object]
    loads: str  # "all", "all but the defective" or "nothing" of what the vendor lists
    error: str | None = None  # the start of what the user must be told, if the run fails
    quarantined: int = 0  # records the run must quarantine
    changes_per_second: float = 0
    loaded_before: bool = False  # the partition was materialized once before the misbehaviour
    resource: str = "order_payments"

    @property
    def expected(self) -> str:
        loads = f"{'keeps' if self.loaded_before else 'loads'} {self.loads}" + (
            f", quarantines {self.quarantined}" if self.quarantined else ""
        )
        return f"{loads}; fails: {self.error}" if self.error else loads


def _faults(*faults: Fault, times: int = 1) -> Callable[[SandboxServer], None]:
    def add(sandbox: SandboxServer) -> None:
        for fault in faults:
            sandbox.faults.add("order_payments", fault, times=times)

    return add


def _after_the_first(fault: Fault) -> Callable[[SandboxServer], None]:
    """`fault` for every request after the window's first (an outage outlasting the run)."""
    def misbehave(sandbox: SandboxServer) -> None:
        sandbox.faults.add("order_payments", Fault.stall(0))
        sandbox.faults.add("order_payments", fault, times=10_000)

    return misbehave


def _window(sandbox: SandboxServer, resource: str = "order_payments") -> list[dict]:
    return sandbox.dataset.records(resource, day(PARTITION), day(PARTITION + 1))


def _while_paging(change: Callable[[SandboxServer], None]) -> Callable[[SandboxServer], None]:
    """`change` made to the vendor's data as it answers the window's second request."""
    def misbehave(sandbox: SandboxServer) -> None:
        sandbox.faults.add("order_payments", Fault.stall(0))
        sandbox.faults.add("order_payments", Fault.act(lambda: change(sandbox)))

    return misbehave


def _arriving_late(sandbox: SandboxServer) -> None:
    """A new record filed in the middle of the window's day, long past (replication lag)."""
    middle = day(PARTITION) + timedelta(hours=12)
    sandbox.live.create("order_payments", updated_ms=int(middle.timestamp() * 1000))


def _corrupt(*, resource: str = "order_payments", **fields: object
             ) -> Callable[[SandboxServer], None]:
    return lambda sandbox: sandbox.corrupt(resource, _window(sandbox, resource)[7]["id"], **fields)


def _duplicate(position: int, **copy: object) -> Callable[[SandboxServer], None]:
    return lambda sandbox: sandbox.duplicate(
        "order_payments", _window(sandbox)[position]["id"], amount="1.00", **copy
    )


def _in(seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


CASES = [
    Case("429, Retry-After in seconds", _faults(Fault.status(429, retry_after="1")), "all"),
    Case("429, Retry-After as an HTTP date",
         lambda sb: _faults(Fault.status(429, retry_after=_in(2)))(sb), "all"),
    Case("429, Retry-After of 0 (the backoff applies)",
         _faults(Fault.status(429, retry_after="0")), "all"),
    Case("429, Retry-After beyond the ceiling", _faults(Fault.status(429, retry_after="3600")),
         "nothing", "the vendor asked to wait 3600 s"),
    Case("500, 502, 503 in a row (within the budget)",
         _faults(Fault.status(500), Fault.status(502), Fault.status(503)), "all"),
    Case("504 four times (beyond the budget)", _faults(Fault.status(504), times=4),
         "nothing", "still failing after 3 retries"),
    Case("a response stalling past the timeout", _faults(Fault.stall(3)), "all"),
    Case("malformed JSON once", _faults(Fault.raw(200, '{"data": [{')), "all"),
    Case("truncated JSON on every attempt", _faults(Fault.raw(200, '{"data": ['), times=4),
         "nothing", "still failing after 3 retries"),
    Case("200 without data", _faults(Fault.body({"total": 5})),
         "nothing", "200 response without a list under 'data'"),
    Case("200 with data null", _faults(Fault.body({"data": None, "total": 5})),
         "nothing", "200 response without a list under 'data'"),
    Case("200 with data not a list", _faults(Fault.body({"data": {"id": "x"}, "total": 5})),
         "nothing", "200 response without a list under 'data'"),
    Case("200 without total", _faults(Fault.body({"data": []})),
         "nothing", "200 response without an integer 'total'"),
    Case("200 naming total twice, with different values",
         _faults(Fault.raw(200, '{"data": [], "total": 0, "total": 5}')),
         "nothing", "200 response naming 'total' twice"),
    Case("a page ignoring limit (all of the window)", _faults(Fault.ignore_limit(1000)), "all"),
    Case("a redirect to the same URL", _faults(Fault.redirect()), "all"),
    Case("a connection closed in the middle of a page", _faults(Fault.cut()), "all"),
    Case("a body labelled gzip that is not", _faults(
        Fault.raw(200, "not gzip", headers=(("Content-Encoding", "gzip"),))), "all"),
    Case("a record updated while paging", _while_paging(
        lambda sb: sb.update_now("order_payments", _window(sb)[1]["id"])), "all"),
    Case("a record filed in the window while paging (a late arrival, here hours late)",
         _while_paging(_arriving_late), "all"),
    Case("a record deleted while paging", _while_paging(
        lambda sb: sb.delete("order_payments", _window(sb)[1]["id"])), "all"),
    Case(f"{CHANGES_PER_SECOND} records changing every second", lambda sb: None, "all",
         changes_per_second=CHANGES_PER_SECOND),
    Case("error bodies echoing the key, retried",
         _faults(Fault.status(503, echo_url=True), Fault.status(429, echo_url=True)), "all"),
    Case("a 400 whose body echoes the key", _faults(Fault.status(400, echo_url=True)),
         "nothing", "the vendor rejected the request with HTTP 400"),
    Case("an empty answer (data [], total 0) once", _faults(Fault.body({"data": [], "total": 0})),
         "all"),
    Case("an empty answer (data [], total 0) three times in a row",
         _faults(Fault.body({"data": [], "total": 0}), times=3), "all"),
    Case("an empty answer (data [], total 0) to every request after the first",
         _after_the_first(Fault.body({"data": [], "total": 0})),
         "nothing", "the vendor counts no records there now"),
    Case("a vendor suddenly serving nothing", lambda sb: sb.serve_empty("order_payments"),
         "nothing"),
    Case("a vendor suddenly serving nothing, after a first load",
         lambda sb: sb.serve_empty("order_payments"), "all", "Blocking checks failed",
         loaded_before=True),
    Case("a required field null", _corrupt(customer_id=None), "all but the defective",
         "Blocking checks failed", quarantined=1),
    Case("a required field of the wrong type (a number for a string)", _corrupt(customer_id=42),
         "all but the defective", "Blocking checks failed", quarantined=1),
    Case("money as NaN", _corrupt(amount=float("nan")), "all but the defective",
         "Blocking checks failed", quarantined=1),
    Case("money as a string off the contract's form (1_000.50)", _corrupt(amount="1_000.50"),
         "all but the defective", "Blocking checks failed", quarantined=1),
    Case("a lone surrogate (\\ud800) in a string", _corrupt(customer_id="cus_\ud800"),
         "all but the defective", "Blocking checks failed", quarantined=1),
    Case("a NUL (\\u0000) in a string", _corrupt(customer_id="cus_\x00X"),
         "all but the defective", "Blocking checks failed", quarantined=1),
    Case("Infinity in an unknown field", _corrupt(fraud_score=float("inf")), "all"),
    Case("a twin field (customerId beside customer_id)", _corrupt(customerId="X"), "all"),
    Case("a field named twice, with different values", _corrupt(amount=Twice(10, 12.5)),
         "all but the defective", "Blocking checks failed", quarantined=1),
    Case("a field named \"\"", _corrupt(**{"": "x"}), "all"),
    Case("a far-future updated_at", _corrupt(updated_at="9999-12-31T23:59:59.999Z"),
         "all but the defective", "Blocking checks failed", quarantined=1),
    Case("a null updated_at", _corrupt(updated_at=None), "all but the defective",
         "Blocking checks failed", quarantined=1),
    Case("a malformed updated_at (an ISO 8601 week date)",
         _corrupt(updated_at="2026-W01-5T10:00:00.000Z"), "all but the defective",
         "Blocking checks failed", quarantined=1),
    Case("products: active as a string", _corrupt(resource="products", active="true"),
         "all but the defective", "Blocking checks failed", quarantined=1, resource="products"),
    Case("products: tags not a list of strings", _corrupt(resource="products", tags=[1, 2]),
         "all but the defective", "Blocking checks failed", quarantined=1, resource="products"),
    Case("products: price as NaN", _corrupt(resource="products", price=float("nan")),
         "all but the defective", "Blocking checks failed", quarantined=1, resource="products"),
    Case("one id twice with different content", _duplicate(99), "all but the defective",
         "Blocking checks failed", quarantined=2),
    Case("one id twice, the copy filed hours later",
         lambda sb: _duplicate(10, updated_at=_window(sb)[-5]["updated_at"])(sb),
         "all but the defective", "Blocking checks failed", quarantined=2),
]


@dataclass
class Outcome:
    case: Case
    error: str | None
    expected_rows: int
    loaded_rows: int
    quarantined: int
    duplicates: int
    key_hits: int
    seconds: float

    @property
    def ok(self) -> bool:
        error_ok = (self.error is None) if self.case.error is None else (
            self.error is not None and self.case.error in self.error
        )
        return (
            error_ok
            and self.loaded_rows == self.expected_rows
            and self.quarantined == self.case.quarantined
            and self.duplicates == 0
            and self.key_hits == 0
        )

    @property
    def observed(self) -> str:
        loaded = f"loaded {self.loaded_rows}" + (
            f", quarantined {self.quarantined}" if self.quarantined else ""
        )
        if self.error is None:
            return loaded
        message = self.error.split("UserFailureData")[0]
        # What the UI shows first: the failure's own words, without its Python class.
        message = re.sub(r"^[\w.]+\.(Failure|\w*Error): ", "", message.strip())
        message = re.sub(r"^.*?the sync of .*? failed: ", "", message)
        return f"{loaded}; failed: {' '.join(message.split())[:90]}"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _count(database: Path, sql: str) -> list[tuple]:
    try:
        return rows(database, sql)
    except (duckdb.CatalogException, duckdb.IOException):  # nothing was ever loaded
        return []


def run_case(case: Case, workdir: Path) -> Outcome:
    database = workdir / "data" / "warehouse.duckdb"
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    started = time.monotonic()
    try:
        with SandboxServer(
            SMALL_SPEC, api_key=KEY, changes_per_second=case.changes_per_second
        ).start() as sandbox, DagsterInstance.ephemeral(tempdir=str(workdir)) as instance:
            os.environ.update(ECOM_API_BASE_URL=sandbox.base_url, ECOM_API_KEY=KEY)
            sync = Sync(instance, database, request_timeout=1.0)
            if case.loaded_before:
                sync(partition_key(PARTITION), resources=(case.resource,))
            case.misbehave(sandbox)
            result = sync(partition_key(PARTITION), resources=(case.resource,))
            error = None if result.success else failure_message(result)
            events = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
            with sandbox.live.paused():
                sandbox.serve_empty(case.resource, False)
                listed = {r["id"] for r in sandbox.window(
                    case.resource, day(PARTITION), day(PARTITION + 1))}
    finally:
        root.removeHandler(capture)
    ids = [r[0] for r in _count(database, f"select id from ecom.{case.resource}")]
    quarantined = _count(database, f"select count(*) from ecom.{case.resource}_quarantine")
    expected = {"all": len(listed), "all but the defective": len(listed) - 1,
                "nothing": 0}[case.loads]
    key = KEY.encode()
    file_hits = sum(path.read_bytes().count(key) for path in workdir.rglob("*") if path.is_file())
    text_hits = "\n".join([*capture.lines, events, error or ""]).count(KEY)
    return Outcome(
        case, error, expected, len(set(ids) & listed), quarantined[0][0] if quarantined else 0,
        len(ids) - len(set(ids)), file_hits + text_hits, time.monotonic() - started,
    )


def report(outcomes: list[Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    lines = [
        "# Reliability: the vendor's faults and defects, one case each",
        "",
        "Generated by `make reliability` (`ecom_assets_tests/reliability.py`); do not edit.",
        f"Generated on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Each case serves {SMALL_SPEC.size:,} records of each resource over {SMALL_SPEC.days} "
        "days from the sandbox vendor, makes it misbehave as the contract "
        "(`../shared/vendor-api/openapi.yaml`) says real vendors do, runs the sync of one of "
        "those days (of order payments, of products where the case says so), and compares the "
        "table with what the vendor lists in that day afterwards. "
        "Rows: expected / loaded. Key hits: how often the API key appears in "
        "the logs, the Dagster events, the error and every file the run wrote (it must be 0). "
        "The sync's own tests also run against a live shop changing up to 100 records every "
        "second (`ecom_assets_tests/test_live_shop.py`).",
        "",
        "| case | expected | observed | rows | duplicates | key hits | ok |",
        "| --- | --- | --- | --- | ---: | ---: | --- |",
        *(
            f"| {o.case.name} | {o.case.expected} | {o.observed.replace('|', '/')} | "
            f"{o.expected_rows} / {o.loaded_rows} | {o.duplicates} | {o.key_hits} | "
            f"{'yes' if o.ok else 'NO'} |"
            for o in outcomes
        ),
        "",
        f"{len(outcomes) - len(failed)} of {len(outcomes)} cases behaved as expected.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ecom_assets_tests.reliability")
    parser.add_argument("--output", type=Path, help="write the report here (markdown)")
    args = parser.parse_args()
    outcomes = []
    for case in CASES:
        with tempfile.TemporaryDirectory(prefix="ecom-reliability-") as tmp:
            outcomes.append(run_case(case, Path(tmp)))
        outcome = outcomes[-1]
        print(f"  {'ok' if outcome.ok else 'NOT OK'}  {case.name}: {outcome.observed} "
              f"({outcome.seconds:.1f} s)", file=sys.stderr, flush=True)
    text = report(outcomes)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
