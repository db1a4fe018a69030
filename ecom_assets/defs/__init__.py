"""Dagster wiring, one kind of definition per module, gathered in `ecom_assets.definitions`."""
