"""Where the tables land: DuckDB by default, any dlt destination by its module name.

Credentials of other destinations come from dlt's own providers (environment variables such as
`DESTINATION__POSTGRES__CREDENTIALS`, or `.dlt/secrets.toml`), never from this code.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import shutil
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlt
import duckdb
from dlt.common.destination import Destination
from dlt.destinations.exceptions import DatabaseException, DatabaseUndefinedRelation
from dlt.sources import DltSource

from ecom_assets.contract import ResourceContract
from ecom_assets.ingest.quarantine import QUARANTINE_KEY, VENDOR_FIELD_HINT
from ecom_assets.ingest.report import SyncReport
from ecom_assets.ingest.source import SOURCE_NAME, ecom_source
from ecom_assets.ingest.vendor_session import VendorSession
from ecom_assets.ingest.window import Window
from ecom_assets.settings import DEFAULTS

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

DATASET_NAME = "ecom"
PIPELINE_NAME = "ecom"
# A full refresh (write disposition `replace`) loads into a staging dataset and swaps the data
# in: readers see the old table until then, and a failed refresh leaves it.
REPLACE_STRATEGY = "insert-from-staging"
LOCK_POLL_SECONDS = 2.0
BUSY_LOG_SECONDS = 5.0
RELEASE_POLL_SECONDS = 0.001
STALE_WORKING_DIR_SECONDS = 24 * 3600


# PostgreSQL tables (server, database, table) whose key index this process failed to create.
_INDEX_NOT_CREATED: set[tuple[str, int, str, str]] = set()


class WarehouseBusyError(Exception):
    """Another process holds the DuckDB file and did not let go in time."""


class _ExpectedDltWarnings(logging.Filter):
    """Drops dlt's warning that the `dedup_sort` hint "will be ignored" because the staging
    data is declared deduplicated: that is the design, not a fault. The hint orders the versions
    of a record that a load holds twice; a load whose records are all distinct holds one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Staging data is declared as already deduplicated" not in record.getMessage()


_EXPECTED_DLT_WARNINGS = _ExpectedDltWarnings()


