"""The Dagster instance of a local Dagster home (`make demo`, `make ui`, tests, benchmarks).

Dagster's SQLite event log builds a new SQLAlchemy engine and opens a new connection for every
read and write. Each asset and check event is mirrored into the home's index database, which
it opened about four times per event: a 31-day backfill, with 6 check evaluations per
partition, spent 2.4 s of its 7.6 s doing so (BENCHMARKS.md). `IndexKeepingSqliteEventLogStorage`
keeps one connection to the index database per process, and one to the database of the run it
records; as the UI shows a live run's log by watching that file change, which a kept
connection's commits to the write-ahead log do not do, the file is touched after each. It
stores a batch of events (Dagster hands over the planned and reported materializations of a
run's partitions as one, once `DAGSTER_EVENT_BATCH_SIZE` is set, which it sets) in one
transaction per database.
Production keeps its instance in PostgreSQL (deploy/dagster.yaml).

`python -m ecom_assets.instance HOME` writes the project's dagster.yaml into the Dagster home
HOME with this event log in HOME/history/runs, where Dagster keeps it by default.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy
import yaml
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

PROJECT_DIR = Path(__file__).resolve().parent.parent  # its dagster.yaml, pyproject.toml...
WAL_CHECKPOINT_PAGES = 100  # 400 KiB
FORK_LOCK_SECONDS = 5  # a fork waits this long for a connection in use to be returned
# Dagster batches events only while this is set; a batch is flushed at its end or at this size.
EVENT_BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = 1000


class IndexKeepingSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, with one connection to the index database and one to the
    run database last used kept per process."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: dict[str, Engine] = {}  # shard -> engine, of this process only
        self._engines_pid = os.getpid()
        self._tables_seen: set[str] = set()
        self._locked_for_fork = False
        # `open`, in the thread storing a batch: its transactions and connections, by shard.
        self._batch = threading.local()
        super().__init__(base_dir, inst_data)
        _STORAGES.add(self)
        os.environ.setdefault(EVENT_BATCH_SIZE_VARIABLE, str(EVENT_BATCH_SIZE))

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict
    ) -> IndexKeepingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def store_event(self, event: EventLogEntry) -> None:
        # An event's writes (the run's log, the index, the asset and check tables) commit
        # together, once per database, where Dagster commits each on its own.
        self.store_event_batch([event])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        # Each event is stored as Dagster stores it, in the open transactions of the batch:
        # the run's database commits first, then the index. If a commit fails, Dagster stores
        # the events again one by one: the index, committed last, then holds each once.
        if len({event.run_id for event in events}) > 1:  # one run's database open at a time
            for event in events:
                self.store_event(event)
            return
        with self._db_lock:
            with ExitStack() as transactions:
                self._batch.open = transactions, {}
                try:
                    self._batch_connection(INDEX_SHARD_NAME)
                    for event in events:
                        super().store_event(event)
                finally:
                    _, written = self._batch.open
                    del self._batch.open
            for shard in written:
                self._committed(shard)

    def _batch_connection(self, shard: str) -> Connection:
        transactions, connections = self._batch.open
        if shard not in connections:
            connection = transactions.enter_context(self._engine_for_use(shard).connect())
            transactions.enter_context(connection.begin())
            connections[shard] = connection
        return connections[shard]

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        if hasattr(self._batch, "open"):
            yield self._batch_connection(shard)  # the lock is held by store_event_batch
            return
        # The lock is held, as Dagster holds it, while a connection is in use: the one kept
        # index connection is never used by two threads at once.
        with self._db_lock, self._engine_for_use(shard).connect() as connection:
            changes = connection.connection.dbapi_connection.total_changes
            with connection.begin():
                yield connection
            if connection.connection.dbapi_connection.total_changes != changes:
                self._committed(shard)

    def _committed(self, shard: str) -> None:
        # The UI shows a live run's log by watching the run's database file: a kept connection
        # commits to its write-ahead log, so the file is touched once the commit is done. The
        # events are stored by then: a failed touch must not have Dagster store them again.
        if shard != INDEX_SHARD_NAME:
            with contextlib.suppress(OSError):
                os.utime(self.path_for_shard(shard))

    def _engine_for_use(self, shard: str) -> Engine:
        engine = self._engine(shard)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    def _engine(self, shard: str) -> Engine:
        if self._engines_pid != os.getpid():
            # Forked while another thread held the lock (see _before_fork): the parent's
            # connection cannot be closed here without disturbing the parent's.
            for engine in self._engines.values():
                engine.dispose(close=False)
            self._engines, self._engines_pid = {}, os.getpid()
        if shard not in self._engines:
            if shard != INDEX_SHARD_NAME:
                # One run's database at a time: the run this process records.
                for other in [s for s in self._engines if s != INDEX_SHARD_NAME]:
                    self._close_engine(other)
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            sqlalchemy.event.listen(engine, "connect", _checkpoint_often)
            self._engines[shard] = engine
        return self._engines[shard]

    def wipe(self) -> None:
        # Dagster deletes the run databases: connections kept to them would write into the
        # deleted files.
        with self._db_lock:
            self._close_engines()
        super().wipe()

    def delete_events(self, run_id: str) -> None:
        super().delete_events(run_id)
        # The run's database is deleted next (`make prune`): closed now, its connection folds
        # the write-ahead log back and removes it, which it could not do once the file is gone.
        with self._db_lock:
            self._close_engine(run_id)

    def has_table(self, table_name: str) -> bool:
        # Dagster asks before each asset or check event it stores, opening the index database
        # once more each time (the kept connection may be in use: this runs inside its
        # transaction). Dagster's migrations add tables and never drop one.
        if table_name not in self._tables_seen:
            if not super().has_table(table_name):
                return False
            self._tables_seen.add(table_name)
        return True

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            self._close_engines()

    def _close_engines(self) -> None:
        for shard in list(self._engines):
            self._close_engine(shard)

    def _close_engine(self, shard: str) -> None:
        engine = self._engines.pop(shard, None)
        if engine is not None and self._engines_pid == os.getpid():
            engine.dispose()

    def _before_fork(self) -> None:
        # No SQLite connection may cross a fork: a child holding a copy would make SQLite
        # believe the file locked by this process, and a commit could land in a log that
        # another process has already deleted. Closed here, reopened on next use.
        self._locked_for_fork = self._db_lock.acquire(timeout=FORK_LOCK_SECONDS)
        if self._locked_for_fork:
            self._close_engines()

    def _after_fork(self) -> None:
        if self._locked_for_fork:
            self._locked_for_fork = False
            self._db_lock.release()


_STORAGES: weakref.WeakSet[IndexKeepingSqliteEventLogStorage] = weakref.WeakSet()
os.register_at_fork(
    before=lambda: [storage._before_fork() for storage in list(_STORAGES)],
    after_in_parent=lambda: [storage._after_fork() for storage in list(_STORAGES)],
    after_in_child=lambda: [storage._after_fork() for storage in list(_STORAGES)],
)


def _checkpoint_often(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # SQLite folds its write-ahead log back into the database when the last connection closes,
    # which a kept one does late or never, and otherwise every 1,000 pages: the log would stay
    # at 4 MiB. A log that one large batch made longer is cut back when it is next reused.
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    dbapi_connection.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096}")


def write_instance_settings(dagster_home: Path) -> None:
    """The project's dagster.yaml in `dagster_home`, with the event log above where Dagster
    keeps it by default (history/runs: existing homes keep their history)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    event_log = {
        "event_log_storage": {
            "module": "ecom_assets.instance",  # also when run as __main__
            "class": IndexKeepingSqliteEventLogStorage.__name__,
            "config": {"base_dir": str(dagster_home.resolve() / "history" / "runs")},
        }
    }
    (dagster_home / "dagster.yaml").write_text(
        (PROJECT_DIR / "dagster.yaml").read_text()
        + "# Written for this Dagster home by ecom_assets/instance.py.\n"
        + yaml.safe_dump(event_log, sort_keys=False)
    )


if __name__ == "__main__":
    write_instance_settings(Path(sys.argv[1]))
