"""`make docs`: the tables of the README and docs/how-it-works.md that restate code (every
setting, every check) are generated from it, between markers, so that they cannot drift; a test
fails when one is stale."""

from collections.abc import Callable
from pathlib import Path

from benchmarks.page import write_section
from ecom_assets.defs.checks import CHECKS
from ecom_assets.launch import PROJECT_DIR
from ecom_assets.settings import SETTINGS

COMMAND = "make docs"


def settings_table() -> str:
    rows = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default is not None else "(required)"
        rows.append(f"| `{setting.variable}` | {default} | {setting.description} |")
    return "\n".join(rows)


def checks_table() -> str:
    rows = ["| check | severity | verifies |", "| --- | --- | --- |"]
    for check in CHECKS:
        severity = "blocking" if check.blocking else "warning"
        rows.append(f"| `{check.name}` | {severity} | {check.description} |")
    return "\n".join(rows)


# Each page, and its tables by section name.
TABLES: dict[Path, dict[str, Callable[[], str]]] = {
    PROJECT_DIR / "README.md": {"settings": settings_table},
    PROJECT_DIR / "docs" / "how-it-works.md": {"checks": checks_table},
}


def main() -> None:
    for page, tables in TABLES.items():
        for name, table in tables.items():
            write_section(name, table(), page, command=COMMAND)


if __name__ == "__main__":
    main()
