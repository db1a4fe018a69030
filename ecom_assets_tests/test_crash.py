"""A run killed with SIGKILL leaves nothing half-done that the next run could trip over."""

import os
import signal
import subprocess
import time
from pathlib import Path

from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests.conftest import PROJECT_DIR, materialize_command, project_env, rows

KEY = "crash-test-key"


def test_a_run_killed_mid_extract_then_another_partition_then_a_rerun_load_exactly(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "warehouse.duckdb"
    # Slow pages, so the run is surely inside extract when it is killed.
    with SandboxServer(SandboxSpec(size=3000, days=3, latency_ms=50), api_key=KEY).start() as sb:
        env = project_env(tmp_path, sb, KEY)

        def materialize(partition: str) -> subprocess.Popen:
            return subprocess.Popen(
                materialize_command("ecom/order_payments", partition),
                env=env, cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

        killed = materialize("2026-01-01")
        deadline = time.monotonic() + 120
        while len(sb.request_log) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sb.request_log) >= 3, "the run never reached the vendor"
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()

        # The next run is for another partition: it must load that one, not the dead run's.
        assert materialize("2026-01-02").wait(timeout=300) == 0
        day_2 = {r["id"] for r in sb.dataset.records(
            "order_payments", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")}
        loaded = {r[0] for r in rows(database, "select id from ecom.order_payments")}
        assert loaded == day_2

        # Re-running the killed partition converges to exactly the vendor's rows.
        assert materialize("2026-01-01").wait(timeout=300) == 0
        day_1 = {r["id"] for r in sb.dataset.records(
            "order_payments", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")}
    ids = [r[0] for r in rows(database, "select id from ecom.order_payments")]
    assert len(ids) == len(set(ids))
    assert set(ids) == day_1 | day_2
