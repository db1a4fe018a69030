"""ecom_assets: a vendor's e-commerce API landed in a warehouse by dlt, as Dagster assets."""

import gc

# What exists when this package is first imported (Dagster's or dlt's modules, in the CLI, the
# daemon or a code server) lives until the process ends. Freezing it keeps Python's collector
# from walking it again on every full collection; `definitions.py` freezes its own imports.
gc.freeze()
