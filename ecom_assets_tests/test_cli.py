"""The user's paths through real processes: `make demo`'s module, `dg launch`, the dlt CLI."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from benchmarks.page import write_section
from ecom_assets.launch import launch_command
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import OMIT, Fault, SandboxServer
from ecom_assets_tests.support import PROJECT_DIR, project_env, rows

pytestmark = pytest.mark.system


def _run_module(
    module_and_args: list[str], env: dict[str, str], cwd: Path = PROJECT_DIR
) -> subprocess.CompletedProcess:
    """`python -m ...` in a real process (of this project, run in `cwd`), output captured."""
    return subprocess.run(
        [sys.executable, "-m", *module_and_args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
    )


def test_the_demo_backfills_both_assets_and_prints_rows_and_checks_whatever_dotenv_says(
    tmp_path: Path,
) -> None:
    # The project as a user has it, with a `.env` for a real vendor: an unreachable one and
    # another warehouse and Dagster home. Dagster's CLI would load that file over the
    # demo's environment if it ran in the project directory.
    project = tmp_path / "project"
    skip = shutil.ignore_patterns("__pycache__", "secrets.toml")
    for part in ("ecom_assets", ".dlt"):
        shutil.copytree(PROJECT_DIR / part, project / part, ignore=skip)
    for part in ("pyproject.toml", "dagster.yaml", "workspace.yaml"):
        shutil.copy(PROJECT_DIR / part, project / part)
    real = tmp_path / "real_vendor"
    (project / ".env").write_text(
        "ECOM_API_BASE_URL=http://127.0.0.1:9\nECOM_API_KEY=real-key\n"
        f"ECOM_DUCKDB_PATH={real / 'warehouse.duckdb'}\nDAGSTER_HOME={real / 'dagster_home'}\n"
    )
    sandbox_data = tmp_path / "sandbox"
    # `make` exports the `.env`'s settings to every target, `make demo` included.
    exported = {
        "ECOM_API_BASE_URL": "http://127.0.0.1:9", "ECOM_PAGE_CONCURRENCY": "many",
        "ECOM_DESTINATION": "postgres",
        "DESTINATION__POSTGRES__CREDENTIALS": "postgresql://u:p@127.0.0.1:9/w",
    }

    result = _run_module(
        ["ecom_assets.demo", "--data", str(sandbox_data)], {**os.environ, **exported},
        cwd=project,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ecom.order_payments: 5000 rows (0 quarantined)" in result.stdout
    assert "ecom.products: 5000 rows (0 quarantined)" in result.stdout
    checks = re.findall(r"^  ecom/\w+\s+\w+\s+(\w+)", result.stdout, re.MULTILINE)
    assert checks == ["PASSED"] * 12, result.stdout
    assert "with checks that did not pass" not in result.stdout
    assert "Warning" not in output, "no Supersession, Deprecation or other warning"
    assert (sandbox_data / "warehouse.duckdb").exists() and not real.exists()


def test_the_demo_run_again_after_a_ui_session_starts_afresh_and_passes_every_check(
    tmp_path: Path,
) -> None:
    demo = ["ecom_assets.demo", "--data", str(tmp_path), "--days", "2"]
    assert _run_module(demo, dict(os.environ)).returncode == 0
    # A `make ui` session: its live sandbox moved a record to now, and the run it launched
    # stored that version. A sandbox started again serves the record as it was.
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute("update ecom.order_payments set updated_at = now() "
                           "where id = (select min(id) from ecom.order_payments)")

    again = _run_module(demo, dict(os.environ))

    assert again.returncode == 0, again.stdout + again.stderr
    checks = re.findall(r"^  ecom/\w+\s+\w+\s+(\w+)", again.stdout, re.MULTILINE)
    assert checks == ["PASSED"] * 12, again.stdout
    assert "(0 quarantined)" in again.stdout


@pytest.mark.parametrize(
    "selections",
    [
        pytest.param(("ecom/order_payments", "ecom/products"), id="two-assets"),
        pytest.param(("ecom/order_payments", "ecom/order_payments"), id="same-partition"),
    ],
)
def test_two_runs_at_once_take_turns_writing_duckdb(
    tmp_path: Path, selections: tuple[str, str]
) -> None:
    # Slow enough that the two runs would overlap if nothing serialised them.
    spec = SandboxSpec(size=20_000, days=10, latency_ms=100)
    with SandboxServer(spec, api_key="pool-test-key").start() as sandbox:
        env = project_env(tmp_path, sandbox, "pool-test-key")
        runs = [
            subprocess.Popen(
                launch_command(selection, "2026-01-01...2026-01-10"),
                env=env, cwd=env["DAGSTER_HOME"], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True,
            )
            for selection in selections
        ]
        outputs = [run.communicate(timeout=180)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    # CLI runs bypass the run queue: the second writer waited for the database's lock.
    assert any("Waiting for the run that is writing" in out for out in outputs), outputs
    database = Path(env["ECOM_DUCKDB_PATH"])
    for resource in {selection.split("/")[1] for selection in selections}:
        ids = [r[0] for r in rows(database, f"select id from ecom.{resource}")]
        assert len(ids) == len(set(ids)), "no duplicates"
        assert set(ids) == {r["id"] for r in sandbox.dataset.all(resource)}


def test_the_dlt_only_cli_loads_everything_until_now_and_sees_a_record_move(
    tmp_path: Path, sandbox: SandboxServer, api_key: str
) -> None:
    records = sandbox.dataset.all("order_payments")
    # A defective record without an id is updated after the first page, as an update that
    # fixes it would be: it moves out of the window the CLI asked for (everything until the
    # run started), and the vendor's total drops. With no window end it would stay, at the
    # end, and its two versions (one without an id) would hide the record the shift skipped.
    moved = records[10]
    sandbox.corrupt("order_payments", moved["id"], id=OMIT)
    # The window is read in two parts (before and within the late-arrival margin), whose
    # first pages are asked for at once: both are served as they are, the update comes with
    # a later page.
    sandbox.faults.add("order_payments", Fault.stall(0), times=2)
    sandbox.faults.add(
        "order_payments", Fault.act(lambda: sandbox.update_now("order_payments", moved["id"]))
    )

    result = _run_module(
        ["ecom_assets.ingest", "--resource", "order_payments"],
        project_env(tmp_path, sandbox, api_key),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the vendor's total changed from 1000 to 999" in result.stderr
    assert "order_payments: vendor total 999, loaded 999, quarantined 0" in result.stdout
    database = tmp_path / "data" / "warehouse.duckdb"
    ids = {r[0] for r in rows(database, "select id from ecom.order_payments")}
    assert ids == {r["id"] for r in records} - {moved["id"]}


def test_make_bench_runs_every_variant_on_the_same_data_and_writes_the_table(
    tmp_path: Path,
) -> None:
    # A tiny scenario: this checks that the benchmark works (every variant ran and loaded
    # all 300 records, or it exits), never how fast anything is.
    output = tmp_path / "BENCHMARKS.md"
    analysis = "Analysis written by hand, around the generated sections."
    history = "make bench: targets by run"
    earlier_run = "| 2026-11-29 23:46 | `0000000` | 3.02x | 2.11x (2.91x) | 1.40x | 1.18x | 2.87x |"
    output.write_text(
        "# Benchmarks\n\n<!-- make bench: written by `make bench`, edits inside are lost -->\n"
        f"an old table\n<!-- make bench: end -->\n\n{analysis}\n\n"
        f"<!-- {history}: written by `make bench`, edits inside are lost -->\n"
        f"| run (UTC) | code |\n{earlier_run}\n<!-- {history}: end -->\n\nMore analysis.\n"
    )
    result = _run_module(
        ["benchmarks.bench", "--scenario", "300:5", "--repeats", "1", "--run-cost-repeats", "1",
         "--output", str(output)],
        {**os.environ, "TMPDIR": str(tmp_path)},  # the variants' warehouses and Dagster homes
    )

    assert result.returncode == 0, result.stdout + result.stderr
    table = output.read_text()
    for label in "abcde":
        assert re.search(rf"^\| \({label}\) .* \| [\d.]+x \| [\d.]+x \|$", table, re.M), label
    assert re.search(r"^Ceiling for \(c\) .* = \*\*[\d.]+x\*\*\.$", table, re.M)
    # The CPU each variant and the vendor used: whether the client or the vendor is the bound.
    assert re.search(r"^\| \(c\) .* MiB \| [\d.]+ s, [\d.]+ s \| [\d.]+x", table, re.M)
    assert re.search(r"^The sync itself, \(c\) over \(e\): -?[\d.]+ s of wall time, in which "
                     r"\(c\) used -?[\d.]+ s more CPU and the vendor [\d.]+ s", table, re.M)
    # Where the time of (c) and (e) went, phase by phase, from their runs' events.
    assert re.search(r"^\| the step's work: .* \| [\d.]+ s \| [\d.]+ s \|$", table, re.M)
    # Its section replaced, the rest of the page kept.
    assert "an old table" not in table
    assert table.count("<!-- make bench: end -->") == 1
    assert f"<!-- make bench: end -->\n\n{analysis}\n\n<!-- {history}:" in table
    assert table.endswith(f"<!-- {history}: end -->\n\nMore analysis.\n")
    assert re.search(r"^\| empty one-day refresh .* \*\*[\d.]+x\*\* \(f\) \|$", table, re.M)
    assert re.search(r"^The sensor refreshes read [\d,]+ to [\d,]+ records", table, re.M)
    # The targets' history: this run's row on top, with the commit measured, then the earlier
    # runs'. This scenario is none of the targets': only the run costs have figures.
    rows = re.findall(r"^\| \d{4}-.*\|$", table, re.M)
    assert rows[1:] == [earlier_run]
    assert re.fullmatch(
        r"\| [\d-]+ [\d:]+ \| `([0-9a-f]+(\+changes)?|unknown)` \| - \| - \| [\d.]+x \([\d.]+x\) "
        r"\| [\d.]+x \| - \|", rows[0]
    ), rows[0]


def test_a_benchmark_rewrites_its_own_section_of_the_page_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    page = tmp_path / "BENCHMARKS.md"
    write_section("make bench", "first table", page)
    write_section("make bench-scale", "scale table", page)
    page.write_text(page.read_text() + "\nAnalysis by hand.\n")

    write_section("make bench", "second table", page)

    text = page.read_text()
    assert "first table" not in text
    assert "second table" in text and "scale table" in text
    assert text.endswith("<!-- make bench-scale: end -->\n\nAnalysis by hand.\n")
    # Without its end marker (deleted by hand) a section is refused: replacing up to another
    # marker would take the text between them.
    page.write_text(text.replace("<!-- make bench: end -->", ""))
    with pytest.raises(SystemExit, match="one begin and one end marker"):
        write_section("make bench", "third table", page)
    assert "Analysis by hand." in page.read_text()


def test_the_dlt_only_cli_says_what_the_vendor_rejected_without_a_traceback_or_the_key(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    wrong_key = "wrong-key-4f1c2a"

    result = _run_module(
        ["ecom_assets.ingest", "--resource", "products"],
        project_env(tmp_path, sandbox, wrong_key),
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "extract failed: products offset 0: the vendor rejected the request with HTTP 401 "
        "(unauthorized: invalid or missing api_key); not retried"
    )
    assert "Traceback" not in result.stderr
    assert wrong_key not in result.stdout + result.stderr


def test_the_dlt_only_cli_without_a_key_says_which_setting_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in project_env(tmp_path).items() if k != "ECOM_API_KEY"}

    result = _run_module(["ecom_assets.ingest"], env, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        'error: ECOM_API_KEY must be set (in the environment, .env, or .dlt/secrets.toml as '
        'ecom_api_key = "..."); it is not set'
    )
