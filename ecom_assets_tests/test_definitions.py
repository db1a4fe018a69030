"""The code location as dg and the UI load it, and a new resource as one declaration."""

import json
import os
import re
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, BackfillPolicy, DagsterInstance, DailyPartitionsDefinition

from benchmarks.page import read_section
from ecom_assets.contract import CONTRACTS, Field, FieldType, ResourceContract
from ecom_assets.definitions import defs
from ecom_assets.defs.assets import build_sync_assets
from ecom_assets.defs.checks import CHECKS
from ecom_assets.defs.ecom import build_definitions
from ecom_assets.defs.partitions import daily_partitions
from ecom_assets.launch import PROJECT_DIR, dg
from ecom_assets.sandbox.data import Code, SandboxResource, SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets.settings import read_settings
from ecom_assets_tests.docs_tables import COMMAND, TABLES
from ecom_assets_tests.support import Sync, money, rows

ASSET_KEYS = {AssetKey(["ecom", name]) for name in CONTRACTS}
SETTINGS_FOR_TESTS = read_settings({"ECOM_PARTITIONS_START": "2026-01-01"})


def _dg(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """A dg command on the project, with nothing of the project's configuration set."""
    environment = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path),
        "VIRTUAL_ENV": os.environ.get("VIRTUAL_ENV", str(Path(dg()).parent.parent)),
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0", **env,
    }
    return subprocess.run([dg(), *args, "--target-path", str(PROJECT_DIR)], env=environment,
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)


@pytest.mark.system
def test_dg_loads_the_code_location_without_any_secret_or_url_set(tmp_path: Path) -> None:
    result = _dg(tmp_path, "list", "defs", "--json", ECOM_PARTITIONS_START="2026-02-03")

    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assets = {entry["asset_key"] for entry in listed["assets"]}
    assert assets == {key.to_user_string() for key in ASSET_KEYS}
    assert {s["name"] for s in listed["sensors"]} == {"ecom_vendor_changes"}
    assert {s["name"] for s in listed["schedules"]} == {"ecom_daily_refresh"}
    assert "Warning" not in result.stderr


@pytest.mark.system
def test_a_bad_setting_fails_the_code_location_naming_the_setting(tmp_path: Path) -> None:
    result = _dg(tmp_path, "check", "defs", ECOM_PARTITIONS_START="2026-13-01")

    assert result.returncode != 0
    assert "ECOM_PARTITIONS_START must be a day as YYYY-MM-DD, e.g. 2026-01-01; got " \
        "'2026-13-01'" in result.stdout + result.stderr


@pytest.mark.unit
def test_the_code_location_is_built_once_per_process() -> None:
    # Dagster loads a run's definitions four more times to check, plan and execute it.
    assert defs() is defs()


# Loads the code location in a new process (Dagster imported), counting the collector's passes.
LOAD_COUNTING_COLLECTIONS = """
import gc, sys
if sys.argv[1] == "disabled":
    gc.disable()
from ecom_assets.definitions import defs
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
defs()
print(len(passes), gc.isenabled(), gc.get_freeze_count() > 0)
"""


@pytest.mark.unit
@pytest.mark.parametrize("collector", ["enabled", "disabled"])
def test_loading_the_code_location_runs_no_collection_and_leaves_the_collector_as_it_was(
    collector: str,
) -> None:
    # Its imports (dlt, DuckDB) only add objects that live as long as the process: full
    # passes over them cost every run about 0.1 s and free nothing.
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_COUNTING_COLLECTIONS, collector], capture_output=True,
        text=True, timeout=120, env={**os.environ, "ECOM_PARTITIONS_START": "2026-01-01"},
        check=True,
    )

    passes, enabled, frozen = loaded.stdout.split()
    assert int(passes) == 0
    assert enabled == str(collector == "enabled")
    assert frozen == "True"


@pytest.mark.unit
def test_the_definitions_use_no_deprecated_dagster_api() -> None:
    # The suite ignores DeprecationWarning (libraries emit them on import): here it counts.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_definitions(settings=SETTINGS_FOR_TESTS)

    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == []


