"""`make demo`: the main job end to end, the way a user runs it.

Starts the sandbox vendor on loopback with the last 30 days of a shop, backfills every asset
over them with `dg launch` (one run, one dlt load), then prints row counts, sample rows and the
asset check results as the Dagster instance recorded them. It starts from an empty
`data/sandbox/`: the sandbox vendor serves its shop afresh each time it starts, without the
changes a `make ui` session made, which a table that kept them would hold as later versions of
its records (a vendor stepping back in time, which the sync quarantines). `make ui` starts
with the same backfill.
"""

import argparse
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from dagster import AssetCheckKey, DagsterInstance

from ecom_assets.contract import CONTRACTS
from ecom_assets.defs.checks import CHECKS
from ecom_assets.defs.translator import asset_key
from ecom_assets.launch import SANDBOX_DATA, launch_command, run, sandbox_environment
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer

SAMPLE_ROWS = 3


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


def _print_checks(dagster_home: Path) -> bool:
    """Print the latest evaluation of every check; whether all passed."""
    keys = [
        AssetCheckKey(asset_key(contract), check.name)
        for contract in CONTRACTS.values()
        for check in CHECKS
    ]
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    print("\nAsset checks (latest evaluation, as the Dagster UI shows them):")
    all_passed = True
    for key in keys:
        record = latest.get(key)
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if evaluation is None:
            outcome, all_passed = "not evaluated", False
        else:
            outcome = "PASSED" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
            all_passed &= evaluation.passed
        print(f"  {key.asset_key.to_user_string():22} {key.name:24} {outcome}")
    return all_passed


def backfill(data: Path, spec: SandboxSpec) -> dict[str, str]:
    """Every asset backfilled over the days of `spec`'s sandbox shop, into `data` emptied first
    (its warehouse, dlt pipelines and Dagster home); the environment of its dg commands."""
    for path in [*data.glob("warehouse.*"), data / "dlt_pipelines", data / "dagster_home"]:
        if path.is_dir():  # DuckDB's spill directory is `warehouse.duckdb.tmp`
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    first_day, today = spec.start.date(), datetime.now(UTC).date()
    # A throwaway key, so the demo also shows that no key ever reaches a log.
    api_key = secrets.token_urlsafe(24)
    with SandboxServer(spec, api_key=api_key).start() as sandbox:
        print(f"Sandbox vendor API at {sandbox.base_url}: {spec.size} records per resource, "
              f"{first_day}..{today}")
        env = sandbox_environment(sandbox.base_url, api_key, first_day, data)
        assets = ",".join(asset_key(c).to_user_string() for c in CONTRACTS.values())
        command = launch_command(assets, f"{first_day}...{today}")
        print(f"$ {' '.join(command)}", flush=True)
        result = run(command, env)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
            raise SystemExit(f"the backfill failed (exit {result.returncode})")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ecom_assets.demo", description=__doc__)
    parser.add_argument("--data", type=Path, default=SANDBOX_DATA,
                        help="where the demo's warehouse and Dagster home go (%(default)s)")
    parser.add_argument("--days", type=int, default=30, help="days of sandbox data")
    args = parser.parse_args()
    started = time.monotonic()
    env = backfill(args.data.resolve(), SandboxSpec.recent(days=args.days))

    _print_tables(Path(env["ECOM_DUCKDB_PATH"]))
    passed = _print_checks(Path(env["DAGSTER_HOME"]))
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s"
          f"{'' if passed else ', with checks that did not pass'}. "
          "Run `make ui` to browse the assets, runs and checks.")


if __name__ == "__main__":
    main()
