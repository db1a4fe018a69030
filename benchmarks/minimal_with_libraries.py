"""Variant (f) with the libraries a dlt run into DuckDB imports: dlt, DuckDB and requests (not
Arrow: an empty refresh of this project does without it).

What any Dagster run of a dlt pipeline pays before its step does anything; this project's run
costs are compared with it to tell the libraries' share from the project's own.
"""

import dlt  # noqa: F401  (importing them is what this variant measures)
import duckdb  # noqa: F401
import requests  # noqa: F401

from benchmarks.minimal_dagster import defs  # noqa: F401