@pytest.mark.unit
def test_assets_group_partitions_checks_freshness_and_metadata() -> None:
    defs = build_definitions(settings=SETTINGS_FOR_TESTS)

    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == ASSET_KEYS
    assets_def = defs.resolve_assets_def(AssetKey(["ecom", "order_payments"]))
    assert assets_def.backfill_policy == BackfillPolicy.single_run()
    assert assets_def.op.pool == "ecom_warehouse_writer"
    for key in ASSET_KEYS:
        node = graph.get(key)
        assert (node.group_name, node.kinds, node.owners) == (
            "ecom", {"dlt", "duckdb"}, ["team:data-platform"]
        )
        assert node.description and node.freshness_policy is not None
        partitions = node.partitions_def
        assert isinstance(partitions, DailyPartitionsDefinition)
        assert partitions.get_last_partition_key() == datetime.now(UTC).strftime("%Y-%m-%d")
        columns = node.metadata["dagster/column_schema"].value.columns
        assert {c.name: c.constraints.nullable for c in columns}["id"] is False
        assert not [name for name in node.metadata if name.startswith("dagster_dlt/")]
        checks = {check.name for check in assets_def.check_keys if check.asset_key == key}
        assert checks == {check.name for check in CHECKS}
    status = next(
        c for c in graph.get(AssetKey(["ecom", "order_payments"])).metadata[
            "dagster/column_schema"].value.columns if c.name == "status"
    )
    assert status.constraints.other == ["one of failed, pending, refunded, succeeded"]


# A third resource, declared here and nowhere else: its contract, and how the sandbox fills it.
REFUNDS = ResourceContract(
    name="refunds",
    path="/v1/refunds",
    description="Refunds of order payments.",
    fields=(
        Field("id", FieldType.TEXT, False, "Primary key of the refund."),
        Field("payment_id", FieldType.TEXT, False, "The refunded payment."),
        Field("amount", FieldType.MONEY, False, "Amount refunded."),
        Field("reason", FieldType.TEXT, True, "Why, if the customer said."),
        Field("created_at", FieldType.TIMESTAMP, False, "When it was created (UTC)."),
        Field("updated_at", FieldType.TIMESTAMP, False, "Last change at the vendor (UTC)."),
    ),
)
REFUNDS_IN_SANDBOX = SandboxResource(
    id_prefix="ref_", id_width=8, codes={"payment_id": Code("pay_", 8)}, money=(50, 50_000)
)


def test_a_third_resource_is_one_declaration_and_loads_end_to_end_with_its_checks(
    api_key: str, tmp_path: Path, instance: DagsterInstance, monkeypatch
) -> None:
    contracts = [*CONTRACTS.values(), REFUNDS]
    defs = build_definitions(contracts, SETTINGS_FOR_TESTS)
    refunds = AssetKey(["ecom", "refunds"])
    assert refunds in defs.resolve_asset_graph().get_all_asset_keys()
    # The job the sensor and the schedule launch refreshes it too.
    assert refunds in defs.resolve_job_def("ecom_refresh").asset_layer.selected_asset_keys

    spec = SandboxSpec(size=600, days=3)
    with SandboxServer(spec, api_key=api_key, contracts={c.name: c for c in contracts},
                       resources={"refunds": REFUNDS_IN_SANDBOX}).start() as sandbox:
        monkeypatch.setenv("ECOM_API_BASE_URL", sandbox.base_url)
        monkeypatch.setenv("ECOM_API_KEY", api_key)
        database = tmp_path / "data" / "warehouse.duckdb"
        assets = build_sync_assets(contracts, daily_partitions(spec.start.date()), "duckdb")

        result = Sync(instance, database, assets=assets)("2026-01-02", resources=["refunds"])

        expected = {
            r["id"]: money(r["amount"])
            for r in sandbox.dataset.records("refunds", "2026-01-02T00:00:00Z",
                                             "2026-01-03T00:00:00Z")
        }
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {check.name: True for check in CHECKS}
    assert dict(rows(database, "select id, amount from ecom.refunds")) == expected
    assert all(re.fullmatch(r"pay_\d{8}", p) for (p,) in rows(
        database, "select payment_id from ecom.refunds"))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("page", "name"), [(page, name) for page, tables in TABLES.items() for name in tables]
)
def test_the_tables_restating_code_are_generated_from_it(page: Path, name: str) -> None:
    assert read_section(name, page, command=COMMAND) == TABLES[page][name](), (
        f"{page.name}: the table `{name}` is stale; run `make docs`"
    )
