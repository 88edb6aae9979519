"""Scan events written straight into the streams, fresh ClickHouse databases, sinks run in
threads (or made to crash), and waiting."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from clickhouse_driver.errors import NetworkError

from fraud.verdicts import Verdict
from ingest.config import Settings
from ingest.events.partitions import Partitions
from ingest.events.scans import EVENT_FIELD, STATE_FIELD, Columns, ScanEvent
from ingest.ops import local_services
from ingest.ops.local_services import ServerProcess
from ingest.sink.consumer import Sink, run_sink
from ingest.sink.family import EventFamily, scan_family
from ingest.sink.lease import StreamLeases, lease_key
from ingest.sink.shards import ShardedTable, ShardMap
from ingest.sink.streams import InsertStats, SinkStreams
from ingest.sink.table import SinkTable
from ingest.store.scripts import SyncRedis
from ingest.warehouse.client import connect
from ingest.warehouse.schema import apply_migrations
from ingest.warehouse.topology import Topology

PARTITIONS = Partitions()
"""The default partitions, which the sinks under test run with."""
SCANS = scan_family(PARTITIONS)
DAY_MS = 86_400_000
# 2026-01-31 12:00 UTC: events spread over two days and two months (two table partitions).
START_MS = 1_769_860_800_000


def make_events(count: int, first: int = 0) -> list[ScanEvent]:
    """Events numbered ``first..first+count-1``, with every kind of value the table stores."""
    events = []
    for number in range(first, first + count):
        located = number % 3 != 0
        events.append(
            ScanEvent(
                time_ms=START_MS + number * 7_919_993 % DAY_MS,
                serial=1_000_000 + number,
                key_id=number % 4,
                verdict=Verdict(number % 4 + 1),
                lat=48.1 + number / 1e4 if located else math.nan,
                lon=11.5 - number / 1e4 if located else math.nan,
                accuracy_m=float(number % 50) if located else math.nan,
                client_time_ms=START_MS - 5 if number % 2 else 0,
                latency_us=100 + number,
                scan_id=f"scan-{number:08d}",
                code=f"CODE{number:016d}",
                batch_id=f"B{number % 7}",
                sku="BIÈRE-500" if number % 2 else "COLA-330",
                gtin="04006381333931",
                member_id=f"m{number % 11}" if number % 5 else "",
                device_id=f"device-{number % 13}",
                ip=f"10.0.{number % 256}.{number % 200}",
                flags=("velocity", "geo") if number % 6 == 0 else (),
                flag_details='[{"km": 12.5}]' if number % 6 == 0 else "[]",
            )
        )
    return events


def state_of(event: ScanEvent) -> tuple[int, int, int]:
    """The (first_scan, scan_count, distinct_devices) the tests give ``event``."""
    return int(event.serial % 2 == 0), event.serial % 9 + 1, event.serial % 3 + 1


def add_events(client: SyncRedis, events: list[ScanEvent], per_entry: int = 1) -> None:
    """Appends the events as the scan script does, ``per_entry`` events of a partition in each
    stream entry."""
    by_partition: dict[int, list[ScanEvent]] = {}
    for event in events:
        by_partition.setdefault(event.serial % PARTITIONS.scans, []).append(event)
    pipe = client.pipeline(transaction=False)
    for partition, group in by_partition.items():
        for start in range(0, len(group), per_entry):
            entry = group[start : start + per_entry]
            pipe.xadd(PARTITIONS.stream_key(partition), entry_fields(entry))  # type: ignore[arg-type]
            pipe.incrby(PARTITIONS.unsunk_key(partition), len(entry))
    pipe.execute()


def entry_fields(events: Sequence[ScanEvent]) -> dict[bytes, bytes]:
    """The fields of a stream entry holding ``events``, as the scan script writes them."""
    return {
        EVENT_FIELD: b"".join(event.encode() for event in events),
        STATE_FIELD: b"".join(struct.pack("<BIH", *state_of(event)) for event in events),
    }


def backlog(client: SyncRedis) -> int:
    """Events not yet acknowledged by the sink, by the partitions' unsunk counts."""
    return sum(int(client.get(key) or 0) for key in PARTITIONS.unsunk_keys)


def lease_shares(client: SyncRedis) -> list[int]:
    """How many scan partitions each sink holds, fewest first; [] while some have none."""
    holders = [client.get(lease_key(key)) for key in PARTITIONS.stream_keys]
    return sorted(Counter(holders).values()) if None not in holders else []


def stored(url: str) -> tuple[int, int]:
    """Rows in ``scans`` and distinct events (stream entry and place in it) among them."""
    client = connect(url)
    try:
        [(rows, distinct)] = client.execute(
            "SELECT count(), uniqExact(stream_partition, stream_ms, stream_seq, stream_index)"
            " FROM scans"
        )
    finally:
        client.disconnect()
    return int(rows), int(distinct)


def query(url: str, sql: str, query_id: str | None = None) -> list[Any]:
    client = connect(url)
    try:
        return list(client.execute(sql, query_id=query_id))
    finally:
        client.disconnect()


