"""`make ui` stops cleanly: one Ctrl-C, or SIGTERM to `make`, and every process it started is
gone within 10 s."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from ecom_assets.launch import default_stop_signals, stop_process_group
from ecom_assets_tests.support import PROJECT_DIR, free_port

pytestmark = pytest.mark.system

STARTUP_SECONDS = 120
STOP_SECONDS = 10


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(status.parent.name))
    found, queue = set(), [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.add(child)
            queue.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _described(pid: int) -> str:
    """A process's command line, state and signal masks (what it ignores, what it catches)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        status = dict(
            line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if ":\t" in line
        )
    except OSError:
        return "?"
    masks = ", ".join(f"{k} {status.get(k, '?').strip()}" for k in ("State", "SigIgn", "SigCgt"))
    return f"{command[:120]} ({masks})"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-to-make"])
def test_make_ui_stops_every_process_it_started(tmp_path: Path, how: str) -> None:
    port = free_port()
    make = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"UI_PORT={port}"],
        cwd=PROJECT_DIR,
        # Its data under tmp_path; a terminal's process group of its own.
        env={**os.environ, "UI_ARGS": f"--data {tmp_path} --days 2 "
             f"--sandbox-port {free_port()}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        # As from a terminal: pytest's SIGTERM may be ignored (Dagster runs in this process
        # give it SIGINT's disposition), and `make` would keep ignoring it.
        preexec_fn=default_stop_signals,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(1)
        else:
            pytest.fail("make ui did not serve the UI")
        time.sleep(3)  # the daemon and the code server are up too
        started = _descendants(make.pid)
        assert len(started) >= 5, "python, dg dev, webserver, daemon, code server"

        if how == "ctrl-c":
            os.killpg(make.pid, signal.SIGINT)
        else:
            make.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while _alive(started | {make.pid}) and time.monotonic() < deadline:
            time.sleep(0.2)

        survivors = {pid: _described(pid) for pid in _alive(started)}
        assert not survivors, f"still running after {STOP_SECONDS} s: {survivors}"
    finally:
        for pid in _alive(_descendants(make.pid) | {make.pid}):
            os.kill(pid, signal.SIGKILL)


def test_what_outlives_the_grace_period_is_killed_with_its_process_group() -> None:
    # A member of dg dev's group that ignores SIGTERM (as a run worker finishing a step may).
    stubborn = subprocess.Popen(
        ["sh", "-c", "trap '' TERM INT; sh -c \"trap '' TERM INT; sleep 60\" & wait"],
        start_new_session=True,
    )
    time.sleep(0.5)
    members = _descendants(stubborn.pid) | {stubborn.pid}

    stop_process_group(stubborn)

    assert not _alive(members)
