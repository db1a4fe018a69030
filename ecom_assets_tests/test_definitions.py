"""The code location as the UI shows it: loads without secrets, keys, partitions, checks."""

import subprocess
import sys
from datetime import UTC, datetime

from dagster import AssetKey, BackfillPolicy, DailyPartitionsDefinition

ASSET_KEYS = {AssetKey(["ecom", "order_payments"]), AssetKey(["ecom", "products"])}


def _load_in_fresh_interpreter(env: dict[str, str], code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_definitions_load_without_any_secret_or_url_set(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ECOM_PARTITIONS_START": "2026-02-03"}
    out = _load_in_fresh_interpreter(
        env,
        "from ecom_assets.definitions import defs\n"
        "graph = defs.resolve_asset_graph()\n"
        "keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())\n"
        "pd = graph.get(next(iter(graph.get_all_asset_keys()))).partitions_def\n"
        "print(keys, pd.start.date(), pd.timezone)\n",
    )
    assert out.strip() == "['ecom/order_payments', 'ecom/products'] 2026-02-03 UTC"
    assert list(tmp_path.iterdir()) == [], "loading definitions must not write files"


def test_a_sensor_interval_that_is_not_whole_seconds_names_the_setting(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ECOM_SENSOR_INTERVAL_SECONDS": "30s"}
    result = subprocess.run(
        [sys.executable, "-c", "import ecom_assets.definitions"],
        env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ValueError: ECOM_SENSOR_INTERVAL_SECONDS must be whole seconds, at least 1: '30s'"
    )


def test_assets_group_partitions_checks_and_metadata() -> None:
    from ecom_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == ASSET_KEYS
    assets_def = defs.resolve_assets_def(AssetKey(["ecom", "order_payments"]))
    assert assets_def.backfill_policy == BackfillPolicy.single_run()
    assert assets_def.op.pool == "ecom_warehouse_writer"
    for key in ASSET_KEYS:
        node = graph.get(key)
        assert node.group_name == "ecom"
        assert node.kinds == {"dlt", "duckdb"}
        assert node.owners == ["team:data-platform"]
        assert node.description
        partitions = node.partitions_def
        assert isinstance(partitions, DailyPartitionsDefinition)
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        assert partitions.get_last_partition_key() == today
        columns = node.metadata["dagster/column_schema"].value.columns
        assert {c.name: c.constraints.nullable for c in columns}["id"] is False
    payment_columns = graph.get(AssetKey(["ecom", "order_payments"])).metadata[
        "dagster/column_schema"
    ].value.columns
    status = next(c for c in payment_columns if c.name == "status")
    assert status.constraints.other == ["one of failed, pending, refunded, succeeded"]
    for key in ASSET_KEYS:
        checks = {check.name for check in assets_def.check_keys if check.asset_key == key}
        assert checks == {
            "schema_types",
            "not_null",
            "unique_id",
            "no_quarantined_records",
            "matches_vendor_total",
            "known_fields_only",
        }
