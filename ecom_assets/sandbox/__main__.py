"""Serve the sandbox API until SIGINT or SIGTERM, e.g.
`python -m ecom_assets.sandbox --port 8765 --size 5000 --api-key-env ECOM_API_KEY`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from .data import DEFAULT_SPEC, SandboxSpec
from .server import DEFAULT_API_KEY, SandboxServer


def _utc_midnight(text: str) -> datetime:
    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ecom_assets.sandbox", description="Serve the sandbox vendor API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--size", type=int, default=DEFAULT_SPEC.size, help="records per resource")
    parser.add_argument(
        "--start", type=_utc_midnight, default=DEFAULT_SPEC.start, help="first UTC day, YYYY-MM-DD"
    )
    parser.add_argument("--days", type=int, default=DEFAULT_SPEC.days)
    parser.add_argument("--seed", type=int, default=DEFAULT_SPEC.seed)
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_SPEC.latency_ms)
    parser.add_argument(
        "--live",
        type=float,
        metavar="SECONDS",
        help="every SECONDS, create records and update one, as a live vendor does",
    )
    parser.add_argument("--live-per-tick", type=int, default=5, help="records created per tick")
    parser.add_argument(
        "--api-key-env",
        default="ECOM_API_KEY",
        help=f"environment variable holding the API key (unset: {DEFAULT_API_KEY!r})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    spec = SandboxSpec(
        size=args.size, start=args.start, days=args.days, seed=args.seed, latency_ms=args.latency_ms
    )
    api_key = os.environ.get(args.api_key_env) or DEFAULT_API_KEY
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with SandboxServer(
        spec, api_key, args.host, args.port, live_interval_s=args.live,
        live_per_tick=args.live_per_tick,
    ) as server:
        last_day = spec.end - timedelta(days=1)
        print(
            f"sandbox listening on {server.base_url} (order_payments={spec.size}, "
            f"products={spec.size} records, {spec.start:%Y-%m-%d}..{last_day:%Y-%m-%d}"
            f"{f', live every {args.live:g} s' if args.live else ''})",
            flush=True,
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
