"""`make bench-refresh`: does a sync cost what changed, not what the table holds?

Backfills N order payments (default 1,000,000) with `dagster asset materialize`, then lets the
sandbox vendor update 100 of them (their `updated_at` moves to now) and refreshes today's
partition. For both runs it reads Dagster's own event log: the step's duration (the work that
can grow with the data: extract, load, metadata and checks) and the checks' share of it (from
the asset's materialization to its last check result). Whole-process times are printed too;
they add the CLI's fixed start-up and run overhead.
"""

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from benchmarks.bench import API_KEY, environment, machine, measure_process
from ecom_assets.demo import materialize_command
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer

CHANGED = 100
SELECTION = "ecom/order_payments"


def _step_and_checks_seconds(dagster_home: Path) -> tuple[float, float, int]:
    """The latest run's step duration, the time from its materialization to its last check,
    and how many records it loaded."""
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        [run] = instance.get_runs(limit=1)
        events = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
    def first(kind: DagsterEventType) -> float:
        return min(e.timestamp for e in events if e.dagster_event.event_type == kind)

    def last(kind: DagsterEventType) -> float:
        return max(e.timestamp for e in events if e.dagster_event.event_type == kind)

    step = last(DagsterEventType.STEP_SUCCESS) - first(DagsterEventType.STEP_START)
    checks = last(DagsterEventType.ASSET_CHECK_EVALUATION) - last(
        DagsterEventType.ASSET_MATERIALIZATION
    )
    materialization = next(
        e.dagster_event.event_specific_data.materialization
        for e in events
        if e.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
    )
    return step, checks, materialization.metadata["records_loaded"].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()

    spec = SandboxSpec(size=args.records)
    today = datetime.now(UTC).date()
    with (
        SandboxServer(spec, api_key=API_KEY).start() as sandbox,
        tempfile.TemporaryDirectory(prefix="ecom-refresh-") as tmp,
    ):
        records = sandbox.dataset.all("order_payments")
        workdir = Path(tmp)
        (workdir / "data").mkdir()
        env = environment(workdir, sandbox.base_url, spec)
        dagster_home = Path(env["DAGSTER_HOME"])
        last_day = spec.start.date() + timedelta(days=spec.days - 1)

        full_wall, full_rss = measure_process(
            materialize_command(SELECTION, f"{spec.start.date()}...{last_day}"), env
        )
        full_step, full_checks, full_loaded = _step_and_checks_seconds(dagster_home)

        step = max(1, len(records) // CHANGED)
        for record in records[::step][:CHANGED]:
            sandbox.update_now("order_payments", record["id"])
        refresh_wall, _ = measure_process(materialize_command(SELECTION, str(today)), env)
        refresh_step, refresh_checks, refresh_loaded = _step_and_checks_seconds(dagster_home)

    def share(part: float, whole: float) -> str:
        return f"{100 * part / whole:.1f}%"

    table = "\n".join([
        f"### Cost of a refresh and of the checks on a table of {args.records:,} order payments",
        "",
        f"Measured by `make bench-refresh` (benchmarks/refresh.py) on {time.strftime('%Y-%m-%d')}:"
        f" {machine()}. Step times are Dagster's own (STEP_START to STEP_SUCCESS); checks are "
        "the time from the asset's materialization to its last check result.",
        "",
        "| run | whole process | step | checks | step vs full load | checks vs full load |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| full load: {full_loaded:,} records loaded ({full_rss / 1024:.0f} MiB peak RSS) | "
        f"{full_wall:.2f} s | {full_step:.2f} s | {full_checks:.2f} s | 100% | "
        f"{share(full_checks, full_step)} |",
        f"| refresh of today ({CHANGED} records changed): {refresh_loaded} loaded | "
        f"{refresh_wall:.2f} s | "
        f"{refresh_step:.2f} s | {refresh_checks:.2f} s | {share(refresh_step, full_step)} | "
        f"{share(refresh_checks, full_step)} |",
    ])
    print(table)


if __name__ == "__main__":
    main()
