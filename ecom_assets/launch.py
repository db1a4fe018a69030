"""The dg commands the project runs for people (`make demo`, `make ui`), tests and benchmarks.

`dg` loads a `.env` from its working directory over the environment, and the project's `.env`
configures a real vendor: commands against the sandbox run in the sandbox's own Dagster home,
where no `.env` is, with every setting in their environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from dagster import DagsterInstance

from ecom_assets.instance import PROJECT_DIR, write_instance_settings

# The sandbox's Dagster home and warehouse (`make demo`, `make ui`), never a real vendor's.
SANDBOX_DATA = PROJECT_DIR / "data" / "sandbox"


def dg() -> str:
    """This interpreter's `dg`."""
    return str(Path(sys.executable).with_name("dg"))


def launch_command(
    assets: str, partitions: str, *, config_json: str | None = None, module: str | None = None
) -> list[str]:
    """`dg launch` of `assets` (a selection: `ecom/products`, `group:ecom`) for one partition
    (`2026-01-02`) or a range (`2026-01-01...2026-01-31`), of this project or of `module`."""
    option = "--partition-range" if "..." in partitions else "--partition"
    target = ["-m", module, "-d", str(PROJECT_DIR)] if module else [
        "--target-path", str(PROJECT_DIR)
    ]
    command = [dg(), "launch", *target, "--assets", assets, option, partitions]
    return command + (["--config-json", config_json] if config_json else [])


# dg dev usually stops in about 2 s; its daemon alone may take up to a minute.
DG_DEV_GRACE_SECONDS = 5
TERM_SECONDS = 2


def default_stop_signals() -> None:
    """SIGINT and SIGTERM at their defaults, as a child's `preexec_fn`: a shell's `&` leaves
    SIGINT ignored, Dagster in the parent gives SIGTERM SIGINT's disposition, and an ignored
    signal stays ignored across exec (Python, `make` and dg dev then keep ignoring it)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def start_dg_dev(port: int, env: Mapping[str, str], **popen: object) -> subprocess.Popen:
    """`dg dev` (webserver, daemon, code servers) on 127.0.0.1:`port`, in its Dagster home.

    In a session of its own: a terminal's Ctrl-C does not reach it (a second SIGINT would cut
    its shutdown short), and everything it starts, run workers included, is in its process
    group. Its SIGINT and SIGTERM are at their defaults, whatever this process ignores.
    """
    command = [dg(), "dev", "-w", str(PROJECT_DIR / "workspace.yaml"),
               "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.Popen(command, env=dict(env), cwd=env["DAGSTER_HOME"],
                            start_new_session=True, preexec_fn=default_stop_signals, **popen)


def stop_dg_dev(server: subprocess.Popen) -> None:
    """One SIGINT to dg dev, which shuts its webserver, daemon and code servers down; then
    whatever of its process group outlives the grace period is stopped by force."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=DG_DEV_GRACE_SECONDS)
    stop_process_group(server)


def stop_process_group(leader: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to whatever is left of `leader`'s process group (a run worker
    mid-run, a code server waiting for a heartbeat that will not come)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(leader.pid, signum)
        except ProcessLookupError:
            return
        if _group_gone(leader, within_seconds=TERM_SECONDS):
            return


def _group_gone(leader: subprocess.Popen, within_seconds: float) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        leader.poll()  # reaps the leader: a zombie still counts as a member of the group
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def dg_environment(environment: Mapping[str, str], dagster_home: Path) -> dict[str, str]:
    """`environment` for a dg command with `dagster_home`, its instance settings in place."""
    write_instance_settings(dagster_home)
    # Two commands starting on an empty home would race to create the same SQLite tables.
    DagsterInstance.from_config(str(dagster_home)).dispose()
    return {
        **environment,
        "DAGSTER_HOME": str(dagster_home),
        # dg warns when the project's virtualenv is not the active one: it is.
        "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        "DLT_PROJECT_DIR": str(PROJECT_DIR),  # dlt's settings: .dlt/config.toml
    }


def sandbox_settings(base_url: str, api_key: str, first_day: date, data: Path) -> dict[str, str]:
    """The settings of a run against the sandbox vendor, its files under `data`."""
    return {
        "ECOM_API_BASE_URL": base_url,
        "ECOM_API_KEY": api_key,
        "ECOM_DESTINATION": "duckdb",
        "ECOM_DUCKDB_PATH": str(data / "warehouse.duckdb"),
        "ECOM_DLT_PIPELINES_DIR": str(data / "dlt_pipelines"),
        "ECOM_PARTITIONS_START": first_day.isoformat(),
    }


def sandbox_environment(base_url: str, api_key: str, first_day: date, data: Path
                        ) -> dict[str, str]:
    """The environment of a dg command against the sandbox, its files and Dagster home under
    `data`: this process's environment without the project's settings and dlt credentials
    (`make` exports those of a `.env` for a real vendor), with the sandbox's."""
    inherited = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("ECOM_", "DESTINATION__"))
    }
    return dg_environment(
        {**inherited, **sandbox_settings(base_url, api_key, first_day, data)},
        data / "dagster_home",
    )


def run(command: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a dg command in the Dagster home of `env`, where no `.env` is."""
    return subprocess.run(
        command, env=dict(env), cwd=env["DAGSTER_HOME"], capture_output=True, text=True
    )
