"""ecom_assets: a vendor's e-commerce API landed in a warehouse by dlt, as Dagster assets."""

import gc
import os

# What exists when this package is first imported (Dagster's or dlt's modules, in the CLI, the
# daemon or a code server) lives until the process ends. Freezing it keeps Python's collector
# from walking it again on every full collection (importing the definitions after this takes
# 0.1 s less); `definitions.py` freezes its own imports.
gc.freeze()

# Arrow's default allocator (mimalloc) keeps the memory the extract freed; through malloc, the
# load reuses it, and a 1M-record backfill peaks some 80 MiB lower (BENCHMARKS.md). Arrow reads
# this once, when it is first imported, which in this project's processes comes after this.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
