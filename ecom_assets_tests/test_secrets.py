"""The API key never leaves the process: not in logs, events, metadata or any file a run writes.

Runs the real CLI against a vendor that misbehaves the ways the contract lists (error bodies
echoing the URL with the key in it, 5xx, 429, a 4xx that fails the run) and then searches every
output and every file under the run's directories for the key's value.
"""

import re
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote_plus

import pytest

from ecom_assets.launch import launch_command
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import Fault, SandboxServer
from ecom_assets_tests.support import project_env

pytestmark = pytest.mark.system

# With characters a URL encodes: an echo of the request spells it otherwise.
KEY = "k3y+must/never=leak-7f1e2d"
ENCODED = {quote(KEY), quote(KEY, safe=""), quote_plus(KEY)}
SPELLINGS = {KEY, unquote_plus(KEY), KEY.replace("/", "\\/"), *ENCODED,
             *(re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), e) for e in ENCODED)}


def test_the_key_appears_in_no_output_and_no_file_after_failing_and_passing_runs(
    tmp_path: Path,
) -> None:
    outputs = []
    with SandboxServer(SandboxSpec(size=600, days=3), api_key=KEY).start() as sandbox:
        env = project_env(tmp_path, sandbox, KEY)

        def materialize(partition: str) -> int:
            result = subprocess.run(
                launch_command("ecom/order_payments,ecom/products", partition),
                env=env, cwd=env["DAGSTER_HOME"], capture_output=True, text=True, timeout=300,
            )
            outputs.append(result.stdout + result.stderr)
            return result.returncode

        # Retried faults whose bodies echo the key, then a successful load.
        sandbox.faults.add("order_payments", Fault.status(503, echo_url=True))
        sandbox.faults.add("products", Fault.status(429, retry_after="0", echo_url=True))
        assert materialize("2026-01-01") == 0, outputs[-1]
        # A rejected request that fails the run, its error body echoing the key.
        sandbox.faults.add("order_payments", Fault.status(400, echo_url=True))
        assert materialize("2026-01-02") != 0
        # Truncated JSON, through every retry, fails the run too.
        sandbox.faults.add("products", Fault.raw(200, '{"data": [' + KEY), times=4)
        assert materialize("2026-01-03") != 0
        # A rejection echoing the key alone, as the URL spelled it.
        sandbox.faults.add("order_payments", Fault.raw(
            401, f'{{"error": "unauthorized", "message": "bad key {quote(KEY, safe="")}"}}'
        ))
        assert materialize("2026-01-04") != 0

    assert "rejected the request with HTTP 400" in outputs[1], outputs[1][-3000:]
    assert "not valid JSON" in outputs[2], outputs[2][-3000:]
    assert "HTTP 401 (unauthorized: bad key ***)" in outputs[3], outputs[3][-3000:]
    for output in outputs:
        assert not [spelling for spelling in SPELLINGS if spelling in output]
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.suffix == ".duckdb" for path in files)
    assert any("compute_logs" in str(path) or path.name.endswith(".err") for path in files)
    leaking = [str(path) for path in files
               if any(spelling.encode() in path.read_bytes() for spelling in SPELLINGS)]
    assert leaking == []
