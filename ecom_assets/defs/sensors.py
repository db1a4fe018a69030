"""A sensor that asks the vendor what changed and refreshes only the partitions that did.

Each tick lists, per resource, the ids and `updated_at` of the records updated since the last
tick less the look-back for late arrivals, up to now (`ingest/probe.py`; a record stamped later,
by a clock ahead of ours, is a change for a later tick). Any change filed since the last tick
lies in that span, a late one included, and makes the list differ from what the last tick saw
there, kept in the cursor as a digest. The changed daily partitions are the days the list
spans. One run per tick refreshes them, for the resources that changed. Its run key names each
resource's latest change, the list's digest and how many runs the sensor had requested for it
before, so a tick evaluated twice requests nothing twice, while a later tick that sees an
earlier state again (a deletion, then a late arrival) still gets its run: Dagster never
launches a run key twice.

It starts RUNNING: keeping the warehouse fresh is what the project is for. The listing is one
request for a quiet shop, and stops at its first page for one with more than `MAX_LISTED`
changes in a tick's span, which changes at every tick. Stop it in the UI (Automation) if the
vendor's rate limit is tight.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ecom_assets.contract import ResourceContract, parse_timestamp
from ecom_assets.defs.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START, TRIGGER_TAG
from ecom_assets.defs.resources import VendorApiResource
from ecom_assets.defs.translator import asset_key
from ecom_assets.ingest import VendorAPIError
from ecom_assets.ingest.probe import Listing, list_changes
from ecom_assets.ingest.window import floor_ms, look_back, rfc3339

SENSOR_TRIGGER = "vendor_changes"
EMPTY_LISTING = Listing(()).fingerprint()
# Defective timestamps a tick names in its log; the others are counted.
MAX_LOGGED = 3


def build_change_sensor(
    contracts: Sequence[ResourceContract],
    job_name: str,
    partitions_def: DailyPartitionsDefinition,
    interval_seconds: int,
) -> SensorDefinition:
    @sensor(
        name="ecom_vendor_changes",
        job_name=job_name,
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Refreshes the daily partitions in which the vendor reports changes.",
    )
    def ecom_vendor_changes(
        context: SensorEvaluationContext, vendor_api: VendorApiResource
    ) -> SensorResult:
        now = datetime.now(UTC)
        lookback = look_back(timedelta(minutes=vendor_api.late_arrival_minutes))
        cursor = _read_cursor(context, contracts)
        changed: list[tuple[str, str]] = []  # (resource, the vendor's state)
        days: set[str] = set()
        problems: list[str] = []
        for contract in contracts:
            seen = cursor.get(contract.name) or {}
            # Without a cursor the sensor watches from now on; backfills cover the past.
            since = min(_moment(seen.get("since")) or now - lookback, now)
            try:
                with vendor_api.probe_session() as session:
                    listing = list_changes(vendor_api.base_url, session, contract, since, now)
            except VendorAPIError as exc:
                # The other resources are still looked at; this one is asked again next tick.
                problems.append(f"{contract.name}: {exc}")
                context.log.warning(f"Could not ask the vendor for changes to {contract.name}: "
                                    f"{exc}")
                continue
            _log_defective(context, listing.defective)
            if not listing.entries and not listing.defective:
                # An outage answers `{"data": [], "total": 0}` as a quiet shop does: the cursor
                # stays, so that the next tick lists this span again, with any change it hid
                # (a resource without one starts from this tick's span).
                cursor.setdefault(contract.name, {"since": rfc3339(floor_ms(since)),
                                                  "requested": 0})
                continue
            # Changes filed before the next tick lie after now less the look-back: listed from
            # there (to the millisecond, as the cursor keeps it), the next tick compares what
            # this one saw there. A busy shop's listing is cut short: it changed.
            next_since = floor_ms(max(since, now - lookback))
            state = {"since": rfc3339(next_since), "requested": seen.get("requested", 0)}
            if listing.complete:
                state["seen"] = listing.fingerprint(next_since)
            cursor[contract.name] = state
            # A cursor of an older version, or none, holds no list: anything listed is new.
            digest = listing.fingerprint()
            if listing.first is None or digest == seen.get("seen", EMPTY_LISTING):
                continue
            # A listing cut short holds its first page only: its changes run up to now.
            last = (listing.last if listing.complete else None) or now
            # The digest tells apart the runs of two states a tick evaluated twice can see.
            changed.append((contract.name, f"{rfc3339(last)}#{digest[:12]}"))
            days.update(_days(partitions_def, listing.first, last, now))
        if not changed or not days:
            reason = "; ".join(problems) or "The vendor reports no changes since the last tick."
            return SensorResult(skip_reason=SkipReason(reason),
                                cursor=json.dumps(cursor, sort_keys=True))
        for name, _ in changed:
            cursor[name]["requested"] += 1
        names = [name for name, _ in changed]
        states = [f"{name}@{state}~{cursor[name]['requested']}" for name, state in changed]
        first_day, last_day = min(days), max(days)
        tags = {TRIGGER_TAG: SENSOR_TRIGGER, "ecom/changed": ", ".join(names)}
        if first_day != last_day:
            tags |= {PARTITION_RANGE_START: first_day, PARTITION_RANGE_END: last_day}
        run = RunRequest(
            run_key=f"{first_day}..{last_day}:{','.join(states)}",
            asset_selection=[asset_key(c) for c in contracts if c.name in names],
            partition_key=first_day if first_day == last_day else None,
            # Read only what changed since each partition was last reconciled.
            run_config={"ops": {"ecom_vendor_sync": {"config": {"changes_only": True}}}},
            tags=tags,
        )
        return SensorResult(run_requests=[run], cursor=json.dumps(cursor, sort_keys=True))

    return ecom_vendor_changes


def _read_cursor(
    context: SensorEvaluationContext, contracts: Sequence[ResourceContract]
) -> dict[str, Any]:
    """The cursor, or an empty one (watch from now on) if it cannot be read."""
    if not context.cursor:
        return {}
    try:
        cursor = json.loads(context.cursor)
        if not isinstance(cursor, dict) or not all(
            isinstance(cursor.get(c.name, {}), dict) for c in contracts
        ):
            raise ValueError("not a JSON object of resources")
        # A count that is not one could make a run key the daemon has launched before.
        if not all(type(cursor.get(c.name, {}).get("requested", 0)) is int for c in contracts):
            raise ValueError("a count of requested runs that is not a whole number")
    except ValueError as exc:
        context.log.warning(
            f"The sensor's cursor could not be read ({exc}); watching for changes from now on"
        )
        return {}
    return cursor


def _moment(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _log_defective(context: SensorEvaluationContext, defective: Sequence[str]) -> None:
    for message in defective[:MAX_LOGGED]:
        context.log.warning(f"{message}; left out of the changes")
    if len(defective) > MAX_LOGGED:
        context.log.warning(f"{len(defective) - MAX_LOGGED} more records with a defective "
                            "`updated_at` left out of the changes")


def _days(
    partitions_def: DailyPartitionsDefinition, first: datetime, last: datetime, now: datetime
) -> list[str]:
    """Partition keys from `first`'s day to `last`'s day, clipped to existing partitions."""
    start = max(first, partitions_def.start).date()
    end = min(last, now).date()
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]
