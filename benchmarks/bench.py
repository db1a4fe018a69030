"""`make bench`: this project's materialization against plain dlt, on the same data.

Starts the sandbox with N order payments and a per-request latency, then runs each variant as
its own process, interleaved, several times, and reports medians of wall time, records/s and
peak RSS, with ratios to the plain dlt baselines:

  (a) the seed's configuration as a plain dlt pipeline (default INSERT loading)
  (b) the same with parquet loading
  (c) this project: `dagster asset materialize` of ecom/order_payments over the sandbox's
      whole span, in a fresh process, asset checks included, with a Dagster home whose
      storage exists (as after a user's first run)
  (d) the bare floor: sequential requests, one DuckDB insert from Arrow
  (e) Dagster alone: (c)'s command and code location shape, with a step that does nothing
      (benchmarks/dagster_alone.py): what no sync through the CLI can go under

Under each table it prints the most (c) could gain on (a) with a client that costs nothing:
(a) over (e) plus the requests' own latency at the default page concurrency.
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import duckdb
from dagster import DagsterInstance

from ecom_assets.demo import materialize_command
from ecom_assets.ingest.pagination import PAGE_SIZE
from ecom_assets.ingest.source import DEFAULT_PAGE_CONCURRENCY
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer

PROJECT_DIR = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
KEEP_MARKER = "<!-- make bench rewrites what is above this line and keeps what follows. -->"


@dataclass
class Variant:
    label: str
    description: str
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, peak RSS KiB)

    def median_seconds(self) -> float:
        return statistics.median(s for s, _ in self.samples)

    def median_rss_mib(self) -> float:
        return statistics.median(r for _, r in self.samples) / 1024


def _command(label: str, base_url: str, workdir: Path, spec: SandboxSpec) -> list[str]:
    database = workdir / "data" / "warehouse.duckdb"
    database.parent.mkdir(parents=True)
    python = sys.executable
    if label == "a":
        return [python, "-m", "benchmarks.plain_dlt", base_url, str(database)]
    if label == "b":
        return [python, "-m", "benchmarks.plain_dlt", base_url, str(database), "--parquet"]
    if label == "d":
        return [python, "-m", "benchmarks.floor", base_url, str(database)]
    first = spec.start.date()
    last = first + timedelta(days=spec.days - 1)
    module = "benchmarks.dagster_alone" if label == "e" else "ecom_assets.definitions"
    return materialize_command("ecom/order_payments", f"{first}...{last}", module)


def _peak_rss_kib(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def measure_process(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one process: its own high-water mark (VmHWM), read
    every 20 ms. wait4's ru_maxrss would be the largest of the process and its descendants."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command, env=env, cwd=PROJECT_DIR, stdout=output, stderr=subprocess.STDOUT
        )
        peak = 0
        while True:
            pid, status = os.waitpid(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _peak_rss_kib(process.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            output.seek(0)
            sys.stderr.write(output.read().decode(errors="replace")[-3000:])
            raise SystemExit(f"{' '.join(command[:4])} failed with exit {process.returncode}")
    return elapsed, peak


def _check_loaded(variant: Variant, database: Path, records: int) -> None:
    """A variant counts only if it loaded every record: one that lost some is not fast."""
    with duckdb.connect(str(database), read_only=True) as connection:
        [(loaded,)] = connection.execute("select count(*) from ecom.order_payments").fetchall()
    if loaded != records:
        raise SystemExit(f"({variant.label}) loaded {loaded} of {records} records")


def environment(workdir: Path, base_url: str, spec: SandboxSpec) -> dict[str, str]:
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_DIR / "dagster.yaml", dagster_home / "dagster.yaml")
    return {
        **os.environ,
        "ECOM_API_BASE_URL": base_url,
        "ECOM_API_KEY": API_KEY,
        "ECOM_DUCKDB_PATH": str(workdir / "data" / "warehouse.duckdb"),
        "ECOM_PARTITIONS_START": str(spec.start.date()),
        "DAGSTER_HOME": str(dagster_home),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }


VARIANTS = {
    "a": "plain dlt, seed config (INSERT)",
    "b": "plain dlt, parquet",
    "c": "ecom_assets (dagster CLI, checks)",
    "d": "floor: sequential requests + Arrow",
    "e": "Dagster alone: (c) with a step that does nothing",
}


def measure(records: int, latency_ms: float, repeats: int, labels: str) -> list[Variant]:
    spec = SandboxSpec(size=records, latency_ms=latency_ms)
    variants = [Variant(label, VARIANTS[label]) for label in labels]
    with SandboxServer(spec, api_key=API_KEY).start() as sandbox:
        sandbox.dataset.all("order_payments")  # build the records before anything is timed
        for repeat in range(repeats):
            for variant in variants:
                with tempfile.TemporaryDirectory(prefix="ecom-bench-") as tmp:
                    workdir = Path(tmp)
                    env = environment(workdir, sandbox.base_url, spec)
                    if variant.label in "ce":
                        # A Dagster home's storage is created once per installation, by its
                        # first run (about 0.25 s here), not by every sync. Each (c) run still
                        # starts from an empty warehouse, like the other variants.
                        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
                            instance.get_runs(limit=1)
                    else:
                        # Importing ecom_assets here chose Arrow's malloc pool for this
                        # process's children; dlt alone runs on Arrow's default.
                        env.pop("ARROW_DEFAULT_MEMORY_POOL", None)
                    command = _command(variant.label, sandbox.base_url, workdir, spec)
                    variant.samples.append(measure_process(command, env))
                    if variant.label != "e":  # (e) loads nothing by design
                        _check_loaded(variant, workdir / "data" / "warehouse.duckdb", records)
                seconds, rss = variant.samples[-1]
                print(f"  run {repeat + 1}/{repeats} ({variant.label}) {seconds:6.2f} s "
                      f"{rss / 1024:6.0f} MiB", flush=True)
    return variants


def table(records: int, latency_ms: float, variants: list[Variant]) -> str:
    medians = {v.label: v.median_seconds() for v in variants}
    lines = [
        f"### {records:,} order payments, {latency_ms:g} ms per request "
        f"(median of {len(variants[0].samples)} interleaved runs)",
        "",
        "| variant | wall time | records/s | peak RSS | speed-up vs (a) | vs (b) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    def ratio(baseline: str, seconds: float) -> str:
        return f"{medians[baseline] / seconds:.2f}x" if baseline in medians else "-"

    for v in variants:
        seconds = v.median_seconds()
        lines.append(
            f"| ({v.label}) {v.description} | {seconds:.2f} s | {records / seconds:,.0f} "
            f"| {v.median_rss_mib():.0f} MiB | {ratio('a', seconds)} | {ratio('b', seconds)} |"
        )
    if "a" in medians and "e" in medians and latency_ms:
        # The first page gives `total`; the window's other pages then go out N at a time.
        pages = -(-records // PAGE_SIZE)
        latency = (1 + -(-(pages - 1) // DEFAULT_PAGE_CONCURRENCY)) * latency_ms / 1000
        lines += [
            "",
            f"Ceiling for (c) with a client that costs nothing: (a) / ((e) + {pages} requests "
            f"at {latency_ms:g} ms, {DEFAULT_PAGE_CONCURRENCY} in flight) = {medians['a']:.2f} s "
            f"/ ({medians['e']:.2f} s + {latency:.2f} s) = "
            f"**{medians['a'] / (medians['e'] + latency):.2f}x**.",
        ]
    return "\n".join(lines)


def machine() -> str:
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("dagster", "dagster-dlt", "dlt", "duckdb")
    )
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; {packages}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark against plain dlt.")
    parser.add_argument("--scenario", action="append", metavar="RECORDS:LATENCY_MS",
                        help="default: 50000:0 and 20000:20")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="abcde", help="which of a to e to run")
    parser.add_argument("--output", type=Path, default=PROJECT_DIR / "BENCHMARKS.md")
    args = parser.parse_args()

    sections = []
    for scenario in args.scenario or ["50000:0", "20000:20"]:
        records, latency = scenario.split(":")
        print(f"{int(records):,} records, {latency} ms latency:", flush=True)
        variants = measure(int(records), float(latency), args.repeats, args.variants)
        sections.append(table(int(records), float(latency), variants))
        print(sections[-1], flush=True)
    # Notes written by hand (scale, refresh cost, analysis) follow the marker and are kept.
    previous = args.output.read_text() if args.output.exists() else ""
    kept = previous.split(KEEP_MARKER, 1)[1] if KEEP_MARKER in previous else "\n"
    args.output.write_text(
        "# Benchmarks\n\nProduced by `make bench` (benchmarks/bench.py) on "
        f"{time.strftime('%Y-%m-%d')}: {machine()}. Every variant is a fresh process on the "
        "same sandbox data; ratios are what to compare, since the machine is noisy.\n\n"
        + "\n\n".join(sections) + "\n\n" + KEEP_MARKER + kept
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
