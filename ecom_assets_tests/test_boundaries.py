"""Day boundaries, time zones and text: every record lands once, in its UTC day, unchanged."""

import time
from pathlib import Path

from ecom_assets.sandbox.server import SandboxServer
from ecom_assets_tests.support import Sync, day, partition_key, rows


def test_records_on_midnight_boundaries_land_in_exactly_one_partition(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    last_ms_of_day_0 = "2026-01-01T23:59:59.999Z"
    first_ms_of_day_1 = "2026-01-02T00:00:00.000Z"
    on_boundary = {
        r["id"]: r["updated_at"]
        for r in sandbox.dataset.all("order_payments")
        if r["updated_at"] in (last_ms_of_day_0, first_ms_of_day_1)
    }
    assert set(on_boundary.values()) == {last_ms_of_day_0, first_ms_of_day_1}

    loaded_by_day = {}
    for offset in (0, 1):
        result = sync(partition_key(offset), resources=("order_payments",))
        assert result.success
        [materialization] = result.asset_materializations_for_node("ecom_vendor_sync")
        loaded_by_day[offset] = materialization.metadata["records_loaded"].value

    ids = [r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")]
    assert len(ids) == len(set(ids)) == loaded_by_day[0] + loaded_by_day[1]
    assert set(on_boundary) <= set(ids)
    day_0 = set(r["id"] for r in sandbox.dataset.records("order_payments", day(0), day(1)))
    for record_id, updated_at in on_boundary.items():
        assert (record_id in day_0) == (updated_at == last_ms_of_day_0)


def test_partitions_stay_utc_days_whatever_the_local_time_zone(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path, monkeypatch
) -> None:
    # 2026-03-29 is a daylight-saving change in Europe; the process runs there.
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        result = sync(partition_key(2), resources=("order_payments",))
    finally:
        monkeypatch.undo()
        time.tzset()

    assert result.success
    expected = {r["id"] for r in sandbox.dataset.records("order_payments", day(2), day(3))}
    assert {r[0] for r in rows(duckdb_path, "select id from ecom.order_payments")} == expected


def test_unicode_emoji_and_escapes_round_trip_byte_exact(
    sync: Sync, sandbox: SandboxServer, duckdb_path: Path
) -> None:
    long_name = "Ünïcødé 🍵 " * 400  # about 4,400 characters
    records = sandbox.dataset.records("products", day(1), day(2))
    sandbox.corrupt("products", records[0]["id"], name=long_name)

    assert sync(partition_key(1), resources=("products",)).success

    stored = dict(rows(duckdb_path, "select id, name from ecom.products"))
    assert stored[records[0]["id"]].encode() == long_name.encode()
    for record in records[1:]:
        assert stored[record["id"]].encode() == record["name"].encode()
    descriptions = dict(rows(duckdb_path, "select id, description from ecom.products"))
    assert {descriptions[r["id"]] for r in records} == {r["description"] for r in records}
