"""`make ui`: the sandbox vendor, live, and `dg dev` (webserver and daemon) on the demo's data.

The sandbox serves the same shop as `make demo` (the last 30 days) and keeps changing it, as a
real shop does, so the sensor has something to refresh. One Ctrl-C or SIGTERM stops everything:
`dg dev` shuts its webserver, daemon and code server down, and this process waits for it. If
`make` itself is killed, the kernel tells this process (parent-death signal), which stops too.
"""

import argparse
import ctypes
import signal
import subprocess
import sys
from pathlib import Path

from ecom_assets.launch import PROJECT_DIR, SANDBOX_DATA, dg, sandbox_environment
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import DEFAULT_API_KEY, SandboxServer

# How fast the sandbox shop changes while the UI runs: calm, but never still.
CHANGES_PER_SECOND = 0.2
CREATES_PER_SECOND = 0.1
STOP_SECONDS = 10


def _stop_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent (`make`) dies, whatever killed it."""
    PR_SET_PDEATHSIG = 1
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


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
    with SandboxServer(
        spec, api_key=DEFAULT_API_KEY, port=args.sandbox_port,
        changes_per_second=CHANGES_PER_SECOND, creates_per_second=CREATES_PER_SECOND,
    ) as sandbox:
        env = sandbox_environment(sandbox.base_url, DEFAULT_API_KEY, spec.start.date(), data)
        command = [dg(), "dev", "-w", str(PROJECT_DIR / "workspace.yaml"),
                   "-h", "127.0.0.1", "-p", str(args.port)]
        print(f"Sandbox vendor at {sandbox.base_url} ({spec.start:%Y-%m-%d} to now, live); "
              f"Dagster UI at http://127.0.0.1:{args.port}", flush=True)
        # In a session of its own, so that it hears exactly one signal, from here: a
        # terminal's Ctrl-C reaches only this process group, and a second SIGINT would cut
        # dg dev's shutdown short. Signals a shell's `&` ignored are reset for it.
        server = subprocess.Popen(
            command, env=env, cwd=env["DAGSTER_HOME"], start_new_session=True,
            preexec_fn=_default_signals,
        )

        stopping = []

        def stop(_signum: int, _frame: object) -> None:
            # dg dev takes SIGINT as "shut down": its webserver, daemon and code server. Once:
            # a Ctrl-C that also kills `make` brings the parent-death signal after it.
            if not stopping:
                stopping.append(True)
                server.send_signal(signal.SIGINT)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        try:
            return server.wait()
        finally:
            try:
                server.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
