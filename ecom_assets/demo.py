"""`make demo`: the main job end to end, the way a user runs it.

Starts the sandbox vendor on loopback, backfills both assets over the sandbox's whole span with
the real `dagster asset materialize` CLI (one run per asset, each a single dlt run), then prints
row counts, sample rows and the asset check results as the Dagster instance recorded them.
"""

import argparse
import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
from dagster import AssetCheckKey, DagsterInstance

from ecom_assets.contract import CONTRACTS
from ecom_assets.defs.checks import CHECKS
from ecom_assets.defs.translator import asset_key
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The sandbox's own Dagster home and warehouse (`make demo` and `make ui`), never a real
# vendor's: the Makefile names the same two paths.
SANDBOX_DAGSTER_HOME = PROJECT_DIR / "data" / "sandbox_dagster_home"
SANDBOX_DATABASE = PROJECT_DIR / "data" / "sandbox.duckdb"
SAMPLE_ROWS = 3


def materialize_command(
    select: str, partitions: str, module: str = "ecom_assets.definitions"
) -> list[str]:
    """`dagster asset materialize` of this code location (or `module`) for one partition
    (`2026-01-02`) or a range (`2026-01-01...2026-01-31`), with this interpreter's `dagster`."""
    option = "--partition-range" if "..." in partitions else "--partition"
    return [
        str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
        "-m", module, "--select", select, option, partitions,
    ]


def _materialize(select: str, partition_range: str, env: dict[str, str]) -> None:
    command = materialize_command(select, partition_range)
    print(f"$ {' '.join(command)}", flush=True)
    # Not in the project directory: Dagster's CLI loads a `.env` from its working directory
    # over the environment, and the project's `.env` configures the real vendor.
    result = subprocess.run(
        command, env=env, cwd=env["DAGSTER_HOME"], capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"materializing {select} failed (exit {result.returncode})")


def _count(connection: duckdb.DuckDBPyConnection, table: str) -> int:
    try:
        return connection.execute(f"select count(*) from {table}").fetchall()[0][0]
    except duckdb.CatalogException:  # no quarantine table: nothing was ever quarantined
        return 0


def _print_tables(database: Path) -> None:
    with duckdb.connect(str(database), read_only=True) as connection:
        for contract in CONTRACTS.values():
            table = f"ecom.{contract.name}"
            quarantined = _count(connection, f"ecom.{contract.quarantine_table}")
            print(f"\n{table}: {_count(connection, table)} rows ({quarantined} quarantined)")
            columns = ", ".join(f.name for f in contract.fields)
            connection.sql(
                f"select {columns} from {table} order by updated_at, id limit {SAMPLE_ROWS}"
            ).show(max_width=140)


def _print_checks(instance: DagsterInstance) -> None:
    keys = [
        AssetCheckKey(asset_key(contract), check.name)
        for contract in CONTRACTS.values()
        for check in CHECKS
    ]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    print("\nAsset checks (latest evaluation, as the Dagster UI shows them):")
    for key in keys:
        record = latest.get(key)
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if evaluation is None:
            outcome = "not evaluated"
        else:
            outcome = "PASSED" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
        print(f"  {key.asset_key.to_user_string():22} {key.name:24} {outcome}")


def main() -> None:
    # Its own options, not DAGSTER_HOME and ECOM_DUCKDB_PATH: those may name a real vendor's.
    parser = argparse.ArgumentParser(prog="python -m ecom_assets.demo", description=__doc__)
    parser.add_argument("--dagster-home", type=Path, default=SANDBOX_DAGSTER_HOME,
                        help="the demo's Dagster home (default: %(default)s)")
    parser.add_argument("--database", type=Path, default=SANDBOX_DATABASE,
                        help="the demo's DuckDB warehouse (default: %(default)s)")
    args = parser.parse_args()
    started = time.monotonic()
    spec = SandboxSpec()
    first_day = spec.start.date()
    last_day = first_day + timedelta(days=spec.days - 1)
    dagster_home, database = args.dagster_home.resolve(), args.database.resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    # A throwaway key, so the demo also shows that no key ever reaches a log.
    api_key = secrets.token_urlsafe(24)

    with SandboxServer(spec, api_key=api_key).start() as sandbox:
        print(f"Sandbox vendor API at {sandbox.base_url}: {spec.size} records per resource, "
              f"{first_day}..{last_day}")
        env = {
            **os.environ,
            "ECOM_API_BASE_URL": sandbox.base_url,
            "ECOM_API_KEY": api_key,
            "ECOM_DESTINATION": "duckdb",
            "ECOM_DUCKDB_PATH": str(database),
            "ECOM_PARTITIONS_START": str(first_day),
            "DAGSTER_HOME": str(dagster_home),
            "DLT_PROJECT_DIR": str(PROJECT_DIR),  # dlt's settings: .dlt/config.toml
        }
        for contract in CONTRACTS.values():
            _materialize(asset_key(contract).to_user_string(), f"{first_day}...{last_day}", env)

    _print_tables(database)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with DagsterInstance.get() as instance:
        _print_checks(instance)
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s. "
          f"Run `make ui` to browse the assets, runs and checks.")


if __name__ == "__main__":
    main()
