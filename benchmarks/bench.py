"""`make bench`: this project's materialization against plain dlt, on the same data.

Starts the sandbox vendor with N order payments and a per-request latency, in either of its
modes: `fresh` (the default) builds and serializes every response afresh, as a real server
backed by a database does; `cached` keeps built records in memory. Each variant then runs as
its own process, interleaved, several times; medians of wall time, records/s and peak RSS are
reported with ratios to the plain dlt baselines:

  (a) the seed's configuration as a plain dlt pipeline (default INSERT loading)
  (b) the same with parquet loading
  (c) this project: `dg launch` of ecom/order_payments over the sandbox's whole span, in a
      fresh process, asset checks included, with a Dagster home whose storage exists
  (d) the bare floor: sequential requests, one DuckDB insert from Arrow
  (e) Dagster alone: (c)'s command and asset shape with a step that does nothing

A last table says what every run costs: an empty one-day refresh of the project against (f), a
minimal Dagster run through the same CLI (one daily-partitioned asset whose step returns at
once), with (f) importing the libraries of a dlt run into DuckDB and (e) on that day as floors
between them; and a sensor refresh late in a busy day (40,000 records today, 20 changed)
against that empty refresh, with the whole-day refresh it replaced.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import duckdb
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance

from benchmarks.page import BENCHMARKS_PAGE, read_section, write_section
from ecom_assets.ingest.reader import PAGE_SIZE
from ecom_assets.ingest.window import look_back
from ecom_assets.launch import PROJECT_DIR, dg_environment, launch_command, sandbox_settings
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer
from ecom_assets.settings import DEFAULTS

API_KEY = "bench-key"
PAGE_CONCURRENCY = DEFAULTS.page_concurrency
CHANGES_ONLY = '{"ops": {"ecom_vendor_sync": {"config": {"changes_only": true}}}}'
# How far back a sensor refresh reads: late arrivals, and the vendor's clocks.
LOOK_BACK = look_back(timedelta(minutes=DEFAULTS.late_arrival_minutes))
LOOK_BACK_MINUTES = LOOK_BACK // timedelta(minutes=1)
# Today's last records are older than that look-back, with a margin.
QUIET_BEFORE_RUNS = LOOK_BACK + timedelta(minutes=5)


class Sample(NamedTuple):
    seconds: float
    peak_rss_kib: int
    cpu_seconds: float  # the variant's process, user and system
    vendor_cpu_seconds: float = 0.0  # the sandbox's, meanwhile


@dataclass
class Variant:
    label: str
    description: str
    samples: list[Sample] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)  # of Dagster runs, by phase

    def median(self, measure: str) -> float:
        return statistics.median(getattr(s, measure) for s in self.samples)

    def median_seconds(self) -> float:
        return self.median("seconds")


VARIANTS = {
    "a": "plain dlt, seed config (INSERT)",
    "b": "plain dlt, parquet",
    "c": "ecom_assets (dg launch, checks)",
    "d": "floor: sequential requests + Arrow",
    "e": "Dagster alone: (c) with a step that does nothing",
}


def _peak_rss_kib(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def measure_process(command: list[str], env: dict[str, str]) -> Sample:
    """Wall time, peak RSS and CPU time of one process, run in the Dagster home of `env`
    (where no `.env` is): its own high-water mark (VmHWM), read every 20 ms."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command, env=env, cwd=env["DAGSTER_HOME"], stdout=output, stderr=subprocess.STDOUT
        )
        peak = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _peak_rss_kib(process.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            output.seek(0)
            sys.stderr.write(output.read().decode(errors="replace")[-3000:])
            raise SystemExit(f"{' '.join(command[:4])} failed")
    return Sample(elapsed, peak, usage.ru_utime + usage.ru_stime)


def environment(workdir: Path, base_url: str, first_day: str) -> dict[str, str]:
    """A project environment under `workdir`, its Dagster storage created (as after a user's
    first run: creating it is a once-per-installation cost)."""
    settings = sandbox_settings(base_url, API_KEY, datetime.fromisoformat(first_day).date(),
                                workdir / "data")
    env = dg_environment(
        # The baselines and the code locations of (e) and (f) are modules of this directory.
        {**os.environ, **settings, "RUNTIME__DLTHUB_TELEMETRY": "false",
         "PYTHONPATH": str(PROJECT_DIR)},
        workdir / "dagster_home",
    )
    Path(env["ECOM_DUCKDB_PATH"]).parent.mkdir(parents=True, exist_ok=True)
    return env


def _command(label: str, env: dict[str, str], spec: SandboxSpec) -> list[str]:
    database = env["ECOM_DUCKDB_PATH"]
    python, base_url = sys.executable, env["ECOM_API_BASE_URL"]
    if label in "ab":
        return [python, "-m", "benchmarks.plain_dlt", base_url, database,
                *(["--parquet"] if label == "b" else [])]
    if label == "d":
        return [python, "-m", "benchmarks.floor", base_url, database]
    span = f"{spec.start.date()}...{(spec.end - timedelta(milliseconds=1)).date()}"
    module = "benchmarks.dagster_alone" if label == "e" else None
    return launch_command("ecom/order_payments", span, module=module)


def run_phases(dagster_home: Path, started: float, ended: float) -> dict[str, float]:
    """Where the time of a `dg launch` went: its process's start and end (epoch seconds) and
    the timestamps of its run's events in the Dagster home."""
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        [run] = instance.get_runs(limit=1)
        events = instance.all_logs(run.run_id)

    def first(kind: DagsterEventType) -> float:
        return min(e.timestamp for e in events if e.dagster_event_type == kind)

    begun = min(e.timestamp for e in events)
    step_start, step_end = first(DagsterEventType.STEP_START), first(DagsterEventType.STEP_SUCCESS)
    recorded = first(DagsterEventType.ASSET_MATERIALIZATION)
    return {
        "start-up: imports, the definitions, the instance": begun - started,
        "planning: the run and its partitions": step_start - begun,
        "the step's work: the dlt run, the checks' SQL": recorded - step_start,
        "recording: a materialization per partition, then each check's evaluations":
            step_end - recorded,
        "the run's end and the process's exit": ended - step_end,
    }


def _check_loaded(variant: Variant, database: Path, records: int) -> None:
    """A variant counts only if it loaded every record: one that lost some is not fast."""
    with duckdb.connect(str(database), read_only=True) as connection:
        [(loaded,)] = connection.execute("select count(*) from ecom.order_payments").fetchall()
    if loaded != records:
        raise SystemExit(f"({variant.label}) loaded {loaded} of {records} records")


def measure(spec: SandboxSpec, repeats: int, labels: str) -> list[Variant]:
    variants = [Variant(label, VARIANTS[label]) for label in labels]
    with SandboxServer(spec, api_key=API_KEY).start() as sandbox:
        if spec.cache_records:
            sandbox.dataset.all("order_payments")  # build the records before anything is timed
        for repeat in range(repeats):
            for variant in variants:
                with tempfile.TemporaryDirectory(prefix="ecom-bench-") as tmp:
                    env = environment(Path(tmp), sandbox.base_url, str(spec.start.date()))
                    if variant.label not in "ce":
                        # Importing ecom_assets chose Arrow's malloc pool for this process's
                        # children; dlt alone runs on Arrow's default.
                        env.pop("ARROW_DEFAULT_MEMORY_POOL", None)
                    started, vendor_cpu = time.time(), time.process_time()
                    # The sandbox serves from this process's threads: what they used is the
                    # vendor's CPU (with the polling for peak RSS: about what (e) shows).
                    sample = measure_process(_command(variant.label, env, spec), env)
                    variant.samples.append(
                        sample._replace(vendor_cpu_seconds=time.process_time() - vendor_cpu)
                    )
                    if variant.label in "ce":
                        variant.phases.append(
                            run_phases(Path(env["DAGSTER_HOME"]), started, time.time())
                        )
                    if variant.label != "e":  # (e) loads nothing by design
                        _check_loaded(variant, Path(env["ECOM_DUCKDB_PATH"]), spec.size)
                sample = variant.samples[-1]
                print(f"  run {repeat + 1}/{repeats} ({variant.label}) {sample.seconds:6.2f} s "
                      f"{sample.peak_rss_kib / 1024:6.0f} MiB, CPU {sample.cpu_seconds:.2f} s, "
                      f"vendor CPU {sample.vendor_cpu_seconds:.2f} s", flush=True)
    return variants


def _runs(repeats: int) -> str:
    return f"median of {repeats} interleaved runs" if repeats > 1 else "one run"


def sandbox_mode(spec: SandboxSpec) -> str:
    return "cached records" if spec.cache_records else "every response built afresh"


def _pages(spec: SandboxSpec) -> int:
    return -(-spec.size // PAGE_SIZE)


def _latency_seconds(spec: SandboxSpec) -> float:
    """The requests' latency alone: the first page gives `total`, the window's other pages then
    go out `PAGE_CONCURRENCY` at a time."""
    pages = _pages(spec)
    return (1 + -(-(pages - 1) // PAGE_CONCURRENCY)) * spec.latency_ms / 1000


def _ceiling(spec: SandboxSpec, medians: dict[str, float]) -> float:
    return medians["a"] / (medians["e"] + _latency_seconds(spec))


def speed_up(spec: SandboxSpec, variants: list[Variant]) -> str:
    """(c) against (a), with the ceiling when (e) ran: a cell of the targets' history."""
    medians = {v.label: v.median_seconds() for v in variants}
    if not {"a", "c"} <= medians.keys():
        return "-"
    cell = f"{medians['a'] / medians['c']:.2f}x"
    return f"{cell} ({_ceiling(spec, medians):.2f}x)" if "e" in medians else cell


def table(spec: SandboxSpec, variants: list[Variant]) -> str:
    medians = {v.label: v.median_seconds() for v in variants}
    mode = sandbox_mode(spec)
    lines = [
        f"### {spec.size:,} order payments, {spec.latency_ms:g} ms per request, sandbox: "
        f"{mode} ({_runs(len(variants[0].samples))})",
        "",
        "| variant | wall time | records/s | peak RSS | CPU: its own, the vendor's "
        "| speed-up vs (a) | vs (b) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def ratio(baseline: str, seconds: float) -> str:
        return f"{medians[baseline] / seconds:.2f}x" if baseline in medians else "-"

    for v in variants:
        seconds = v.median_seconds()
        lines.append(
            f"| ({v.label}) {v.description} | {seconds:.2f} s | {spec.size / seconds:,.0f} "
            f"| {v.median('peak_rss_kib') / 1024:.0f} MiB | {v.median('cpu_seconds'):.2f} s, "
            f"{v.median('vendor_cpu_seconds'):.2f} s | {ratio('a', seconds)} "
            f"| {ratio('b', seconds)} |"
        )
    if "a" in medians and "e" in medians:
        lines += [
            "",
            "Ceiling for (c) with a client that costs nothing: (a) / ((e) + "
            f"{_pages(spec)} requests at {spec.latency_ms:g} ms, {PAGE_CONCURRENCY} in flight) "
            f"= {medians['a']:.2f} s "
            f"/ ({medians['e']:.2f} s + {_latency_seconds(spec):.2f} s) = "
            f"**{_ceiling(spec, medians):.2f}x**.",
        ]
    by_label = {v.label: v for v in variants}
    if "c" in by_label and "e" in by_label:
        sync, alone = by_label["c"], by_label["e"]
        lines += [
            "",
            "The sync itself, (c) over (e): "
            f"{sync.median_seconds() - alone.median_seconds():.2f} s of wall time, in which (c) "
            f"used {sync.median('cpu_seconds') - alone.median('cpu_seconds'):.2f} s more CPU "
            f"and the vendor {sync.median('vendor_cpu_seconds'):.2f} s, of "
            f"{os.cpu_count()} cores.",
        ]
    return "\n".join(lines + phase_table([v for v in variants if v.phases]))


def phase_table(variants: list[Variant]) -> list[str]:
    """Medians, per phase, of the Dagster runs among `variants`."""
    if not variants:
        return []
    phases = list(variants[0].phases[0])
    return [
        "",
        "| phase (median, from the run's events) | "
        + " | ".join(f"({v.label})" for v in variants) + " |",
        "| --- |" + " ---: |" * len(variants),
        *(
            f"| {phase} | " + " | ".join(
                f"{statistics.median(p[phase] for p in v.phases):.2f} s" for v in variants
            ) + " |"
            for phase in phases
        ),
    ]


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _busy_day_end(now: datetime) -> datetime:
    """When today's records end: before the sensor refresh's look-back for late arrivals, so
    that it does not read them again whatever the hour (shortly after midnight the look-back
    would span most of the day); in the day's first minutes, a minute after midnight at most."""
    midnight = datetime.combine(now.date(), datetime.min.time(), UTC)
    return max(now - QUIET_BEFORE_RUNS, min(now, midnight + timedelta(minutes=1)))


def _records_received(dagster_home: Path, partition: str) -> int:
    """What the latest run of `partition` of ecom/order_payments read from the vendor."""
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.fetch_materializations(
            AssetRecordsFilter(AssetKey(["ecom", "order_payments"]),
                               asset_partitions=[partition]),
            limit=1,
        ).records
    return int(records[0].asset_materialization.metadata["records_received"].value)


def run_costs(repeats: int) -> tuple[str, dict[str, str]]:
    """An empty one-day refresh and a sensor refresh late in a busy day, each against the run
    it must stay close to, interleaved: the table, and the cells of the targets' history."""
    started = datetime.now(UTC)
    busy = SandboxSpec.recent(days=1, size=40_000, now=_busy_day_end(started),
                              cache_records=False)
    # Read again by the sensor refreshes if they lie within the look-back for late arrivals.
    busy_day_read_again = busy.end > started - LOOK_BACK
    received: list[int] = []  # records each sensor refresh read
    samples: dict[str, list[float]] = {name: [] for name in (
        "minimal", "libraries", "alone", "empty", "changes", "whole")}
    with SandboxServer(busy, api_key=API_KEY).start() as sandbox, \
            tempfile.TemporaryDirectory(prefix="ecom-bench-") as tmp:
        env = environment(Path(tmp), sandbox.base_url, str(busy.start.date() - timedelta(1)))
        # Today's partition reconciled once: the table holds the busy day (not timed).
        measure_process(launch_command("ecom/order_payments", _today()), env)
        yesterday = (busy.start.date() - timedelta(1)).isoformat()
        commands = {
            "minimal": launch_command("minimal", _today(), module="benchmarks.minimal_dagster"),
            "libraries": launch_command("minimal", _today(),
                                        module="benchmarks.minimal_with_libraries"),
            "alone": launch_command("ecom/order_payments", yesterday,
                                    module="benchmarks.dagster_alone"),
            "empty": launch_command("ecom/order_payments", yesterday),
            "changes": launch_command("ecom/order_payments", _today(), config_json=CHANGES_ONLY),
            "whole": launch_command("ecom/order_payments", _today()),
        }
        for repeat in range(repeats):
            for name, command in commands.items():
                if name in ("changes", "whole"):
                    for record in sandbox.window("order_payments", busy.start)[:20]:
                        sandbox.update_now("order_payments", record["id"])
                samples[name].append(measure_process(command, env).seconds)
                if name == "changes":
                    received.append(_records_received(Path(env["DAGSTER_HOME"]), _today()))
                print(f"  run {repeat + 1}/{repeats} ({name}) {samples[name][-1]:6.2f} s",
                      flush=True)
    median = {name: statistics.median(values) for name, values in samples.items()}
    figures = {
        EMPTY_REFRESH: f"{median['empty'] / median['minimal']:.2f}x "
                       f"({median['alone'] / median['minimal']:.2f}x)",
        SENSOR_REFRESH: f"{median['changes'] / median['empty']:.2f}x",
    }
    text = "\n".join([
        f"### What every run costs ({_runs(repeats)}, sandbox: {sandbox_mode(busy)})",
        "",
        "| run | wall time | ratio |",
        "| --- | ---: | ---: |",
        f"| (f) minimal Dagster run: one daily-partitioned asset, a step that returns at once "
        f"| {median['minimal']:.2f} s | 1.00x |",
        "| (f) importing dlt, DuckDB and requests, as any run of a dlt pipeline into DuckDB "
        f"does | {median['libraries']:.2f} s | "
        f"{median['libraries'] / median['minimal']:.2f}x (f) |",
        f"| (e) on one day: this project's definitions and checks, a step that does nothing "
        f"| {median['alone']:.2f} s | {median['alone'] / median['minimal']:.2f}x (f) |",
        f"| empty one-day refresh (a day without records) | {median['empty']:.2f} s | "
        f"**{median['empty'] / median['minimal']:.2f}x** (f) |",
        f"| sensor refresh of 20 changes late in a day of {busy.size:,} records (`changes_only`) | "
        f"{median['changes']:.2f} s | **{median['changes'] / median['empty']:.2f}x** the "
        "empty refresh |",
        f"| the whole-day refresh a sensor run was before | {median['whole']:.2f} s | "
        f"{median['whole'] / median['empty']:.2f}x the empty refresh |",
        "",
        f"The sensor refreshes read {min(received):,} to {max(received):,} records (median "
        f"{statistics.median(received):,.0f}): the 20 changes, and those of the runs before "
        f"that are still within the look-back for late arrivals ({LOOK_BACK_MINUTES} minutes: "
        f"{DEFAULTS.late_arrival_minutes} late, the rest for the vendor's clocks), as a refresh "
        "in a live shop does. Today's other records end "
        f"{busy.end:%H:%M} UTC, "
        + ("within that look-back, which reads them again: run this more than "
           f"{LOOK_BACK_MINUTES} minutes after midnight UTC for the scenario meant."
           if busy_day_read_again else
           "before that look-back, whatever the hour; late in a real day of "
           f"{busy.size:,} records it would also read its last {LOOK_BACK_MINUTES} minutes' "
           "(about "
           f"{busy.size * LOOK_BACK_MINUTES // (24 * 60)})."),
    ])
    return text, figures


# The targets' history: a row per `make bench`, newest first, each cell a target's figure.
HISTORY = "make bench: targets by run"
HISTORY_ROWS_KEPT = 20
FIFTY_K, TWENTY_K, CACHED = "50k, 0 ms", "20k, 20 ms (ceiling)", "cached 50k, 0 ms"
EMPTY_REFRESH = "empty refresh over (f) (floor: (e))"
SENSOR_REFRESH = "sensor refresh over the empty one"
HISTORY_COLUMNS = {  # the column, its target
    FIFTY_K: ">= 3x (a)",
    TWENTY_K: ">= 3x (a)",
    EMPTY_REFRESH: "<= 1.25x",
    SENSOR_REFRESH: "<= 1.1x",
    CACHED: "no regression",
}
TARGET_SCENARIOS = {  # (records, latency in ms, cached): the column its ratio fills
    (50_000, 0.0, False): FIFTY_K,
    (20_000, 20.0, False): TWENTY_K,
    (50_000, 0.0, True): CACHED,
}


def code_version() -> str:
    """The commit measured, `+changes` if tracked files differ from it (this page aside)."""
    def git(*arguments: str) -> str:
        try:
            return subprocess.run(["git", *arguments], cwd=PROJECT_DIR, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:  # no git: a copy of the project outside a repository
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  f":!{BENCHMARKS_PAGE.name}")
    return f"{commit}+changes" if commit and changed else commit or "unknown"


def history(figures: dict[str, str], page: Path) -> str:
    """The targets' history of `page` with this run's row on top."""
    cells = [datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), f"`{code_version()}`",
             *(figures.get(column, "-") for column in HISTORY_COLUMNS)]
    earlier = [line for line in read_section(HISTORY, page, command="make bench").splitlines()
               if re.match(r"\| \d{4}-", line)]
    return "\n".join([
        "Each `make bench` adds its row (medians; its tables are the section above).",
        "",
        "| run (UTC) | code | " + " | ".join(HISTORY_COLUMNS) + " |",
        "| --- | --- |" + " ---: |" * len(HISTORY_COLUMNS),
        "| target | |" + "".join(f" {target} |" for target in HISTORY_COLUMNS.values()),
        "| " + " | ".join(cells) + " |",
        *earlier[: HISTORY_ROWS_KEPT - 1],
    ])


def machine() -> str:
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("dagster", "dagster-dlt", "dlt", "duckdb")
    )
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; {packages}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark against plain dlt.")
    parser.add_argument(
        "--scenario", action="append", metavar="RECORDS:LATENCY_MS[:cached]",
        help="default: 50000:0 and 20000:20, fresh then cached",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="abcde", help="which of a to e to run")
    parser.add_argument("--no-run-costs", action="store_true",
                        help="skip the empty refresh and sensor refresh table")
    # Its runs take seconds each, where the machine's noise weighs most.
    parser.add_argument("--run-cost-repeats", type=int, default=7)
    parser.add_argument("--section", default="make bench",
                        help="the section of BENCHMARKS.md to write (see `make bench-scale`)")
    parser.add_argument("--output", type=Path, default=BENCHMARKS_PAGE)
    args = parser.parse_args()

    default = ["50000:0", "20000:20", "50000:0:cached", "20000:20:cached"]
    sections = [
        f"Produced by `{args.section}` (benchmarks/bench.py) on {time.strftime('%Y-%m-%d')}: "
        f"{machine()}. Every variant is a fresh process on the same sandbox data; ratios are "
        "what to compare, since the machine is noisy."
    ]
    figures: dict[str, str] = {}  # the targets' cells of this run
    for scenario in args.scenario or default:
        records, latency, *mode = scenario.split(":")
        spec = SandboxSpec(size=int(records), latency_ms=float(latency),
                           cache_records=mode == ["cached"])
        print(f"{scenario}:", flush=True)
        variants = measure(spec, args.repeats, args.variants)
        sections.append(table(spec, variants))
        print(sections[-1], flush=True)
        column = TARGET_SCENARIOS.get((spec.size, spec.latency_ms, spec.cache_records))
        if column:
            figures[column] = speed_up(spec, variants)
    if not args.no_run_costs:
        text, run_cost_figures = run_costs(args.run_cost_repeats)
        sections.append(text)
        figures.update(run_cost_figures)
        print(sections[-1], flush=True)
    write_section(args.section, "\n\n".join(sections), args.output)
    if args.section == "make bench":  # `make bench-scale` measures no target of this table
        write_section(HISTORY, history(figures, args.output), args.output, command="make bench")


if __name__ == "__main__":
    main()
