"""`make ui`: the demo's backfill, then the sandbox vendor, live, and `dg dev` (webserver and
daemon) on that data.

The sandbox serves the same shop as `make demo` (the last 30 days), backfilled afresh as the demo
does (a sandbox does not keep an earlier session's changes), and keeps changing it, as a real
shop does, so the sensor has something to refresh. One Ctrl-C or SIGTERM stops everything:
`dg dev` shuts its webserver, daemon and code server down, and what outlives a grace period is
stopped by force. If `make` itself is killed, the kernel tells this process (parent-death
signal), which stops too.
"""

import argparse
import ctypes
import signal
import sys
import time
from pathlib import Path

from ecom_assets.demo import backfill
from ecom_assets.launch import SANDBOX_DATA, sandbox_environment, start_dg_dev, stop_dg_dev
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import DEFAULT_API_KEY, SandboxServer

# How fast the sandbox shop changes while the UI runs: calm, but never still.
CHANGES_PER_SECOND = 0.2
CREATES_PER_SECOND = 0.1


def _stop_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent (`make`) dies, whatever killed it."""
    PR_SET_PDEATHSIG = 1
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ecom_assets.ui", description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="the UI's port (%(default)s)")
    parser.add_argument("--sandbox-port", type=int, default=8765)
    parser.add_argument("--data", type=Path, default=SANDBOX_DATA)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    _stop_with_parent()
    spec = SandboxSpec.recent(days=args.days)
    data = args.data.resolve()
    backfill(data, spec)
    with SandboxServer(
        spec, api_key=DEFAULT_API_KEY, port=args.sandbox_port,
        changes_per_second=CHANGES_PER_SECOND, creates_per_second=CREATES_PER_SECOND,
    ) as sandbox:
        env = sandbox_environment(sandbox.base_url, DEFAULT_API_KEY, spec.start.date(), data)
        print(f"Sandbox vendor at {sandbox.base_url} ({spec.start:%Y-%m-%d} to now, live); "
              f"Dagster UI at http://127.0.0.1:{args.port}", flush=True)
        server = start_dg_dev(args.port, env)
        # A Ctrl-C that also kills `make` brings the parent-death signal after it: stop once.
        # The handler only records the signal: a lock taken in a handler can deadlock.
        signals: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, _frame: signals.append(signum))
        try:
            while not signals and server.poll() is None:
                time.sleep(0.2)
        finally:
            stop_dg_dev(server)
        return 0 if signals else server.returncode


if __name__ == "__main__":
    sys.exit(main())
