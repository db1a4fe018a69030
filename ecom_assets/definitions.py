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
    # Loading them imports dlt, DuckDB and requests: objects that live as long as the process.
    # The collector's passes over that growing heap freed little (under 1 MB, now frozen with
    # the rest) and cost every run about 0.1 s; so it waits until the heap is frozen: Python's
    # collector skips frozen objects in every later collection and at exit.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
