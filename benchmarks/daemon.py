"""`make bench-daemon`: the project as `make ui` runs it, for some minutes.

Backfills the sandbox's days, starts `dg dev` (webserver and daemon, the sensor at its default
interval) on a shop that changes as `make ui`'s does, and then, several times, updates one
record at the vendor and waits for the sensor's run that lands it: the time from the change to
the run's end, when the row is in the warehouse.
Meanwhile it measures how the Dagster home grows, and at the end how much `make prune` takes
back. Writes its section of BENCHMARKS.md.
"""

import argparse
import random
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from benchmarks.bench import API_KEY, environment, machine
from benchmarks.page import BENCHMARKS_PAGE, write_section
from ecom_assets.launch import launch_command, start_dg_dev, stop_dg_dev
from ecom_assets.prune import prune_runs
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets.ui import CHANGES_PER_SECOND, CREATES_PER_SECOND

POLL_SECONDS = 0.5
LANDING_TIMEOUT_SECONDS = 600


def _size_mib(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20


def _updated_at(database: Path, record_id: str) -> datetime | None:
    try:
        with duckdb.connect(str(database), read_only=True) as connection:
            rows = connection.execute(
                "select updated_at from ecom.order_payments where id = ?", [record_id]
            ).fetchall()
    except duckdb.Error:  # a run is writing it
        return None
    return rows[0][0] if rows else None


def _failure(instance: DagsterInstance, run_id: str) -> str:
    """A failed run's partitions and the first line of each failure it recorded."""
    run = instance.get_run_by_id(run_id)
    partitions = run.tags.get("dagster/partition") or "...".join(
        run.tags.get(f"dagster/asset_partition_range_{end}", "?") for end in ("start", "end"))
    messages = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error if entry.dagster_event else None
        messages.append((error.message if error else entry.message).strip()[:300])
    return f"- {partitions}: " + " / ".join(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--output", type=Path, default=BENCHMARKS_PAGE)
    args = parser.parse_args()
    spec = SandboxSpec.recent(days=7, size=20_000)
    rand = random.Random(1)
    with SandboxServer(spec, api_key=API_KEY, changes_per_second=CHANGES_PER_SECOND,
                       creates_per_second=CREATES_PER_SECOND).start() as sandbox, \
            tempfile.TemporaryDirectory(prefix="ecom-daemon-") as tmp:
        env = environment(Path(tmp), sandbox.base_url, str(spec.start.date()))
        home, database = Path(env["DAGSTER_HOME"]), Path(env["ECOM_DUCKDB_PATH"])
        span = f"{spec.start.date()}...{datetime.now(UTC).date()}"
        subprocess.run(launch_command("ecom/order_payments,ecom/products", span), env=env,
                       cwd=home, check=True, capture_output=True)
        server = start_dg_dev(3097, env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        started, size_at_start = time.monotonic(), _size_mib(home)
        latencies = []
        try:
            time.sleep(60)  # the daemon's first sensor tick watches from now on
            for _ in range(args.changes):
                time.sleep(rand.uniform(0, 60))  # a change at any moment of the interval
                record = rand.choice(sandbox.window("order_payments", spec.start))
                changed_at = time.time()
                sandbox.update_now("order_payments", record["id"])
                deadline = changed_at + LANDING_TIMEOUT_SECONDS
                while (
                    (_updated_at(database, record["id"]) or datetime.min.replace(tzinfo=UTC))
                    .timestamp() < changed_at - 1
                ):
                    if time.time() > deadline:
                        raise SystemExit(f"the change of {record['id']} did not land within "
                                         f"{LANDING_TIMEOUT_SECONDS} s")
                    time.sleep(POLL_SECONDS)
                latencies.append(time.time() - changed_at)
                print(f"  change landed after {latencies[-1]:.1f} s", flush=True)
            minutes = (time.monotonic() - started) / 60
            size_at_end = _size_mib(home)
        finally:
            stop_dg_dev(server)
        with DagsterInstance.from_config(str(home)) as instance:
            runs = len(instance.get_run_records(filters=RunsFilter(
                statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE])))
            failures = [
                _failure(instance, record.dagster_run.run_id)
                for record in instance.get_run_records(
                    filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
            ]
            pruned = prune_runs(instance, older_than=timedelta(0))
        size_after_prune = _size_mib(home)
    growth = size_at_end - size_at_start
    report = "\n".join([
        f"Produced by `make bench-daemon` (benchmarks/daemon.py) on {time.strftime('%Y-%m-%d')}: "
        f"{machine()}.",
        "",
        f"`dg dev` on 7 days of 20,000 order payments, the sensor at its default interval, the "
        f"shop changing as in `make ui` ({CHANGES_PER_SECOND:g} updates and "
        f"{CREATES_PER_SECOND:g} new records a second); {args.changes} changes timed, each "
        "the update of one record at a random moment.",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| change at the vendor to the row in the warehouse, median | "
        f"{statistics.median(latencies):.1f} s |",
        f"| ... min / max | {min(latencies):.1f} s / {max(latencies):.1f} s |",
        f"| runs in {minutes:.1f} minutes (failed) | {runs} ({len(failures)}) |",
        f"| Dagster home growth | {growth:.1f} MiB ({growth / max(runs, 1):.2f} MiB a run, "
        f"{growth / minutes * 60:.0f} MiB an hour) |",
        f"| after `make prune` of all {pruned} runs | {size_after_prune:.1f} MiB (from "
        f"{size_at_end:.1f} MiB) |",
        *(["", "Failed runs:", *failures] if failures else []),
    ])
    print(report)
    write_section("make bench-daemon", report, args.output)


if __name__ == "__main__":
    main()
