"""`make ui`: the sandbox vendor, live, and `dg dev` (webserver and daemon) on the demo's data.

The sandbox serves the same shop as `make demo` (the last 30 days) and keeps changing it, as a
real shop does, so the sensor has something to refresh. One Ctrl-C or SIGTERM stops everything:
`dg dev` shuts its webserver, daemon and code server down, and this process waits for it; what is
still running after a grace period (a run worker mid-run, a code server waiting for a heartbeat
that will not come) gets SIGTERM, then SIGKILL. If `make` itself is killed, the kernel tells this
process (parent-death signal), which stops too.
"""

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ecom_assets.launch import PROJECT_DIR, SANDBOX_DATA, dg, sandbox_environment
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import DEFAULT_API_KEY, SandboxServer

# How fast the sandbox shop changes while the UI runs: calm, but never still.
CHANGES_PER_SECOND = 0.2
CREATES_PER_SECOND = 0.1
# dg dev usually stops in about 2 s; the daemon alone may take up to a minute.
GRACE_SECONDS = 6
TERM_SECONDS = 2


def _stop_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent (`make`) dies, whatever killed it."""
    PR_SET_PDEATHSIG = 1
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def stop_process_group(server: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to whatever is left of dg dev's process group: its webserver,
    daemon, code servers and run workers are all in it."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + TERM_SECONDS
    while time.monotonic() < deadline:
        server.poll()  # reaps dg dev: a zombie still counts as a member of the group
        try:
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)


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

        stop_asked_at: list[float] = []

        def stop(_signum: int, _frame: object) -> None:
            # dg dev takes SIGINT as "shut down": its webserver, daemon and code server. Once:
            # a Ctrl-C that also kills `make` brings the parent-death signal after it.
            if not stop_asked_at:
                stop_asked_at.append(time.monotonic())
                server.send_signal(signal.SIGINT)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        try:
            while not stop_asked_at or time.monotonic() - stop_asked_at[0] < GRACE_SECONDS:
                try:
                    return server.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
            return 1
        finally:
            stop_process_group(server)


if __name__ == "__main__":
    sys.exit(main())
