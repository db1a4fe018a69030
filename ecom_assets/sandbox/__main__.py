"""Serve the sandbox API until SIGINT or SIGTERM, e.g.
`python -m ecom_assets.sandbox --port 8765 --size 5000 --api-key-env ECOM_API_KEY`.

By default the data covers the last `--days` (30) UTC days up to now, today included
(`SandboxSpec.recent`); `--start YYYY-MM-DD` pins the span to [start, start + days) instead.
The first line printed names the address and the span; the API key is never printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime

from .data import DEFAULT_SPEC, SandboxSpec, format_timestamp_ms, parse_timestamp_ms
from .server import DEFAULT_API_KEY, SandboxServer


def _utc_midnight(text: str) -> datetime:
    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ecom_assets.sandbox", description="Serve the sandbox vendor API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--size", type=int, default=DEFAULT_SPEC.size, help="records per resource")
    parser.add_argument(
        "--days",
        type=int,
        default=30,
        help="UTC days of data: the last DAYS up to now (today included), or from --start",
    )
    parser.add_argument(
        "--start",
        type=_utc_midnight,
        help="pin the first UTC day, YYYY-MM-DD (default: recent data ending now)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SPEC.seed)
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_SPEC.latency_ms)
    parser.add_argument(
        "--unknown-fields",
        action="store_true",
        help="every record also carries a field the contract does not list",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="build every page's records afresh, never keep them (same data)",
    )
    parser.add_argument(
        "--live",
        type=float,
        metavar="SECONDS",
        help="every SECONDS, create records and update one, as a live vendor does",
    )
    parser.add_argument("--live-per-tick", type=int, default=5, help="records created per tick")
    parser.add_argument(
        "--changes-per-second",
        type=_not_negative,
        default=0.0,
        help="updates of random existing records per second, all resources together",
    )
    parser.add_argument(
        "--creates-per-second",
        type=_not_negative,
        default=0.0,
        help="new records per second, all resources together",
    )
    parser.add_argument(
        "--late-arrival-ms",
        type=int,
        default=0,
        help="date background changes up to this many ms in the past (late arrivals)",
    )
    parser.add_argument(
        "--api-key-env",
        default="ECOM_API_KEY",
        help=f"environment variable holding the API key (unset: {DEFAULT_API_KEY!r})",
    )
    args = parser.parse_args(argv)
    if args.late_arrival_ms < 0:
        parser.error("--late-arrival-ms must not be negative")
    return args


def _describe(server: SandboxServer, spec: SandboxSpec, args: argparse.Namespace) -> str:
    counts = ", ".join(f"{name}={spec.size}" for name in server.resources)
    end_ms = parse_timestamp_ms(spec.end)
    last_day = datetime.fromtimestamp((end_ms - 1) // 1000, UTC)
    span = (
        f"{spec.start:%Y-%m-%d}..{last_day:%Y-%m-%d}, updated_at in "
        f"[{format_timestamp_ms(parse_timestamp_ms(spec.start))}, {format_timestamp_ms(end_ms)})"
    )
    extras = []
    if args.live:
        extras.append(f"live every {args.live:g} s")
    if args.changes_per_second:
        extras.append(f"{args.changes_per_second:g} changes/s")
    if args.creates_per_second:
        extras.append(f"{args.creates_per_second:g} creates/s")
    if args.late_arrival_ms:
        extras.append(f"late arrivals up to {args.late_arrival_ms} ms")
    if args.fresh:
        extras.append("fresh pages")
    if args.unknown_fields:
        extras.append("unknown fields")
    return (
        f"sandbox listening on {server.base_url} ({counts} records, {span}"
        f"{''.join(', ' + extra for extra in extras)})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # Installed first: a signal during the (possibly long) start still stops cleanly.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    options = {
        "size": args.size,
        "seed": args.seed,
        "latency_ms": args.latency_ms,
        "unknown_fields": args.unknown_fields,
        "cache_records": not args.fresh,
    }
    if args.start is not None:
        spec = SandboxSpec(start=args.start, days=args.days, **options)
    else:
        spec = SandboxSpec.recent(days=args.days, **options)
    api_key = os.environ.get(args.api_key_env) or DEFAULT_API_KEY
    server = SandboxServer(
        spec,
        api_key,
        args.host,
        args.port,
        live_interval_s=args.live,
        live_per_tick=args.live_per_tick,
        changes_per_second=args.changes_per_second,
        creates_per_second=args.creates_per_second,
        late_arrival_ms=args.late_arrival_ms,
    )
    with server:
        print(_describe(server, spec, args), flush=True)
        while not stop.wait(0.1):  # a short wait, so a signal is acted on promptly
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
