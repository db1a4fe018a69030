"""The Dagster home's event log (ecom_assets/instance.py): a backfill's per-partition check
results recorded through one kept index connection, read by other processes, and the UI's live
view of a run unchanged."""

import logging
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import sqlalchemy
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    DagsterEventType,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    JobDefinition,
    MaterializeResult,
    define_asset_job,
    multi_asset,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ecom_assets.instance import IndexKeepingSqliteEventLogStorage, write_instance_settings

DAYS = DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")
CHECKS = ("first", "second", "third")
WHOLE_RANGE = {"dagster/asset_partition_range_start": "2026-01-01",
               "dagster/asset_partition_range_end": "2026-01-10"}


@multi_asset(
    specs=[AssetSpec("payments", partitions_def=DAYS)],
    check_specs=[AssetCheckSpec(name, asset="payments", partitions_def=DAYS) for name in CHECKS],
    partitions_def=DAYS,
    can_subset=True,  # as the project's: its check outputs are optional
)
def payments(context: AssetExecutionContext) -> Iterator[object]:
    """Records its checks as the project does: one evaluation per partition of the range."""
    yield MaterializeResult(asset_key="payments")
    for name in CHECKS:
        for partition in context.partition_keys:
            yield AssetCheckEvaluation(asset_key=context.asset_key, check_name=name,
                                       passed=True, partition=partition)


BACKFILL: JobDefinition = Definitions(
    assets=[payments], jobs=[define_asset_job("backfill", [payments])]
).resolve_job_def("backfill")


def _evaluations(instance: DagsterInstance, check: str) -> list:
    """The check's history as the UI's Checks tab reads it."""
    return list(instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(payments.key, check), limit=100
    ))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    write_instance_settings(tmp_path)
    return tmp_path


def test_a_backfill_records_each_partition_s_checks_through_one_index_connection(
    home: Path,
) -> None:
    index = home / "history" / "runs" / "index.db"
    opened: list[str] = []

    def on_connect(dbapi_connection: object, _record: object) -> None:
        [(_, _, path)] = dbapi_connection.execute("pragma database_list").fetchall()
        opened.append(path)

    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, IndexKeepingSqliteEventLogStorage)
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", on_connect)
        try:
            assert BACKFILL.execute_in_process(instance=instance, tags=WHOLE_RANGE).success
        finally:
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", on_connect)
    # The kept connection, and one for each table Dagster asks about. Dagster's own SQLite
    # event log opens it about 100 times for these 30 evaluations.
    assert opened.count(str(index)) <= 3

    # Another process (the UI) reads every materialization, stored as one batch, and every
    # evaluation: one per partition and check.
    with DagsterInstance.from_config(str(home)) as reader:
        assert reader.get_materialized_partitions(payments.key) == set(DAYS.get_partition_keys())
        for name in CHECKS:
            records = _evaluations(reader, name)
            assert sorted(r.partition for r in records) == DAYS.get_partition_keys()
            assert {r.status for r in records} == {AssetCheckExecutionRecordStatus.SUCCEEDED}


def test_the_ui_sees_a_run_s_events_while_another_process_writes_them(home: Path) -> None:
    """The webserver shows a live run's log by watching the run's database and its
    write-ahead log."""
    seen: list[DagsterEventType] = []
    succeeded = threading.Event()

    def on_event(entry, _cursor) -> None:
        seen.append(entry.dagster_event_type)
        if entry.dagster_event_type == DagsterEventType.RUN_SUCCESS:
            succeeded.set()

    run_id = "0b9b1f5e-7a0e-4d43-9a43-5e3a1d1f0c11"
    with DagsterInstance.from_config(str(home)) as webserver, \
            DagsterInstance.from_config(str(home)) as run_worker:
        webserver.event_log_storage.watch(run_id, None, on_event)
        BACKFILL.execute_in_process(instance=run_worker, tags=WHOLE_RANGE, run_id=run_id)
        assert succeeded.wait(timeout=30)
        webserver.event_log_storage.end_watch(run_id, on_event)
    assert seen.count(DagsterEventType.ASSET_CHECK_EVALUATION) == len(CHECKS) * 10


def test_the_ui_sees_each_event_of_a_live_run_as_it_is_written(home: Path) -> None:
    """The run worker keeps its run's database open, so each commit lands in the write-ahead
    log and the database file the UI watches would change only now and then."""
    run_id = "5c0d3a55-0f7e-4c59-8f0e-2b7b1d5f9a20"
    received: queue.Queue[str] = queue.Queue()

    def on_event(entry: EventLogEntry, _cursor: object) -> None:
        received.put(entry.user_message)

    with DagsterInstance.from_config(str(home)) as webserver, \
            DagsterInstance.from_config(str(home)) as run_worker:

        def record(message: str) -> None:
            entry = EventLogEntry(None, logging.INFO, message, run_id, time.time())
            run_worker.event_log_storage.store_event(entry)

        record("started")  # the run's database exists when someone opens its page
        webserver.event_log_storage.watch(run_id, None, on_event)
        seen: list[str] = []
        for message in ("first", "second", "third"):
            record(message)
            while seen[-1:] != [message]:  # each commit shows the log up to it
                seen.append(received.get(timeout=10))
        webserver.event_log_storage.end_watch(run_id, on_event)
    assert seen == ["started", "first", "second", "third"]


