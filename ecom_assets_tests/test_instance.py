"""The Dagster home's event log (ecom_assets/instance.py): a backfill's per-partition check
results recorded through one kept index connection, read by other processes, and the UI's live
view of a run unchanged."""

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSpec,
    AssetExecutionContext,
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

    # Another process (the UI) reads every evaluation: one per partition and check.
    with DagsterInstance.from_config(str(home)) as reader:
        for name in CHECKS:
            records = reader.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(payments.key, name), limit=100
            )
            assert sorted(r.partition for r in records) == DAYS.get_partition_keys()
            assert {r.status for r in records} == {AssetCheckExecutionRecordStatus.SUCCEEDED}


def test_the_ui_sees_a_run_s_events_while_another_process_writes_them(home: Path) -> None:
    """The webserver shows a live run's log by watching the run's own database file, which
    is why only the index connection is kept."""
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


def _record_a_backfill(home: str) -> None:
    with DagsterInstance.from_config(home) as instance:
        BACKFILL.execute_in_process(instance=instance, tags=WHOLE_RANGE)


def test_a_forked_process_records_through_its_own_index_connection(home: Path) -> None:
    with DagsterInstance.from_config(str(home)) as instance:
        assert BACKFILL.execute_in_process(instance=instance, tags=WHOLE_RANGE).success
        # A child forked while the parent's index connection is open.
        child = multiprocessing.get_context("fork").Process(
            target=lambda: BACKFILL.execute_in_process(instance=instance, tags=WHOLE_RANGE)
        )
        child.start()
        child.join(timeout=120)
        assert child.exitcode == 0
        assert BACKFILL.execute_in_process(instance=instance, tags=WHOLE_RANGE).success

        records = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(payments.key, "first"), limit=100
        )
    assert len(records) == 3 * 10
    assert {r.status for r in records} == {AssetCheckExecutionRecordStatus.SUCCEEDED}


def test_a_home_made_before_keeps_its_history(tmp_path: Path) -> None:
    with DagsterInstance.from_config(str(tmp_path)) as before:  # Dagster's default storage
        assert BACKFILL.execute_in_process(instance=before, tags=WHOLE_RANGE).success

    write_instance_settings(tmp_path)
    with DagsterInstance.from_config(str(tmp_path)) as after:
        assert BACKFILL.execute_in_process(instance=after, tags=WHOLE_RANGE).success
        records = after.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(payments.key, "first"), limit=100
        )
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
