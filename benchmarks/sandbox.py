"""`make bench-sandbox`: does the sandbox vendor keep up when it serves 1,000,000 records?

Starts the sandbox with N order payments (default 1,000,000) and pages its whole span, 100
records a page, at the start and at the end of the window: a server that rescanned the data
for every page would be slower at the end. It writes pages per second for one client and for
8 concurrent clients (the pipeline's default), to compare with what a backfill consumes, to its
section of BENCHMARKS.md.
"""

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks.bench import API_KEY, machine, sandbox_mode
from benchmarks.page import BENCHMARKS_PAGE, write_section
from ecom_assets.ingest.window import rfc3339
from ecom_assets.sandbox.data import SandboxSpec
from ecom_assets.sandbox.server import SandboxServer

PAGES = 400
LIMIT = 100


def _pages_per_second(base_url: str, params: dict[str, str], offsets: list[int], clients: int
                      ) -> float:
    sessions = [requests.Session() for _ in range(clients)]

    def fetch(index: int) -> None:
        response = sessions[index % clients].get(
            f"{base_url}/v1/order_payments",
            params={**params, "limit": LIMIT, "offset": offsets[index]},
            timeout=30,
        )
        response.raise_for_status()
        assert len(response.json()["data"]) == LIMIT

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(fetch, range(len(offsets))))
    return len(offsets) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, default=BENCHMARKS_PAGE)
    args = parser.parse_args()

    spec = SandboxSpec(size=args.records)
    started = time.perf_counter()
    with SandboxServer(spec, api_key=API_KEY).start() as sandbox:
        startup = time.perf_counter() - started
        params = {
            "api_key": API_KEY,
            "updated_since": rfc3339(spec.start),
            "updated_before": rfc3339(spec.end),
        }
        head = [i * LIMIT for i in range(PAGES)]
        tail = [args.records - (i + 1) * LIMIT for i in range(PAGES)]
        rows = []
        for clients in (1, 8):
            for where, offsets in (("start", head), ("end", tail)):
                # The first read of a page builds its records; the second is what a window
                # paged again, or the next benchmark variant, gets.
                first = _pages_per_second(sandbox.base_url, params, offsets, clients)
                again = _pages_per_second(sandbox.base_url, params, offsets, clients)
                rows.append(f"| {clients} | {where} of the window | {first:,.0f} | {again:,.0f} |")
    report = "\n".join([
        f"Produced by `make bench-sandbox` (benchmarks/sandbox.py) on "
        f"{time.strftime('%Y-%m-%d')}: {machine()}; "
        f"{sandbox_mode(spec)}.",
        "",
        f"Sandbox with {args.records:,} order payments: started in {startup:.2f} s; "
        f"{PAGES} pages of {LIMIT} records per measurement.",
        "",
        "| clients | pages | pages/s, first read | pages/s, read again |",
        "| ---: | --- | ---: | ---: |",
        *rows,
    ])
    print(report)
    write_section("make bench-sandbox", report, args.output)


if __name__ == "__main__":
    main()
