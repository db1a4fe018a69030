"""Where the tables land: DuckDB by default, any dlt destination by name.

Credentials of other destinations come from dlt's own providers (environment variables such as
`DESTINATION__POSTGRES__CREDENTIALS`, or `.dlt/secrets.toml`), never from this code.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dlt
from dlt.common.destination import Destination

logger = logging.getLogger(__name__)

DATASET_NAME = "ecom"
PIPELINE_NAME = "ecom"
DEFAULT_DESTINATION = "duckdb"
DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
# A full refresh (write disposition `replace`) loads into a staging dataset and swaps the data
# in one transaction: readers see the old table until then, and a failed refresh leaves it.
REPLACE_STRATEGY = "insert-from-staging"
LOCK_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Warehouse:
    """A dlt destination (`duckdb`, `postgres`, ...) and the local directory of this project's
    files: the DuckDB file when the destination is DuckDB, and dlt's working directories."""

    destination: str = DEFAULT_DESTINATION
    duckdb_path: Path = Path(DEFAULT_DUCKDB_PATH)

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
            return Destination.from_reference(self.destination, replace_strategy=REPLACE_STRATEGY)
        path = self.duckdb_path.resolve()
        if path.stem == DATASET_NAME:
            # DuckDB names the catalog after the file: a catalog `ecom` beside the schema `ecom`
            # makes every `ecom.<table>` reference ambiguous, and DuckDB refuses them all.
            raise ValueError(
                f"the DuckDB file must not be named {path.name} (its catalog would clash with "
                f"the dataset schema `{DATASET_NAME}`); use e.g. {DEFAULT_DUCKDB_PATH}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(str(path), replace_strategy=REPLACE_STRATEGY)

    def pipeline(self, working_dir: str = "default") -> dlt.Pipeline:
        """The dlt pipeline, its working directory in `<duckdb dir>/dlt_pipelines/<working_dir>`."""
        # Rows arrive as Arrow tables; keep dlt's load id on them, as on any other dlt table.
        dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
        return dlt.pipeline(
            pipeline_name=PIPELINE_NAME,
            pipelines_dir=str(self.duckdb_path.resolve().parent / "dlt_pipelines" / working_dir),
            destination=self.dlt_destination(),
            dataset_name=DATASET_NAME,
        )

    @contextmanager
    def writer(self, working_dir: str) -> Iterator[dlt.Pipeline]:
        """`pipeline(working_dir)`, held as the only writer of the dataset, its working
        directory removed afterwards.

        A second writer waits here. DuckDB takes one writer process; on PostgreSQL two merges
        into one table, through one staging dataset, would corrupt each other. With its own
        working directory a run never trips over another's files, nor finishes a crashed run's
        pending load package (the state dlt needs comes from the destination). Both locks are
        released by the operating system or the server when a process dies.
        """
        pipeline = self.pipeline(working_dir)
        try:
            with self._writer_lock(pipeline):
                yield pipeline
        finally:
            shutil.rmtree(Path(pipeline.pipelines_dir), ignore_errors=True)

    @contextmanager
    def _writer_lock(self, pipeline: dlt.Pipeline) -> Iterator[None]:
        if self.is_duckdb:
            with self.duckdb_path.resolve().with_suffix(".lock").open("a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    logger.warning("Waiting for the run that is writing %s", self.duckdb_path)
                    fcntl.flock(lock, fcntl.LOCK_EX)
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
