"""A known data set for the analysts' tables: the rollup tests and the documented queries
(``docs/analytics.md``) run on it, so their results are the same every time."""

from __future__ import annotations

import math
from datetime import date

import redis

from codes.batches import NEXT_SERIAL_KEY, BatchOrder, revoke
from codes.commands import ScriptCall
from fraud import shipments
from fraud.distributors import Distributor
from fraud.shipments import SerialRange
from ingest.events.scans import ScanEvent
from ingest.sink.mirror import CHANGE_STREAMS
from ingest.store.scripts import BlockingScriptRunner
from ingest.warehouse.client import connect
from tests.sink_support import (
    add_events,
    backlog,
    make_events,
    running_sink,
    sink_settings,
    sync_replicas,
    wait_until,
)

EVENTS = 3000
FIRST_SERIAL = 1_000_000  # make_events numbers its serials from here
CODES_PER_BATCH = 500
SKUS = ("COLA-330", "BIÈRE-500")
REVOKED_BATCH = 5
BLOCK = 100  # serials per shipped range
DISTRIBUTORS = {
    "D-EAST": ("East Trading", (120.0, 30.0)),
    "D-NORTH": ("North Supply", (116.0, 39.0)),
    "D-WEST": ("West Logistics", (104.0, 30.0)),
}
RENAMED = ("D-EAST", "East Trading Ltd")
_DAY_MS = 86_400_000
_BATCHES_ORDERED_MS = 1_768_867_200_000  # 2026-01-20 00:00 UTC, a batch a day after
_SHIPPED_MS = 1_769_385_600_000  # 2026-01-26 00:00 UTC, a range an hour after
_REVOKED_MS = 1_769_904_000_000  # 2026-02-01 00:00 UTC, half-way through the scans


def batch_id(number: int) -> str:
    return f"B{number // CODES_PER_BATCH}"


def shipped_to(number: int) -> str:
    """Where event ``number``'s code went: blocks of ``BLOCK`` serials, every third not shipped."""
    block = number // BLOCK
    return "" if block % 3 == 2 else list(DISTRIBUTORS)[block * 7 % 11 % 3]


def _placed(event: ScanEvent, number: int) -> ScanEvent:
    """The event of a code of its batch (one SKU each) shipped where ``shipped_to`` says; some
    of the shipped ones surface in another territory, or in none."""
    event = event._replace(batch_id=batch_id(number), sku=SKUS[number // CODES_PER_BATCH % 2])
    home = shipped_to(number)
    if not home:
        return event
    surfaced_in = list(DISTRIBUTORS)[number % 5 % 3] if number % 4 else ""
    away = 0.0 if surfaced_in == home else 12.5 + number % 40
    return event._replace(
        distributor_id=home,
        surfaced_in=surfaced_in,
        distance_km=away if not math.isnan(event.lat) else math.nan,
    )


def _territory(west: float, south: float) -> dict[str, object]:
    """A 2° square."""
    square = [[west, south], [west + 2, south], [west + 2, south + 2], [west, south + 2]]
    return {"type": "Polygon", "coordinates": [[*square, square[0]]]}


def _reference_changes() -> list[ScriptCall]:
    """The batches of the events' serials (one revoked), the distributors (one renamed) and the
    shipments, as the API's scripts make them."""
    calls = [
        Distributor.create(name, full_name, _territory(*corner), _SHIPPED_MS).put()
        for name, (full_name, corner) in DISTRIBUTORS.items()
    ]
    for number in range(EVENTS // CODES_PER_BATCH):
        order = BatchOrder.create(
            SKUS[number % 2], "4006381333931", CODES_PER_BATCH, max_quantity=CODES_PER_BATCH
        )
        calls.append(order.reserve(f"B{number}", 1, _BATCHES_ORDERED_MS + number * _DAY_MS))
    calls.append(revoke(f"B{REVOKED_BATCH}", _REVOKED_MS))
    for number in range(0, EVENTS, BLOCK):
        if distributor := shipped_to(number):
            block = SerialRange(FIRST_SERIAL + number, FIRST_SERIAL + number + BLOCK - 1, False)
            when = _SHIPPED_MS + number // BLOCK * 3_600_000
            calls.append(shipments.ship(distributor, f"S{number // BLOCK:02d}", when, [block]))
    name, new_name = RENAMED
    corner = DISTRIBUTORS[name][1]
    calls.append(Distributor.create(name, new_name, _territory(*corner), _SHIPPED_MS + 1).put())
    return calls


def load_analytics_data(streams: redis.Redis, redis_url: str, database: str) -> None:
    """``EVENTS`` scans (``make_events``, of six batches of two SKUs, two thirds shipped to
    ``DISTRIBUTORS``, some surfacing elsewhere) and the reference data's changes
    (``_reference_changes``) moved by the sink in batches of 500, and 600 prize draws of two
    campaigns over three days, a third of them won, inserted in two blocks."""
    streams.set(NEXT_SERIAL_KEY, FIRST_SERIAL)
    scripts = BlockingScriptRunner(streams)
    for call in _reference_changes():
        scripts.run(call)
    events = [_placed(event, n) for n, event in enumerate(make_events(EVENTS))]
    add_events(streams, events)
    with running_sink(sink_settings(redis_url, database, sink_batch_rows=500)):
        wait_until(
            lambda: (
                backlog(streams) == 0
                and not any(int(streams.get(c.unsunk_key) or 0) for c in CHANGE_STREAMS)
            ),
            20,
            "the events and changes to be sunk",
        )
    draws = [
        {
            "date": date(2026, 2, 1 + n // 200),
            "campaign_id": f"C{n % 2}",
            "seq": n,
            "tier": n % 4,
            "won": int(n % 3 == 0),
            "prize_id": "" if n % 3 else f"p{n % 5}",
            "prize_kind": "" if n % 3 else ("cash", "points")[n % 2],
            "prize_value": 0 if n % 3 else 100 + n,
        }
        for n in range(600)
    ]
    client = connect(database)
    for block in (draws[:250], draws[250:]):  # two inserts: two parts summed by the rollup
        client.execute(
            f"INSERT INTO draws ({', '.join(draws[0])}) VALUES",
            block,
            settings={"insert_distributed_sync": 1},  # on a cluster: stored on its shards now
        )
    client.disconnect()
    sync_replicas(database)
