"""A sensor that asks the vendor what changed and refreshes only the partitions that did.

Each tick probes every resource with `updated_since=<cursor - lookback>` and `limit=1` (two
one-record requests: the earliest and the latest change). Records only move forward in time
when they change, so the changed daily partitions are the days from the earliest to the latest
change. One run per changed day covers the resources that changed on it; its run key names the
vendor's state (each resource's latest change), so a tick evaluated twice requests nothing
twice.

It starts RUNNING: keeping the warehouse fresh is what the project is for, and the probe costs
two tiny requests per resource and tick. Stop it in the UI (Automation) if the vendor's rate
limit is tight.
"""

import json
import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ecom_assets.contract import CONTRACTS, parse_timestamp
from ecom_assets.defs.partitions import daily_partitions
from ecom_assets.defs.resources import ChangeSensorSettings, VendorApiResource
from ecom_assets.defs.translator import ASSET_GROUP, asset_key
from ecom_assets.ingest import VendorAPIError
from ecom_assets.ingest.probe import probe_changes
from ecom_assets.ingest.window import rfc3339

MILLISECOND = timedelta(milliseconds=1)
# How often the daemon may evaluate the sensor. Dagster needs it when the definitions load, so
# it is read then, like the partitions' start date.
def _minimum_interval_seconds() -> int:
    text = os.getenv("ECOM_SENSOR_INTERVAL_SECONDS") or "30"
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"ECOM_SENSOR_INTERVAL_SECONDS must be whole seconds, at least 1: {text!r}"
        )
    return int(text)


MINIMUM_INTERVAL_SECONDS = _minimum_interval_seconds()


def _days(first: datetime, last: datetime) -> list[str]:
    """Partition keys from `first`'s day to `last`'s day, clipped to existing partitions."""
    existing = set(daily_partitions.get_partition_keys())
    day, days = first.date(), []
    while day <= last.date():
        if day.isoformat() in existing:
            days.append(day.isoformat())
        day += timedelta(days=1)
    return days


@sensor(
    name="ecom_vendor_changes",
    target=AssetSelection.groups(ASSET_GROUP),
    minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Refreshes the daily partitions in which the vendor reports changes.",
)
def ecom_vendor_changes(
    context: SensorEvaluationContext,
    vendor_api: VendorApiResource,
    change_sensor: ChangeSensorSettings,
) -> SensorResult | SkipReason:
    now = datetime.now(UTC)
    cursor = json.loads(context.cursor) if context.cursor else {}
    lookback = timedelta(minutes=change_sensor.lookback_minutes)
    changed_by_day: dict[str, list[str]] = defaultdict(list)
    run_key_parts: dict[str, list[str]] = defaultdict(list)
    new_cursor = dict(cursor)
    for name in CONTRACTS:
        # Without a cursor the sensor watches from now on; backfills cover the past.
        since = parse_timestamp(cursor.get(name, rfc3339(now))) - lookback
        try:
            with vendor_api.probe_session() as session:
                changes = probe_changes(vendor_api.base_url, session, name, since)
        except (VendorAPIError, ValueError) as exc:
            # No run, cursor unchanged: the next tick asks again. The message holds no key.
            return SkipReason(f"Could not ask the vendor for changes to {name}: {exc}")
        if not changes.total or not changes.first_updated_at or not changes.last_updated_at:
            continue
        for day in _days(changes.first_updated_at, changes.last_updated_at):
            changed_by_day[day].append(name)
            # The latest change names the vendor's state: the same on a tick that saw nothing
            # new, whatever the lookback counted.
            run_key_parts[day].append(f"{name}@{rfc3339(changes.last_updated_at)}")
        new_cursor[name] = rfc3339(max(changes.last_updated_at + MILLISECOND, since + lookback))

    runs = [
        RunRequest(
            partition_key=day,
            asset_selection=[asset_key(CONTRACTS[name]) for name in names],
            run_key=f"{day}:{','.join(run_key_parts[day])}",
            tags={"ecom/trigger": "vendor_changes"},
        )
        for day, names in sorted(changed_by_day.items())
    ]
    if not runs:
        return SkipReason("The vendor reports no changes since the last tick.")
    return SensorResult(run_requests=runs, cursor=json.dumps(new_cursor, sort_keys=True))
