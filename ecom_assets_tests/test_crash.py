"""A run killed with SIGKILL leaves nothing half-done that the next run could trip over."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ecom_assets.launch import launch_command
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests.support import project_env, rows, vendor_ids

pytestmark = pytest.mark.system

KEY = "crash-test-key"

# Where the run dies. Extract is killed from outside once the vendor has served a few pages;
# the later steps kill themselves on entering one of dlt's own methods (see SIGKILL_HOOK).
KILL_POINTS = {
    "extract": None,
    "normalize": "dlt.normalize.normalize:Normalize.spool_files",
    "load, before the merge": "dlt.load.load:Load.create_followup_jobs",
    "load, merged but not recorded": "dlt.load.load:Load.complete_package",
}

# Imported by every Python process that has its directory on PYTHONPATH.
SIGKILL_HOOK = '''
import importlib, os, signal
target = os.environ.get("ECOM_TEST_SIGKILL_AT")
if target:
    module, _, attribute = target.partition(":")
    owner, method = attribute.split(".")
    setattr(getattr(importlib.import_module(module), owner), method,
            lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL))
'''


@pytest.mark.parametrize("stage", KILL_POINTS)
def test_a_run_killed_then_another_partition_then_a_rerun_load_exactly(
    tmp_path: Path, stage: str
) -> None:
    database = tmp_path / "data" / "warehouse.duckdb"
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SIGKILL_HOOK)
    # Slow pages, so an extract is surely still running when it is killed.
    with SandboxServer(SandboxSpec(size=3000, days=3, latency_ms=50), api_key=KEY).start() as sb:
        env = project_env(tmp_path, sb, KEY)

        def materialize(partition: str, **extra_env: str) -> subprocess.Popen:
            return subprocess.Popen(
                launch_command("ecom/order_payments", partition),
                env={**env, **extra_env}, cwd=env["DAGSTER_HOME"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )

        kill_point = KILL_POINTS[stage]
        if kill_point is None:
            killed = materialize("2026-01-01")
            deadline = time.monotonic() + 120
            while len(sb.request_log) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(sb.request_log) >= 3, "the run never reached the vendor"
            os.killpg(killed.pid, signal.SIGKILL)
        else:
            killed = materialize(
                "2026-01-01", PYTHONPATH=str(hook_dir), ECOM_TEST_SIGKILL_AT=kill_point
            )
        assert killed.wait(timeout=300) == -signal.SIGKILL
        day_1 = vendor_ids(sb, "order_payments", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
        day_2 = vendor_ids(sb, "order_payments", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")

        # The next run is for another partition: it must load that one, not the dead run's.
        assert materialize("2026-01-02").wait(timeout=300) == 0
        loaded = {r[0] for r in rows(database, "select id from ecom.order_payments")}
        # Only a run killed after its merge committed has left its day in the table.
        assert loaded == (day_1 | day_2 if stage == "load, merged but not recorded" else day_2)

        # Re-running the killed partition converges to exactly the vendor's rows.
        assert materialize("2026-01-01").wait(timeout=300) == 0
    ids = [r[0] for r in rows(database, "select id from ecom.order_payments")]
    assert len(ids) == len(set(ids))
    assert set(ids) == day_1 | day_2
