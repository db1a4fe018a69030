"""ecom_assets: a vendor's e-commerce API landed in a warehouse by dlt, as Dagster assets."""

import gc
import os

# What exists when this package is first imported (Dagster's modules, in the CLI, the daemon or
# a code server) lives until the process ends: frozen, Python's collector does not walk it
# again on every full collection. `definitions.py` freezes what the definitions import.
gc.freeze()

# Arrow's default allocator (mimalloc) keeps the memory the extract freed; through malloc the
# load reuses it (BENCHMARKS.md). Arrow reads this once, when it is first imported, which in
# this project's processes comes after this.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