def test_a_batch_of_events_of_two_runs_lands_in_both_runs_logs(home: Path) -> None:
    runs = ("6a3c2f1e-1b1e-4a57-9d0c-3f4e5a6b7c8d", "7b4d3a2f-2c2f-4b68-8e1d-4a5f6b7c8d9e")
    with DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.store_event_batch([
            EventLogEntry(None, logging.INFO, f"{run} {n}", run, time.time())
            for run in runs for n in range(2)
        ])
        for run in runs:
            assert [e.user_message for e in instance.all_logs(run)] == [f"{run} 0", f"{run} 1"]


def _log(instance: DagsterInstance, run_id: str, *messages: str) -> None:
    instance.event_log_storage.store_event_batch(
        [EventLogEntry(None, logging.INFO, message, run_id, time.time()) for message in messages]
    )


def test_a_wiped_home_records_new_events_in_new_run_databases(home: Path) -> None:
    run_id = "8c5e4b3a-3d3a-4c79-8f2e-5b6a7c8d9e0f"
    with DagsterInstance.from_config(str(home)) as instance:
        _log(instance, run_id, "before")
        instance.wipe()
        _log(instance, run_id, "after")
    with DagsterInstance.from_config(str(home)) as reader:
        assert [e.user_message for e in reader.all_logs(run_id)] == ["after"]


def test_events_are_stored_once_even_if_the_ui_cannot_be_told(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: object) -> None:
        raise PermissionError("not allowed to touch the file")

    run_id = "9d6f5c4b-4e4b-4d8a-9f3f-6c7b8d9e0f1a"
    with DagsterInstance.from_config(str(home)) as instance:
        monkeypatch.setattr(os, "utime", refused)
        _log(instance, run_id, "first", "second")  # Dagster would store it again on an error
        assert [e.user_message for e in instance.all_logs(run_id)] == ["first", "second"]


def test_a_large_batch_leaves_no_large_write_ahead_log(home: Path) -> None:
    run_id = "ae7a6d5c-5f5c-4e9b-8a4a-7d8c9e0f1a2b"
    with DagsterInstance.from_config(str(home)) as instance:
        _log(instance, run_id, *["x" * 1000 for _ in range(3000)])  # 3 MB in one transaction
        _log(instance, run_id, "next")
        wal = home / "history" / "runs" / f"{run_id}.db-wal"
        assert wal.stat().st_size < 2**20


def _report_twice(instance: DagsterInstance, reported: Event, resume: Event) -> None:
    instance.report_runless_asset_event(AssetMaterialization("payments", partition="2026-01-02"))
    reported.set()
    resume.wait(timeout=60)
    instance.report_runless_asset_event(AssetMaterialization("payments", partition="2026-01-03"))


def test_a_forked_process_loses_nothing_it_records_through_its_parent_s_instance(
    home: Path,
) -> None:
    """A child forked while the parent's index connection is open records through the
    parent's instance, while the parent closes its connection and another process reads the
    index database (SQLite deletes its log when it believes it is the last one there)."""
    index = home / "history" / "runs" / "index.db"
    fork = multiprocessing.get_context("fork")
    reported, resume = fork.Event(), fork.Event()
    with DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(
            AssetMaterialization("payments", partition="2026-01-01")
        )
        child = fork.Process(target=_report_twice, args=(instance, reported, resume))
        child.start()
        assert reported.wait(timeout=60)
        instance.event_log_storage.dispose()
        read_index = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
                      "db.execute('select count(*) from event_logs').fetchall(); db.close()")
        subprocess.run([sys.executable, "-c", read_index, str(index)], check=True)
        resume.set()
        child.join(timeout=60)
        assert child.exitcode == 0

    with DagsterInstance.from_config(str(home)) as reader:
        recorded = reader.fetch_materializations(payments.key, limit=10).records
    assert sorted(r.partition_key for r in recorded) == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_a_home_made_before_keeps_its_history(tmp_path: Path) -> None:
    with DagsterInstance.from_config(str(tmp_path)) as before:  # Dagster's default storage
        assert BACKFILL.execute_in_process(instance=before, tags=WHOLE_RANGE).success

    write_instance_settings(tmp_path)
    with DagsterInstance.from_config(str(tmp_path)) as after:
        assert BACKFILL.execute_in_process(instance=after, tags=WHOLE_RANGE).success
        records = _evaluations(after, "first")
        runs = after.get_runs()
    assert len(runs) == 2
    assert len(records) == 2 * 10


def test_the_kept_connection_keeps_the_write_ahead_log_small(home: Path) -> None:
    """A kept connection never closes, which is when SQLite would delete its log: the Dagster
    home of a long-running `make ui` would keep 4 MiB of it."""
    log = home / "history" / "runs" / "index.db-wal"
    with DagsterInstance.from_config(str(home)) as instance:
        for _ in range(5):
            assert BACKFILL.execute_in_process(instance=instance, tags=WHOLE_RANGE).success
        assert log.stat().st_size < 1024 * 1024


def test_the_makefile_s_command_writes_a_home_dagster_loads(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "ecom_assets.instance", str(tmp_path)], check=True)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, IndexKeepingSqliteEventLogStorage)
