"""The sink's rows/s from Redis streams into ClickHouse, against a raw insert of the same columns.

Starts its own Redis and ClickHouse on free loopback ports, appends ``--events`` scan events to
the streams, then measures:

1. ``rows_per_s``: the sink (read, decode, insert, acknowledge and trim, in ``--batch-rows``
   inserts) from its start until every event is acknowledged. The sink is stopped as soon as it
   has read the last event, so its last batch, which is not full, is written at once, like a
   full one, instead of after the flush age: a sink that keeps up with a steady stream writes
   its batches as they fill, and an idle wait that only a backlog's end causes would make up a
   large share of a run of a few batches. Every cost of the sink's work stays measured;
2. ``raw_rows_per_s``: ``client.execute`` alone inserting the same rows, already decoded into
   column lists (text as ``str``), in inserts of the same size: what a program holding the rows
   pays this driver and server to store them;
3. ``raw_utf8_rows_per_s``: the same with the text as UTF-8 ``bytes``, as the sink inserts it
   (the driver writes bytes as they are instead of encoding every ``str``): the ceiling of this
   driver and server, which the sink's insert alone reaches;
4. ``decode_rows_per_s``: ``decode_columns`` alone on the same entries, for where the rest goes.

Prints one JSON document with ``ratio`` = rows_per_s / raw_rows_per_s (issue 6's measure) and
``ratio_to_utf8`` = rows_per_s / raw_utf8_rows_per_s (what the sink's reads, decoding and
acknowledgements cost on top of its inserts).
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import redis

from fraud.verdicts import Verdict
from ingest.config import Settings
from ingest.events.partitions import Partitions
from ingest.events.scans import EVENT_FIELD, STATE_FIELD, ScanEvent, decode_columns
from ingest.ops import local_services
from ingest.ops.gc_tuning import collect_less_often
from ingest.sink.consumer import run_sink
from ingest.sink.streams import STATS_KEY
from ingest.sink.table import COLUMNS, column_values
from ingest.warehouse.client import connect
from ingest.warehouse.schema import apply_migrations

START_MS = 1_767_225_600_000  # 2026-01-01

PARTITIONS = Partitions()
"""The default partitions, which the sink under test is run with."""


def _events(count: int) -> Iterator[ScanEvent]:
    for number in range(count):
        flagged = number % 20 == 0
        yield ScanEvent(
            time_ms=START_MS + number * 13,
            serial=5_000_000 + number * 7,
            key_id=1,
            verdict=Verdict.SUSPICIOUS if flagged else Verdict.GENUINE,
            lat=52.52 + (number % 1000) / 1e4,
            lon=13.40 - (number % 1000) / 1e4,
            accuracy_m=12.0,
            client_time_ms=START_MS + number * 13 - 40,
            latency_us=180 + number % 300,
            scan_id=f"S{number:015d}",
            code=f"{number:020d}",
            batch_id=f"B{number % 50:07d}",
            sku=f"BEER-{number % 12:02d}-500ML",
            gtin="04006381333931",
            member_id=f"member-{number % 40_000}" if number % 3 else "",
            device_id=f"device-{number % 90_000:08d}",
            ip=f"10.{number % 200}.{number % 250}.{number % 240}",
            flags=("geo_jump",) if flagged else (),
            flag_details='[{"km": 812.4}]' if flagged else "[]",
        )


PER_ENTRY = 4
"""Events per stream entry: what a micro-batch of ~64 scans puts in each of 16 partitions."""


def _grouped(count: int) -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """Stream entries of PER_ENTRY events of one partition each, as the scan script writes."""
    state = struct.pack("<BIH", 1, 1, 1)
    by_partition: dict[int, list[bytes]] = {}
    for event in _events(count):
        group = by_partition.setdefault(event.serial % PARTITIONS.scans, [])
        group.append(event.encode())
        if len(group) == PER_ENTRY:
            yield (
                event.serial % PARTITIONS.scans,
                {EVENT_FIELD: b"".join(group), STATE_FIELD: state * 4},
            )
            group.clear()
    for partition, group in by_partition.items():
        if group:
            fields = {EVENT_FIELD: b"".join(group), STATE_FIELD: state * len(group)}
            yield partition, fields


def append_events(client: redis.Redis, count: int) -> None:
    """``count`` events appended to the partitions' streams, their unsunk counts raised, as the
    scan script leaves them."""
    pipe = client.pipeline(transaction=False)
    for partition, fields in _grouped(count):
        pipe.xadd(PARTITIONS.stream_key(partition), fields)  # type: ignore[arg-type]
        pipe.incrby(PARTITIONS.unsunk_key(partition), len(fields[STATE_FIELD]) // 7)
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()


def last_ids(client: redis.Redis) -> dict[str, bytes]:
    """The id of each stream's last entry."""
    pipe = client.pipeline(transaction=False)
    for key in PARTITIONS.stream_keys:
        pipe.xinfo_stream(key)
    return {
        key: info["last-generated-id"]
        for key, info in zip(PARTITIONS.stream_keys, pipe.execute(), strict=True)
    }


