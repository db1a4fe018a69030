"""`make prune`: delete finished runs older than some days from the Dagster home.

Dagster never deletes runs by itself, and a sensor that refreshes every minute makes a
thousand a day. Tick history is bounded by `retention` in dagster.yaml; this bounds the runs:
each deleted run takes its event log, its captured stdout and stderr, and, on SQLite storage,
its per-run database file. Asset materializations and check history stay.
"""

import argparse
import contextlib
import os
from datetime import UTC, datetime, timedelta

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
BATCH = 500


def prune_runs(instance: DagsterInstance, older_than: timedelta) -> int:
    """Delete the finished runs created more than `older_than` ago; how many were deleted."""
    cutoff = datetime.now(UTC) - older_than
    deleted = 0
    while records := instance.get_run_records(
        filters=RunsFilter(created_before=cutoff, statuses=FINISHED), limit=BATCH
    ):
        for record in records:
            run_id = record.dagster_run.run_id
            instance.delete_run(run_id)
            instance.compute_log_manager.delete_logs(prefix=[run_id])
            if isinstance(instance.event_log_storage, SqliteEventLogStorage):
                shard = instance.event_log_storage.path_for_shard(run_id)
                # With its write-ahead log, left when another process (the UI) has it open.
                for path in (shard, f"{shard}-wal", f"{shard}-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
            deleted += 1
    return deleted


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ecom_assets.prune", description=__doc__)
    parser.add_argument("--older-than-days", type=float, required=True)
    args = parser.parse_args()
    with DagsterInstance.get() as instance:
        count = prune_runs(instance, timedelta(days=args.older_than_days))
    print(f"Deleted {count} runs older than {args.older_than_days:g} days.")


if __name__ == "__main__":
    main()
