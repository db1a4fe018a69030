"""BENCHMARKS.md: each benchmark writes its own section, between two markers, and keeps the
rest of the page (the analysis, written by hand) as it is."""

from pathlib import Path

from ecom_assets.launch import PROJECT_DIR

BENCHMARKS_PAGE = PROJECT_DIR / "BENCHMARKS.md"


def _markers(name: str, command: str | None) -> tuple[str, str]:
    return (f"<!-- {name}: written by `{command or name}`, edits inside are lost -->",
            f"<!-- {name}: end -->")


def read_section(name: str, page: Path = BENCHMARKS_PAGE, command: str | None = None) -> str:
    """The text of section `name` of `page`, empty if it has none."""
    begin, end = _markers(name, command)
    content = page.read_text() if page.exists() else ""
    return content.partition(begin)[2].partition(end)[0].strip()


def write_section(
    name: str, text: str, page: Path = BENCHMARKS_PAGE, command: str | None = None
) -> None:
    """Replace section `name` of `page` (written by `command`, by default the section's name)
    with `text`, or append it if the page has none."""
    begin, end = _markers(name, command)
    content = page.read_text() if page.exists() else ""
    section = f"{begin}\n{text.strip()}\n{end}"
    before, found, rest = content.partition(begin)
    if not found:
        content = f"{content.rstrip()}\n\n{section}\n".lstrip()
    elif rest.count(end) == 1 and begin not in rest:
        content = before + section + rest.split(end, 1)[1]
    else:
        # Replacing up to a marker that is not this section's own end would take the text
        # written by hand between them.
        raise SystemExit(f"{page}: section `{name}` must have one begin and one end marker")
    page.write_text(content)
    print(f"wrote section `{name}` of {page}")