@contextlib.contextmanager
def fresh_database(server_url: str, *, migrated: bool = True) -> Iterator[str]:
    """The URL of a new database (with the migrations applied), dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = connect(server_url)
    admin.execute(f"CREATE DATABASE {name}")
    url = f"{server_url.rsplit('/', 1)[0]}/{name}"
    if migrated:
        client = connect(url)
        apply_migrations(client)
        client.disconnect()
    try:
        yield url
    finally:
        admin.execute(f"DROP DATABASE {name}")
        admin.disconnect()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def restart_clickhouse(server: ServerProcess, data_dir: Path) -> ServerProcess:
    """The stopped server again, on its data folder and ports (start_clickhouse picks new ones);
    the caller owns it at once and waits for it to answer."""
    folder = data_dir / "clickhouse"
    binary = local_services.find_binary("clickhouse-server", "clickhouse-server")
    argv = [binary, f"--config-file={folder / 'config.xml'}"]
    process, log = local_services.spawn("clickhouse", argv, folder)
    return ServerProcess(server.name, server.url, process, log)


def sink_settings(redis_url: str, clickhouse_url: str, **changes: Any) -> Settings:
    """Small batches, flushed after 50 ms: quick tests."""
    return Settings(
        redis_url=redis_url, clickhouse_url=clickhouse_url, sink_batch_rows=500, sink_flush_ms=50
    ).with_overrides(**changes)


@contextlib.contextmanager
def in_thread(run: Callable[[], None], stop: threading.Event) -> Iterator[None]:
    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the sink did not stop"


def running_sink(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """``run_sink`` (every family) in a thread, stopped on leaving."""
    stop = threading.Event()
    return in_thread(lambda: run_sink(settings, stop), stop)


@contextlib.contextmanager
def sink_with(
    settings: Settings,
    family: EventFamily,
    streams: Callable[[redis.Redis, EventFamily, StreamLeases], SinkStreams] = SinkStreams,
    table: Callable[[Any], SinkTable] | None = None,
) -> Iterator[tuple[Sink, threading.Event]]:
    """The sink loop of ``family``, whose Redis or ClickHouse side a test may replace, run by
    the caller (with leases of its own, given back on leaving)."""
    assert settings.redis_url is not None
    assert settings.clickhouse_url is not None
    redis_client = redis.Redis.from_url(settings.redis_url)
    client = connect(settings.clickhouse_url)
    stop, done = threading.Event(), threading.Event()
    leases = StreamLeases(redis_client)
    heartbeat = leases.keep(stop, done)
    try:
        one_server = ShardedTable(
            {1: (table or family.table)(client)},
            ShardMap.of(1, settings.partitions),
            family.placement,
        )
        yield Sink(streams(redis_client, family, leases), one_server, settings, stop), stop
    finally:
        done.set()
        heartbeat.join()
        leases.leave()  # as if its process were gone: the next sink takes the streams at once
        client.disconnect()
        redis_client.close()


class HalfThenCut(SinkTable):
    """Mixed in before a table: its first insert stores half its rows, then the connection
    breaks."""

    cut = False

    def insert(self, columns: Columns, streams: Collection[str]) -> None:
        if self.cut:
            return super().insert(columns, streams)
        self.cut = True
        half = {name: column[: len(column) // 2] for name, column in columns.items()}
        super().insert(half, streams)
        raise NetworkError("connection lost during the insert")


class Crash(BaseException):
    """The process dies here: nothing of the sink runs after it."""


class WatchedAcks(SinkStreams):
    """``SinkStreams`` calling ``before_ack`` and ``after_ack`` with the ids of each
    acknowledgement: test doubles override them to record or to fail there."""

    def acknowledge(
        self,
        ids: Mapping[str, Sequence[bytes]],
        events: Mapping[str, Sequence[int]],
        stats: InsertStats | None,
    ) -> None:
        self.before_ack(ids)
        super().acknowledge(ids, events, stats)
        self.after_ack(ids)

    def before_ack(self, ids: Mapping[str, Sequence[bytes]]) -> None:
        pass

    def after_ack(self, ids: Mapping[str, Sequence[bytes]]) -> None:
        pass


class CrashBeforeAck(WatchedAcks):
    def before_ack(self, ids: Mapping[str, Sequence[bytes]]) -> None:
        raise Crash


@contextlib.contextmanager
def sinking(settings: Settings, clickhouse_url: str) -> Iterator[Settings]:
    """``settings`` with a fresh, migrated ClickHouse database and a sink running on it until
    the block ends."""
    with fresh_database(clickhouse_url) as database:
        sunk = dataclasses.replace(settings, clickhouse_url=database, sink_flush_ms=100)
        stop = threading.Event()
        sink = threading.Thread(target=run_sink, args=(sunk, stop))
        sink.start()
        try:
            yield sunk
        finally:
            stop.set()
            sink.join(30)


def sync_replicas(url: str) -> None:
    """Until every replica of a cluster holds every part its peers took (a Distributed query
    reads one replica of each shard, perhaps one still fetching); nothing on one server."""
    for _, _, server in Topology.parse(url).servers():
        client = connect(server)
        try:
            replicated = client.execute(
                "SELECT name FROM system.tables"
                " WHERE database = currentDatabase() AND engine LIKE 'Replicated%'"
            )
            for (table,) in replicated:
                client.execute(f"SYSTEM SYNC REPLICA {table}")
        finally:
            client.disconnect()
