"""A known data set for the analysts' tables: the rollup tests and the documented queries
(``docs/analytics.md``) run on it, so their results are the same every time."""

from __future__ import annotations

import math
from datetime import date

import redis

from ingest.clickhouse_client import connect
from ingest.scan_events import ScanEvent
from tests.sink_support import (
    add_events,
    backlog,
    make_events,
    running_sink,
    sink_settings,
    wait_until,
)

EVENTS = 3000
DISTRIBUTORS = ("D-EAST", "D-NORTH", "D-WEST")


def _shipped(event: ScanEvent, number: int) -> ScanEvent:
    """Two thirds of the codes shipped; of those, some surfacing in another territory or none."""
    if number % 3 == 0:
        return event
    shipped_to = DISTRIBUTORS[number % 7 % 3]
    surfaced_in = DISTRIBUTORS[number % 5 % 3] if number % 4 else ""
    away = 0.0 if surfaced_in == shipped_to else 12.5 + number % 40
    return event._replace(
        distributor_id=shipped_to,
        surfaced_in=surfaced_in,
        distance_km=away if not math.isnan(event.lat) else math.nan,
    )


def load_analytics_data(streams: redis.Redis, redis_url: str, database: str) -> None:
    """``EVENTS`` scans (``make_events``, two thirds shipped to ``DISTRIBUTORS``, some surfacing
    elsewhere) moved by the sink in batches of 500, and 600 prize draws of two campaigns over
    three days, a third of them won, inserted in two blocks."""
    events = [_shipped(event, n) for n, event in enumerate(make_events(EVENTS))]
    add_events(streams, events)
    with running_sink(sink_settings(redis_url, database, sink_batch_rows=500)):
        wait_until(lambda: backlog(streams) == 0, 20, "the events to be sunk")
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
        client.execute(f"INSERT INTO draws ({', '.join(draws[0])}) VALUES", block)
    client.disconnect()
