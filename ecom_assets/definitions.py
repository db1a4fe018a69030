"""The code location of the dg project: the definitions of the `defs` folder."""

import gc
from functools import cache
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return _defs_folder()


@cache
def _defs_folder() -> dg.Definitions:
    # Built once per process: Dagster loads a run's definitions four more times (to check,
    # plan and execute it). Settings are read once per process as well.
    definitions = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # They and the modules they imported (dlt, DuckDB, Arrow) live as long as the process:
    # frozen, Python's collector skips them in every full collection and at exit.
    gc.freeze()
    return definitions