def delivered(client: redis.Redis, key: str, last_id: bytes) -> bool:
    """Whether the sink has read stream ``key`` up to its entry ``last_id``."""
    groups = client.xinfo_groups(key)
    return any(group["last-delivered-id"] == last_id for group in groups)


def _entries(count: int) -> list[tuple[int, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """The events as the sink reads them: entries by partition, with made-up stream ids."""
    by_partition: dict[int, list[tuple[bytes, dict[bytes, bytes]]]] = {}
    for number, (partition, fields) in enumerate(_grouped(count)):
        by_partition.setdefault(partition, []).append((b"%d-0" % (START_MS + number), fields))
    return sorted(by_partition.items())


def measure_sink(redis_url: str, clickhouse_url: str, events: int, batch_rows: int) -> float:
    client = redis.Redis.from_url(redis_url)
    append_events(client, events)
    last = last_ids(client)
    settings = Settings(
        redis_url=redis_url, clickhouse_url=clickhouse_url, sink_batch_rows=batch_rows
    )
    stop = threading.Event()
    sink = threading.Thread(target=run_sink, args=(settings, stop))
    started = time.perf_counter()
    sink.start()
    for key, last_id in last.items():  # one stream at a time: a light poll
        while not delivered(client, key, last_id):
            time.sleep(0.005)
    stop.set()  # the sink writes the batch in hand, then ends
    while int(client.hget(STATS_KEY, "rows_total") or 0) < events:
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    sink.join()
    client.close()
    return events / seconds


def measure_raw(
    clickhouse_url: str, events: int, batch_rows: int, *, utf8: bool = False
) -> tuple[float, float]:
    """(insert rows/s, decode rows/s) of the same rows in inserts of ``batch_rows``, their text
    as ``str`` or, with ``utf8``, as UTF-8 ``bytes``."""
    entries = _entries(events)
    started = time.perf_counter()
    parts = [decode_columns(partition, rows, utf8=utf8) for partition, rows in entries]
    decode_s = time.perf_counter() - started
    rows = [
        [value for part in parts for value in column_values(name, part[name])] for name in COLUMNS
    ]
    client = connect(clickhouse_url)
    client.execute("TRUNCATE TABLE scans")
    query = f"INSERT INTO scans ({', '.join(COLUMNS)}) VALUES"
    started = time.perf_counter()
    for first in range(0, events, batch_rows):
        block = [column[first : first + batch_rows] for column in rows]
        client.execute(query, block, columnar=True, settings={"strings_as_bytes": utf8})
    insert_s = time.perf_counter() - started
    client.disconnect()
    return events / insert_s, events / decode_s


def run(events: int, batch_rows: int) -> dict[str, Any]:
    collect_less_often()  # as `scanward sink` does
    with (
        tempfile.TemporaryDirectory(prefix="scanward-sink-bench-") as folder,
        local_services.running_services(Path(folder)) as services,
    ):
        client = connect(services.clickhouse_url)
        apply_migrations(client)
        client.disconnect()
        rows_per_s = measure_sink(services.redis_url, services.clickhouse_url, events, batch_rows)
        raw_rows_per_s, decode_rows_per_s = measure_raw(services.clickhouse_url, events, batch_rows)
        raw_utf8_rows_per_s, _ = measure_raw(services.clickhouse_url, events, batch_rows, utf8=True)
    return {
        "events": events,
        "batch_rows": batch_rows,
        "rows_per_s": round(rows_per_s),
        "raw_rows_per_s": round(raw_rows_per_s),
        "ratio": round(rows_per_s / raw_rows_per_s, 3),
        "raw_utf8_rows_per_s": round(raw_utf8_rows_per_s),
        "ratio_to_utf8": round(rows_per_s / raw_utf8_rows_per_s, 3),
        "decode_rows_per_s": round(decode_rows_per_s),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=Settings().sink_batch_rows)
    args = parser.parse_args(argv)
    result = run(args.events, args.batch_rows)
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