@dataclass(frozen=True)
class Warehouse:
    """A dlt destination (`duckdb`, `postgres`, ...): the DuckDB file when the destination is
    DuckDB, and the directory of dlt's working directories, of which the last run's of each
    resource is kept (`dlt pipeline --pipelines-dir <dir>/latest-<resource> ecom trace`)."""

    destination: str = DEFAULTS.destination
    duckdb_path: Path = DEFAULTS.duckdb_path
    pipelines_dir: Path = DEFAULTS.dlt_pipelines_dir
    duckdb_lock_wait_seconds: float = DEFAULTS.duckdb_lock_wait_seconds

    @property
    def is_duckdb(self) -> bool:
        return self.destination == "duckdb"

    @property
    def loader_file_format(self) -> str | None:
        """Parquet for DuckDB, which reads the Arrow batches' files directly; INSERT statements
        for PostgreSQL (they turn list columns into `jsonb`, where dlt's binary COPY of parquet
        cannot); elsewhere the destination's own choice."""
        return {"duckdb": "parquet", "postgres": "insert_values"}.get(self.destination)

    def dlt_destination(self) -> Destination:
        if not self.is_duckdb:
            destination = Destination.from_reference(
                self.destination, replace_strategy=REPLACE_STRATEGY
            )
            # Others' capabilities may depend on what dlt adds to their parameters later (a
            # SQLAlchemy dialect on credentials passed to `run`).
            if self.destination == "postgres":
                return _capabilities_resolved_once(destination)
            return destination
        path = self.duckdb_path.resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Without transactions dlt commits a merge's or a replace's DELETE before its INSERT:
        # a failing INSERT would leave the table emptied.
        return _capabilities_resolved_once(dlt.destinations.duckdb(
            str(path), replace_strategy=REPLACE_STRATEGY, supports_transactions=True
        ))

    def pipeline(self, working_dir: str, dataset_name: str = DATASET_NAME) -> dlt.Pipeline:
        """The dlt pipeline of `dataset_name`, its working directory `<pipelines_dir>/<dir>`."""
        # Rows arrive as Arrow tables; keep dlt's load id on them, as on any other dlt table.
        dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
        # A kept working directory holds the trace, state and schema, not the loaded files.
        dlt.config["load.delete_completed_jobs"] = True
        logging.getLogger("dlt").addFilter(_EXPECTED_DLT_WARNINGS)  # once: filters are a set
        return dlt.pipeline(
            pipeline_name=PIPELINE_NAME if dataset_name == DATASET_NAME else dataset_name,
            pipelines_dir=str(self.pipelines_dir.resolve() / working_dir),
            destination=self.dlt_destination(),
            dataset_name=dataset_name,
        )

    @contextmanager
    def writer(self, run_id: str, resources: Sequence[str]) -> Iterator[dlt.Pipeline]:
        """`pipeline(run_id)`, held as the only writer of the dataset.

        A second writer waits here. DuckDB takes one writer process; on PostgreSQL two merges
        into one table, through one staging dataset, would corrupt each other. With its own
        working directory a run never trips over another's files, nor finishes a crashed run's
        pending load package (the state dlt needs comes from the destination). Both locks are
        released by the operating system or the server when a process dies. Afterwards the
        working directory is kept as the latest of `resources`, and older ones are removed.
        """
        pipeline = self.pipeline(run_id)
        try:
            with self._writer_lock(pipeline):
                yield pipeline
        finally:
            self._keep_latest(Path(pipeline.pipelines_dir), resources)

    def _keep_latest(self, working_dir: Path, resources: Sequence[str]) -> None:
        """Link `latest-<resource>` to `working_dir` for each of `resources`, and remove the
        working directories that no link names any more: those the links named before, and
        any left untouched for a day (a killed run's). Another run's directory, waiting for
        the lock, is neither."""
        root = working_dir.parent
        links = [root / f"latest-{resource}" for resource in resources]
        previous = {link.resolve() for link in links if link.is_symlink()}
        for link in links:
            link.unlink(missing_ok=True)
            link.symlink_to(working_dir.name)
        kept = {link.resolve() for link in root.glob("latest-*")}
        stale = time.time() - STALE_WORKING_DIR_SECONDS
        for directory in root.iterdir():
            if directory.is_symlink() or not directory.is_dir() or directory in kept:
                continue
            if directory in previous or directory.stat().st_mtime < stale:
                shutil.rmtree(directory, ignore_errors=True)

    @contextmanager
    def _writer_lock(self, pipeline: dlt.Pipeline) -> Iterator[None]:
        if self.is_duckdb:
            with self.duckdb_path.resolve().with_suffix(".lock").open("a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    logger.warning("Waiting for the run that is writing %s", self.duckdb_path)
                    fcntl.flock(lock, fcntl.LOCK_EX)
                # Held open until the run ends: connections of this process share it, and a
                # reader that opens the file meanwhile (a BI tool) waits instead of taking the
                # file from under the run between two of dlt's connections.
                with self._open_when_free():
                    yield
        elif self.destination == "postgres":
            # A session advisory lock, held by a connection of its own for the whole run. It is
            # polled rather than awaited, so that terminating a waiting run takes effect.
            name = f"{PIPELINE_NAME}:{pipeline.dataset_name}"
            key = zlib.crc32(name.encode())
            with pipeline.sql_client() as client:
                while not client.execute_sql("select pg_try_advisory_lock(%s)", key)[0][0]:
                    logger.warning("Waiting for the run that is writing dataset %s", name)
                    time.sleep(LOCK_POLL_SECONDS)
                yield
        else:
            # Dagster's pool `ecom_warehouse_writer` queues the runs launched through the daemon.
            yield

    def _open_when_free(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB file, opened once a process that is not a run of this project (a
        `duckdb` shell, a BI tool) has let go of it: DuckDB lets one process write a file,
        and no other process open it meanwhile."""
        path = self.duckdb_path.resolve()
        deadline = time.monotonic() + self.duckdb_lock_wait_seconds
        next_log = 0.0
        while True:
            try:
                return duckdb.connect(str(path))
            except duckdb.IOException as exc:
                holder = busy_holder(exc)
                if holder is None:
                    raise
            now = time.monotonic()
            if now >= deadline:
                raise WarehouseBusyError(
                    f"{path} is held by {holder} and was not released within "
                    f"{self.duckdb_lock_wait_seconds:.0f} s (ECOM_DUCKDB_LOCK_WAIT_SECONDS). "
                    "Close that program: while it holds the file no run can write it. Short "
                    "read-only sessions (`duckdb -readonly`) between runs are fine"
                )
            if now >= next_log:
                logger.warning(
                    "Waiting for %s to release %s (up to %.0f s more)",
                    holder, path, deadline - now,
                )
                next_log = now + BUSY_LOG_SECONDS
            _wait_for_release(path, until=min(deadline, next_log))

    def source(
        self,
        pipeline: dlt.Pipeline,
        base_url: str,
        session: VendorSession,
        window: Window | Mapping[str, Window],
        *,
        contracts: Sequence[ResourceContract],
        report: SyncReport,
        late_arrival: timedelta,
        into: dlt.Pipeline | None = None,
    ) -> DltSource:
        """`ecom_source`, asking this warehouse what it needs: first-seen times of quarantined
        records and the columns loads gave unknown fields, through `pipeline`; later versions
        of ids, in the tables that `into` (default `pipeline`) writes."""
        return ecom_source(
            base_url, session, window, contracts=contracts, report=report,
            quarantine_first_seen=partial(self.quarantine_first_seen, pipeline),
            stored_columns=partial(self.stored_columns, pipeline),
            held_newer=partial(self.held_newer, into or pipeline),
            late_arrival=late_arrival,
        )

    def stored_columns(self, pipeline: dlt.Pipeline, table: str) -> dict[str, str | None]:
        """`table`'s columns as the loads so far stored them in the schema dlt keeps with the
        data, each with the vendor field it holds for a field the contract does not know (None
        where none is recorded: the contract's, dlt's, and columns older than the hint)."""
        with pipeline.destination_client() as client:
            stored = client.get_stored_schema(SOURCE_NAME)
        if stored is None:
            return {}
        columns = json.loads(stored.schema).get("tables", {}).get(table, {}).get("columns", {})
        return {name: column.get(VENDOR_FIELD_HINT) for name, column in columns.items()}

    def held_newer(
        self, pipeline: dlt.Pipeline, table: str, key: str, cursor: str,
        ids: pa.Array | pa.ChunkedArray, stamps: pa.Array | pa.ChunkedArray,
    ) -> dict[str, datetime] | None:
        """Of `ids` (column `key`), those whose row in `table` has a later `cursor` than
        `stamps` gives them, with that time: one join in the destination per batch of records
        (DuckDB and PostgreSQL; none elsewhere); None if there is no `table` yet. On
        PostgreSQL `key` gets an index where it has none, so that the join, and dlt's merge on
        the same key, look rows up instead of scanning the table (at a million rows, 6 ms
        instead of 79 ms for a batch of 200 ids)."""
        if not self.is_duckdb and self.destination != "postgres":
            return None
        with pipeline.sql_client() as client:
            qualified = client.make_qualified_table_name(table)
            try:
                client.execute_sql(f"select 1 from {qualified} limit 0")
            except DatabaseUndefinedRelation:  # the first load
                return None
            if not self.is_duckdb and pipeline.dataset_name == DATASET_NAME:
                # DuckDB hashes the batch in the join; a full refresh's own dataset is new.
                self._index_key(client, table, key)
            key, cursor = client.escape_column_name(key), client.escape_column_name(cursor)
            later = (
                f"select t.{key}, t.{cursor} from {{incoming}} join {qualified} t "
                f"on t.{key} = b.id where t.{cursor} > b.updated_at"
            )
            native = client.native_connection
            if self.is_duckdb:
                import pyarrow as pa

                native.register("incoming_records", pa.table({"id": ids, "updated_at": stamps}))
                try:
                    rows = native.execute(later.format(incoming="incoming_records b")).fetchall()
                finally:
                    native.unregister("incoming_records")
            else:
                incoming = "unnest(%s::text[], %s::timestamptz[]) b(id, updated_at)"
                rows = client.execute_sql(
                    later.format(incoming=incoming), ids.to_pylist(), stamps.to_pylist()
                )
        return dict(rows or [])

    @staticmethod
    def _index_key(client: Any, table: str, key: str) -> None:
        """PostgreSQL: an index on `table`'s `key`, created if missing. Looked up in the
        catalog first: `create index if not exists` would lock the table against writers, and
        needs the table's owner, on every batch. A creation that fails (a loader that does not
        own the table, a lock or statement timeout) is not tried again by this process."""
        qualified = client.make_qualified_table_name(table)
        credentials = client.credentials
        where = (credentials.host, credentials.port, credentials.database, qualified)
        index = client.make_qualified_table_name(f"{table}__{key}")
        if where in _INDEX_NOT_CREATED or client.execute_sql(
            "select to_regclass(%s)", index
        )[0][0] is not None:
            return
        try:
            client.execute_sql(
                f"create index if not exists {client.escape_column_name(f'{table}__{key}')} "
                f"on {qualified} ({client.escape_column_name(key)})"
            )
        except DatabaseException as exc:  # slower without it, not wrong
            _INDEX_NOT_CREATED.add(where)
            logger.warning("No index on %s (%s) could be created (%s): comparing and merging "
                           "scan the table", qualified, key, type(exc.__cause__ or exc).__name__)

    def quarantine_first_seen(self, pipeline: dlt.Pipeline, table: str) -> dict[str, datetime]:
        """When each record in quarantine `table` was first seen (quarantine is small)."""
        with pipeline.sql_client() as client:
            try:
                rows = client.execute_sql(
                    f"select {QUARANTINE_KEY}, first_seen_at from "
                    f"{client.make_qualified_table_name(table)}"
                )
            except DatabaseUndefinedRelation:
                return {}
        return dict(rows or [])


def _wait_for_release(path: Path, until: float) -> None:
    """Return once no process holds DuckDB's lock on `path`, or at `until` (monotonic time).

    A failed `duckdb.connect` costs about 7 ms of CPU; asking the operating system whether
    the lock is free costs microseconds, so a run can ask every millisecond and take the file
    from a reader that lets go of it for a moment only (a dashboard reopening it at once).
    """
    # Closing any descriptor of a file drops all of the process's POSIX locks on it, DuckDB's
    # included. This one is opened only while another process holds the file, when DuckDB
    # refuses this process a second instance of it: no thread of a run opens it meanwhile.
    try:
        file = path.open("rb+")
    except OSError:  # gone, or not writable: the next `duckdb.connect` says which
        return
    with file:
        while time.monotonic() < until:
            try:
                fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                time.sleep(RELEASE_POLL_SECONDS)
                continue
            fcntl.lockf(file, fcntl.LOCK_UN)
            return


def _capabilities_resolved_once(destination: Destination) -> Destination:
    """`destination`, resolving once the configuration dlt builds its capabilities with.

    dlt resolves it from every config provider each time it asks a destination for its
    capabilities: 13 times in a run with nothing to load, 10 ms each, half of what such a run
    costs beyond Dagster and the libraries. DuckDB's and PostgreSQL's capabilities do not
    depend on that configuration (dlt 1.31), and the providers do not change while a pipeline
    lives. A client's configuration, with its credentials, is still resolved each time.
    """
    resolve = destination.configuration
    resolved: list[Any] = []

    def configuration(initial_config: Any, accept_partial: bool = False) -> Any:
        if not accept_partial:  # a client's: complete, with its credentials
            return resolve(initial_config, accept_partial)
        # Only `capabilities()` asks for a partial one, from the same initial configuration.
        if not resolved:
            resolved.append(resolve(initial_config, accept_partial=True))
        return resolved[0]

    destination.configuration = configuration  # type: ignore[method-assign]
    return destination


def busy_holder(exc: BaseException) -> str | None:
    """The process DuckDB names in a "Conflicting lock is held in ..." error, or None if `exc`
    is not one."""
    message = str(exc)
    marker = "Conflicting lock is held in "
    if marker not in message:
        return None
    held_in = message.split(marker, 1)[1]
    # DuckDB goes on after the PID: advice on read-only mode (to a read-only holder), a link.
    named = re.match(r".*?\(PID \d+\)", held_in)
    return named.group(0) if named else held_in.split(". See also", 1)[0].strip()
