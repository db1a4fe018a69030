"""`make reliability`: the contract's vendor faults, one case each, and what the user gets.

Each case starts a fresh sandbox vendor, makes it misbehave, materializes one partition of
`ecom/order_payments` in process, then compares the table with the sandbox's own data and
searches every log line, Dagster event and file the run produced for the API key. Prints a
table and exits non-zero if any case did not behave as expected.
"""

import logging
import os
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

from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import (
    SMALL_SPEC,
    Sync,
    day,
    failure_message,
    partition_key,
    rows,
)

KEY = "reliability-key-9b7c3e"
PARTITION = 1


@dataclass(frozen=True)
class Case:
    name: str
    misbehave: Callable[[SandboxServer], None]
    loads_all: bool  # every record of the window must end up in the table
    error: str | None = None  # the start of what the user must be told, if the run fails

    @property
    def expected(self) -> str:
        loads = "loads every record" if self.loads_all else "loads nothing"
        return f"{loads}; fails: {self.error}" if self.error else loads


def _faults(*faults: Fault, times: int = 1) -> Callable[[SandboxServer], None]:
    def add(sandbox: SandboxServer) -> None:
        for fault in faults:
            sandbox.faults.add("order_payments", fault, times=times)

    return add


def _window(sandbox: SandboxServer) -> list[dict]:
    return sandbox.dataset.records("order_payments", day(PARTITION), day(PARTITION + 1))


def _update_a_record_while_paging(sandbox: SandboxServer) -> None:
    moved = _window(sandbox)[1]
    sandbox.faults.add("order_payments", Fault.stall(0))
    sandbox.faults.add(
        "order_payments", Fault.act(lambda: sandbox.update_now("order_payments", moved["id"]))
    )


def _in(seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


CASES = [
    Case("429, Retry-After in seconds", _faults(Fault.status(429, retry_after="1")), True),
    Case("429, Retry-After as an HTTP date",
         lambda sb: _faults(Fault.status(429, retry_after=_in(2)))(sb), True),
    Case("429, Retry-After beyond the ceiling", _faults(Fault.status(429, retry_after="3600")),
         False, "the vendor asked to wait 3600 s"),
    Case("500, 502, 503 in a row (within the budget)",
         _faults(Fault.status(500), Fault.status(502), Fault.status(503)), True),
    Case("504 four times (beyond the budget)", _faults(Fault.status(504), times=4),
         False, "still failing after 3 retries"),
    Case("a response stalling past the timeout", _faults(Fault.stall(3)), True),
    Case("malformed JSON once", _faults(Fault.raw(200, '{"data": [{')), True),
    Case("truncated JSON on every attempt", _faults(Fault.raw(200, '{"data": ['), times=4),
         False, "still failing after 3 retries"),
    Case("200 without data", _faults(Fault.body({"total": 5})),
         False, "200 response without a list under 'data'"),
    Case("200 with data null", _faults(Fault.body({"data": None, "total": 5})),
         False, "200 response without a list under 'data'"),
    Case("200 with data not a list", _faults(Fault.body({"data": {"id": "x"}, "total": 5})),
         False, "200 response without a list under 'data'"),
    Case("200 without total", _faults(Fault.body({"data": []})),
         False, "200 response without an integer 'total'"),
    Case("a page ignoring limit (all of the window)", _faults(Fault.ignore_limit(1000)), True),
    # Not in the contract, but any HTTP vendor can do it.
    Case("a redirect to the same URL", _faults(Fault.redirect()), True),
    Case("a connection closed in the middle of a page", _faults(Fault.cut()), True),
    # The moved record's old version stays until its new day is loaded: the check says so.
    Case("a record updated while paging", _update_a_record_while_paging, True,
         "matches_vendor_total"),
    Case("error bodies echoing the key, retried",
         _faults(Fault.status(503, echo_url=True), Fault.status(429, echo_url=True)), True),
    Case("a 400 whose body echoes the key", _faults(Fault.status(400, echo_url=True)),
         False, "the vendor rejected the request with HTTP 400"),
]


@dataclass
class Outcome:
    case: Case
    error: str | None
    expected_rows: int
    loaded_rows: int
    duplicates: int
    key_hits: int

    @property
    def ok(self) -> bool:
        error_ok = (self.error is None) if self.case.error is None else (
            self.error is not None and self.case.error in self.error
        )
        return (
            error_ok
            and self.loaded_rows == self.expected_rows
            and self.duplicates == 0
            and self.key_hits == 0
        )

    @property
    def observed(self) -> str:
        loaded = f"loaded {self.loaded_rows}"
        if self.error is None:
            return loaded
        message = self.error.split(" failed: ", 1)[-1].split("UserFailureData")[0]
        message = " ".join(message.split())
        return f"{loaded}; failed: {message[:90]}"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _loaded_ids(database: Path) -> list[str]:
    try:
        return [r[0] for r in rows(database, "select id from ecom.order_payments")]
    except (duckdb.CatalogException, duckdb.IOException):  # nothing was ever loaded
        return []


def run_case(case: Case, workdir: Path) -> Outcome:
    database = workdir / "data" / "warehouse.duckdb"
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        with SandboxServer(SMALL_SPEC, api_key=KEY).start() as sandbox, DagsterInstance.local_temp(
            tempdir=str(workdir), overrides={"telemetry": {"enabled": False}}
        ) as instance:
            os.environ.update(
                ECOM_API_BASE_URL=sandbox.base_url, ECOM_API_KEY=KEY, ECOM_DUCKDB_PATH=str(database)
            )
            window = {r["id"] for r in _window(sandbox)}
            case.misbehave(sandbox)
            result = Sync(instance, database, request_timeout=1.0)(
                partition_key(PARTITION), resources=("order_payments",)
            )
            error = None if result.success else failure_message(result)
            events = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    finally:
        root.removeHandler(capture)
    ids = _loaded_ids(database)
    key = KEY.encode()
    file_hits = sum(path.read_bytes().count(key) for path in workdir.rglob("*") if path.is_file())
    text_hits = "\n".join([*capture.lines, events, error or ""]).count(KEY)
    return Outcome(
        case,
        error,
        len(window) if case.loads_all else 0,
        len(set(ids) & window),
        len(ids) - len(set(ids)),
        file_hits + text_hits,
    )


def main() -> int:
    outcomes = []
    for case in CASES:
        with tempfile.TemporaryDirectory(prefix="ecom-reliability-") as tmp:
            started = time.monotonic()
            outcomes.append(run_case(case, Path(tmp)))
        print(f"  {case.name}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    print("| case | expected | observed | rows expected / loaded | duplicates | key hits | ok |")
    print("| --- | --- | --- | --- | ---: | ---: | --- |")
    for o in outcomes:
        print(
            f"| {o.case.name} | {o.case.expected} | {o.observed.replace('|', '/')} "
            f"| {o.expected_rows} / {o.loaded_rows} | {o.duplicates} | {o.key_hits} "
            f"| {'yes' if o.ok else 'NO'} |"
        )
    failed = [o.case.name for o in outcomes if not o.ok]
    print(f"\n{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
