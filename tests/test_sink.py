"""The sink against real Redis and ClickHouse: the values it stores, and every event exactly once
through crashes, a kill -9 at any moment, lost Redis replies and a ClickHouse outage."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import redis
from clickhouse_driver.errors import NetworkError

from ingest.config import Settings
from ingest.events.scans import (
    CONSUMER_GROUP,
    EVENT_FIELD,
    STATE_FIELD,
    Columns,
    ScanEvent,
)
from ingest.ops import local_services
from ingest.ops.local_services import ServerProcess
from ingest.sink import insert, lease
from ingest.sink.consumer import run_sink
from ingest.sink.family import Entries, Entry
from ingest.sink.insert import Insert
from ingest.sink.lease import LeaseLost, StreamLeases, lease_key
from ingest.sink.streams import NEW, STATS_KEY, SinkStreams, dead_letter_key
from ingest.sink.table import QUERY_ID_PREFIX, ScanTable
from ingest.warehouse.client import connect
from ingest.warehouse.schema import apply_migrations
from tests.sink_support import (
    PARTITIONS,
    SCANS,
    Crash,
    CrashBeforeAck,
    HalfThenCut,
    WatchedAcks,
    add_events,
    backlog,
    entry_fields,
    in_thread,
    lease_shares,
    make_events,
    query,
    restart_clickhouse,
    running_sink,
    sink_settings,
    sink_with,
    state_of,
    stored,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]


def _pending(client: redis.Redis) -> int:
    """Entries delivered to the sink and not acknowledged (0 before the sink made its groups)."""
    try:
        return sum(
            int(client.xpending(key, CONSUMER_GROUP)["pending"]) for key in PARTITIONS.stream_keys
        )
    except redis.ResponseError:
        return 0


def _more_rows_than(url: str, rows: int) -> Callable[[], bool]:
    return lambda: stored(url)[0] > rows


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _caught_up(client: redis.Redis, url: str, total: int) -> Callable[[], bool]:
    return lambda: backlog(client) == 0 and stored(url)[0] == total


# --- values -----------------------------------------------------------------------------------


_SELECTED = (
    "scan_id, toString(date), toUnixTimestamp(time), time_ms, client_time_ms, code, serial,"
    " key_id, batch_id, sku, gtin, verdict, genuine, first_scan, scan_count, distinct_devices,"
    " flag_list, flags, flag_details, lat, lon, accuracy_m, has_location, member_id, device_id,"
    " ip, latency_us, stream_partition"
)


def _expected(event: ScanEvent) -> tuple[Any, ...]:
    first_scan, scan_count, distinct_devices = state_of(event)
    return (
        event.scan_id,
        datetime.fromtimestamp(event.time_ms / 1000, UTC).date().isoformat(),
        event.time_ms // 1000,
        event.time_ms,
        event.client_time_ms,
        event.code,
        event.serial,
        event.key_id,
        event.batch_id,
        event.sku,
        event.gtin,
        event.verdict.label,
        int(event.verdict.label == "genuine"),
        first_scan,
        scan_count,
        distinct_devices,
        ",".join(event.flags),
        list(event.flags),
        event.flag_details,
        event.lat,
        event.lon,
        float(np.float32(event.accuracy_m)),
        int(not math.isnan(event.lat)),
        event.member_id,
        event.device_id,
        event.ip,
        event.latency_us,
        event.serial % PARTITIONS.scans,
    )


def _comparable(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row)


def test_every_event_becomes_one_row_with_its_values(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    events = make_events(1200)
    add_events(streams, events[:700])
    with running_sink(sink_settings(redis_url, database)):
        wait_until(_caught_up(streams, database, 700), 10, "the first events")
        add_events(streams, events[700:], per_entry=7)  # as the scan script groups them
        wait_until(_caught_up(streams, database, 1200), 10, "the later events")

    rows = query(database, f"SELECT {_SELECTED} FROM scans ORDER BY scan_id")
    assert [_comparable(row) for row in rows] == [_comparable(_expected(e)) for e in events]
    assert query(database, "SELECT uniqExact(toYYYYMM(date)) FROM scans") == [(2,)]
    assert query(database, "SELECT max(stream_index) FROM scans") == [(6,)]
    assert stored(database) == (1200, 1200)
    assert _pending(streams) == 0
    stats = {_text(k): int(v) for k, v in streams.hgetall(STATS_KEY).items()}
    assert stats["rows_total"] == 1200
    assert 2 <= stats["inserts_total"] <= 1200 / 100
    assert stats["lag_ms"] >= 0
    assert stats["rows_per_s"] > 0
    assert abs(stats["last_insert_ms"] - time.time() * 1000) < 60_000


# --- exactly once -----------------------------------------------------------------------------


def test_a_crash_between_insert_and_ack_inserts_nothing_twice(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    add_events(streams, make_events(400))
    # a flush interval long enough that all 400 go in the first insert, even on a busy machine
    settings = sink_settings(redis_url, database, sink_flush_ms=2_000)
    with sink_with(settings, SCANS, streams=CrashBeforeAck) as (sink, _), pytest.raises(Crash):
        sink.run()
    assert stored(database) == (400, 400)
    assert _pending(streams) == 400

    with running_sink(settings):
        wait_until(lambda: backlog(streams) == 0, 10, "the pending entries to be acknowledged")
    assert stored(database) == (400, 400)
    assert streams.hget(STATS_KEY, "rows_total") is None, "the restarted sink inserted rows"


def test_a_write_waits_for_an_insert_still_running_on_the_server(
    streams: redis.Redis, redis_url: str, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ingest.sink.consumer")
    add_events(streams, make_events(100))
    settings = sink_settings(redis_url, database)
    with sink_with(settings, SCANS, streams=CrashBeforeAck) as (sink, _), pytest.raises(Crash):
        sink.run()
    database_name = database.rsplit("/", 1)[1]
    earlier = threading.Thread(
        target=query,
        args=(database, "SELECT sleep(1)"),
        kwargs={"query_id": f"{QUERY_ID_PREFIX}{database_name}:scans:earlier"},
    )
    earlier.start()
    running = "SELECT count() FROM system.processes WHERE query_id LIKE '%:earlier'"
    wait_until(lambda: query(database, running) == [(1,)], 5, "the earlier insert to run")
    visible = time.monotonic()
    with running_sink(settings):
        wait_until(lambda: backlog(streams) == 0, 10, "the pending entries to be acknowledged")
    assert time.monotonic() - visible > 0.5, "the sink went on while an insert was running"
    earlier.join()
    assert "waiting for an earlier insert to finish" in caplog.messages
    assert stored(database) == (100, 100)


class _HalfThenCut(HalfThenCut, ScanTable):
    pass


def test_an_insert_cut_half_way_is_completed_not_repeated(
    streams: redis.Redis, redis_url: str, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    add_events(streams, make_events(410), per_entry=7)  # the cut falls inside an entry
    settings = sink_settings(redis_url, database)
    with sink_with(settings, SCANS, table=_HalfThenCut) as (sink, stop), in_thread(sink.run, stop):
        wait_until(lambda: backlog(streams) == 0, 10, "the events to be acknowledged")
    assert stored(database) == (410, 410)
    assert "clickhouse insert failed; retrying" in caplog.messages


class _LostReply(SinkStreams):
    """Redis delivers the first new entries, but the reply never reaches the sink."""

    lost = False

    def read(self, cursors: Mapping[str, bytes], count: int) -> dict[str, Entries]:
        entries = super().read(cursors, count)
        if not self.lost and any(entries.values()):
            self.lost = True
            raise redis.ConnectionError("connection lost after the read")
        return entries


def test_entries_delivered_without_a_reply_are_recovered_not_trimmed(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    add_events(streams, make_events(300))
    settings = sink_settings(redis_url, database)
    with sink_with(settings, SCANS, streams=_LostReply) as (sink, stop), in_thread(sink.run, stop):
        wait_until(_caught_up(streams, database, 300), 10, "the delivered entries")
        add_events(streams, make_events(200, 300))
        wait_until(_caught_up(streams, database, 500), 10, "the later entries")
    assert stored(database) == (500, 500)


# --- batches and the writer thread -----------------------------------------------------------


def _entries(events: int, per_entry: int, first_id: int = 1) -> list[Entry]:
    """In-memory entries of ``per_entry`` events each, numbered from ``first_id``."""
    made = make_events(events)
    return [
        (b"%d-0" % (first_id + n), entry_fields(made[at : at + per_entry]))
        for n, at in enumerate(range(0, events, per_entry))
    ]


def test_a_batch_takes_entries_up_to_its_rows_and_returns_the_rest() -> None:
    entries = _entries(20, per_entry=4)
    batch = Insert(SCANS)
    rest = batch.add(PARTITIONS.stream_keys[0], entries, rows=10)
    assert (batch.size, batch.rows, list(rest)) == (3, 12, entries[3:])  # the third fills it
    assert list(batch.add(PARTITIONS.stream_keys[0], rest, rows=10)) == entries[3:]
    assert batch.ids == {PARTITIONS.stream_keys[0]: [entry_id for entry_id, _ in entries[:3]]}


def test_a_batch_decoded_as_it_fills_holds_every_row_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(insert, "DECODE_ROWS", 10)  # decoded every few adds
    poison = (b"99-0", {EVENT_FIELD: b"\x05\x00\x00\x00short", STATE_FIELD: b"\x01" * 7})
    first, second = _entries(24, per_entry=3), _entries(30, per_entry=2, first_id=100)
    batch = Insert(SCANS)
    for at in range(0, 12, 3):
        batch.add(PARTITIONS.stream_keys[0], first[at // 3 * 2 : at // 3 * 2 + 2])
        batch.add(PARTITIONS.stream_keys[1], [*second[at : at + 3], *([poison] if at == 6 else [])])
    batch.add(PARTITIONS.stream_keys[1], second[12:])
    columns = batch.columns()
    expected = sorted(e.scan_id.encode() for e in [*make_events(24), *make_events(30)])
    assert sorted(columns["scan_id"].tolist()) == expected
    assert batch.rows == len(expected)
    assert batch.undecodable == [(PARTITIONS.stream_keys[1], poison)]


def test_a_crash_at_the_ack_writes_nothing_of_the_batch_read_meanwhile(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    add_events(streams, make_events(1000))
    settings = sink_settings(redis_url, database, sink_batch_rows=200, sink_flush_ms=2_000)
    with sink_with(settings, SCANS, streams=CrashBeforeAck) as (sink, _), pytest.raises(Crash):
        sink.run()
    assert stored(database) == (200, 200)  # the first batch only
    assert _pending(streams) >= 200

    with running_sink(settings):
        wait_until(_caught_up(streams, database, 1000), 10, "the events")
    assert stored(database) == (1000, 1000)


def _stored_ids(columns: Columns) -> set[tuple[int, int, int]]:
    keys = ("stream_partition", "stream_ms", "stream_seq")
    return set(zip(*(columns[key].tolist() for key in keys), strict=True))


def _acked_ids(ids: Mapping[str, Sequence[bytes]]) -> set[tuple[int, int, int]]:
    acked = set()
    for key, entry_ids in ids.items():
        for entry_id in entry_ids:
            ms, _, seq = entry_id.partition(b"-")
            acked.add((PARTITIONS.stream_keys.index(key), int(ms), int(seq)))
    return acked


def test_each_batch_is_acknowledged_after_its_insert_and_in_stream_order(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    steps: list[tuple[str, set[tuple[int, int, int]]]] = []

    class Table(ScanTable):
        def insert(self, columns: Columns, streams: Collection[str]) -> None:
            super().insert(columns, streams)
            steps.append(("insert", _stored_ids(columns)))

    class Streams(WatchedAcks):
        def before_ack(self, ids: Mapping[str, Sequence[bytes]]) -> None:
            steps.append(("ack", _acked_ids(ids)))

    add_events(streams, make_events(700))
    settings = sink_settings(redis_url, database, sink_batch_rows=100, sink_flush_ms=2_000)
    with (
        sink_with(settings, SCANS, streams=Streams, table=Table) as (sink, stop),
        in_thread(sink.run, stop),
    ):
        wait_until(_caught_up(streams, database, 700), 10, "the events")
    assert [step for step, _ in steps] == ["insert", "ack"] * 7
    inserts, acks = steps[::2], steps[1::2]
    assert [rows for _, rows in inserts] == [ids for _, ids in acks]
    for earlier, later in itertools.pairwise(ids for _, ids in acks):
        for partition in range(PARTITIONS.scans):
            assert max(i for i in earlier if i[0] == partition) < min(
                i for i in later if i[0] == partition
            )


def test_a_stop_during_an_insert_writes_that_batch_and_the_one_in_hand(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    class StopWhileInserting(ScanTable):
        """Its first insert stops the sink once the sink has read into the next batch."""

        def insert(self, columns: Columns, keys: Collection[str]) -> None:
            super().insert(columns, keys)
            if not stop.is_set():
                wait_until(lambda: _pending(streams) >= 150, 10, "the next batch to be read")
                stop.set()

    add_events(streams, make_events(250))
    settings = sink_settings(redis_url, database, sink_batch_rows=100, sink_flush_ms=600_000)
    with sink_with(settings, SCANS, table=StopWhileInserting) as (sink, stop):
        sink.run()
    read = 250 - backlog(streams)
    assert read >= 150
    assert stored(database) == (read, read)
    assert _pending(streams) == 0


class _LostAckReply(WatchedAcks):
    """The first acknowledgement is done in Redis, but its reply never reaches the sink."""

    lost = False

    def after_ack(self, ids: Mapping[str, Sequence[bytes]]) -> None:
        if not self.lost:
            self.lost = True
            raise redis.ConnectionError("connection lost after the acknowledgement")


def test_a_writer_that_loses_redis_has_the_sink_recover(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    add_events(streams, make_events(600))
    settings = sink_settings(redis_url, database, sink_batch_rows=100)
    with (
        sink_with(settings, SCANS, streams=_LostAckReply) as (sink, stop),
        in_thread(sink.run, stop),
    ):
        wait_until(_caught_up(streams, database, 600), 10, "the events")
    assert stored(database) == (600, 600)
    assert _pending(streams) == 0


# --- the sink as a process --------------------------------------------------------------------


@contextlib.contextmanager
def _sink_process(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCANWARD_")}
    assert settings.redis_url is not None
    assert settings.clickhouse_url is not None
    environment |= {
        "SCANWARD_DATA_DIR": str(log.parent),
        "SCANWARD_REDIS_URL": settings.redis_url,
        "SCANWARD_CLICKHOUSE_URL": settings.clickhouse_url,
        "SCANWARD_SINK_BATCH_ROWS": str(settings.sink_batch_rows),
        "SCANWARD_SINK_FLUSH_MS": str(settings.sink_flush_ms),
    }
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "sink"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_sigterm_writes_the_batch_in_hand_then_exits(
    streams: redis.Redis, redis_url: str, database: str, tmp_path: Path
) -> None:
    settings = sink_settings(redis_url, database, sink_batch_rows=100_000, sink_flush_ms=600_000)
    with _sink_process(settings, tmp_path / "sink.log") as process:
        add_events(streams, make_events(250))
        wait_until(lambda: _pending(streams) == 250, 20, "the sink to read the events")
        assert stored(database) == (0, 0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    assert stored(database) == (250, 250)
    assert backlog(streams) == 0
    assert '"message":"sink stopped"' in (tmp_path / "sink.log").read_text()


@pytest.mark.slow
def test_kill_9_at_any_moment_loses_and_repeats_nothing(
    streams: redis.Redis, redis_url: str, database: str, tmp_path: Path
) -> None:
    settings = sink_settings(redis_url, database, sink_batch_rows=200, sink_flush_ms=20)
    log = tmp_path / "sink.log"
    written = 0
    for delay_s in (0.005, 0.015, 0.025, 0.04):
        with _sink_process(settings, log) as process:
            rows_before = stored(database)[0]
            for _ in range(8):
                add_events(streams, make_events(100, written))
                written += 100
                time.sleep(0.02)
            wait_until(_more_rows_than(database, rows_before), 20, f"inserts (see {log})")
            add_events(streams, make_events(100, written))
            written += 100
            time.sleep(delay_s)
            process.kill()
    with _sink_process(settings, log) as process:
        wait_until(_caught_up(streams, database, written), 20, f"the backlog (see {log})")
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    assert stored(database) == (written, written)
    assert query(database, "SELECT uniqExact(scan_id) FROM scans") == [(written,)]


@pytest.mark.slow
def test_a_sink_killed_beside_another_leaves_it_every_partition_and_nothing_twice(
    streams: redis.Redis, redis_url: str, database: str, tmp_path: Path
) -> None:
    settings = sink_settings(redis_url, database, sink_batch_rows=200, sink_flush_ms=20)
    written = 0
    with (
        _sink_process(settings, tmp_path / "first.log") as first,
        _sink_process(settings, tmp_path / "second.log") as second,
    ):
        wait_until(lambda: lease_shares(streams) == [8, 8], 20, "the partitions split")
        for _ in range(20):
            add_events(streams, make_events(100, written))
            written += 100
            time.sleep(0.01)
        first.kill()  # mid-stream: entries of its partitions pending, inserts maybe running
        for _ in range(10):
            add_events(streams, make_events(100, written))
            written += 100
        wait_until(lambda: lease_shares(streams) == [16], 20, "the second sink to take all")
        wait_until(_caught_up(streams, database, written), 20, "every event")
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    assert stored(database) == (written, written)
    assert query(database, "SELECT uniqExact(scan_id) FROM scans") == [(written,)]


# --- ClickHouse down --------------------------------------------------------------------------


def _answers(url: str) -> bool:
    client = connect(url)
    try:
        return bool(client.execute("SELECT 1") == [(1,)])
    except (NetworkError, EOFError, OSError):
        return False
    finally:
        client.disconnect()


def _restart(server: ServerProcess, data_dir: Path) -> ServerProcess:
    restarted = restart_clickhouse(server, data_dir)
    wait_until(lambda: _answers(server.url), 30, "ClickHouse to restart")
    return restarted


@pytest.mark.slow
def test_a_clickhouse_outage_delays_events_and_loses_none(
    streams: redis.Redis, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = local_services.start_clickhouse(tmp_path)
    try:
        client = connect(server.url)
        apply_migrations(client)
        client.disconnect()
        with running_sink(sink_settings(redis_url, server.url)):
            add_events(streams, make_events(300))
            wait_until(_caught_up(streams, server.url, 300), 10, "the events before the outage")
            # Killed: a graceful stop waits ~10 s for the sink's idle connection to go.
            server.process.kill()
            server.process.wait()
            add_events(streams, make_events(300, 300))
            time.sleep(1.5)
            add_events(streams, make_events(300, 600))
            time.sleep(1.5)
            assert backlog(streams) == 600
            server = _restart(server, tmp_path)
            wait_until(_caught_up(streams, server.url, 900), 15, "the events of the outage")
        assert stored(server.url) == (900, 900)
        assert "clickhouse insert failed; retrying" in caplog.messages
    finally:
        server.stop()


def test_acknowledging_twice_subtracts_the_events_once(streams: redis.Redis) -> None:
    add_events(streams, make_events(40), per_entry=4)
    sink_streams = SinkStreams(streams, SCANS, StreamLeases(streams))
    sink_streams.open()
    replies = sink_streams.read(dict.fromkeys(PARTITIONS.stream_keys, NEW), 100)
    batch = Insert(SCANS)
    for key, entries in replies.items():
        batch.add(key, entries)
    first = next(iter(batch.ids))
    ids, events = {first: batch.ids[first]}, {first: batch.events[first]}
    for _ in range(2):  # a retry after a lost reply
        sink_streams.acknowledge(ids, events, None)
    assert backlog(streams) == 40 - sum(batch.events[first])
    assert streams.xlen(first) == 0


def test_two_sinks_split_the_partitions_and_one_takes_all_when_the_other_stops(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    settings = sink_settings(redis_url, database)
    first_stop, second_stop = threading.Event(), threading.Event()
    first = threading.Thread(target=run_sink, args=(settings, first_stop))
    second = threading.Thread(target=run_sink, args=(settings, second_stop))
    first.start()
    try:
        wait_until(lambda: lease_shares(streams) == [16], 10, "the first sink's leases")
        second.start()
        wait_until(lambda: lease_shares(streams) == [8, 8], 15, "the partitions split")
        add_events(streams, make_events(500))
        wait_until(_caught_up(streams, database, 500), 10, "the events of both sinks")
    finally:
        first_stop.set()
        first.join(10)
    try:
        wait_until(lambda: lease_shares(streams) == [16], 15, "the second sink to take all")
        add_events(streams, make_events(500, 500))
        wait_until(_caught_up(streams, database, 1000), 10, "the events after the first stopped")
    finally:
        second_stop.set()
        second.join(10)
    assert stored(database) == (1000, 1000)


def test_a_sink_whose_lease_another_took_stops_with_lease_lost(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    settings = sink_settings(redis_url, database)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            run_sink(settings, threading.Event())
        except LeaseLost as error:
            raised.append(error)

    sink = threading.Thread(target=run)
    sink.start()
    wait_until(lambda: lease_shares(streams) == [16], 10, "the sink's leases")
    stolen = PARTITIONS.stream_key(5)
    streams.set(lease_key(stolen), "elsewhere:1:0a1b2c", px=60_000)  # a stalled sink's lease
    sink.join(15)
    assert not sink.is_alive()
    [error] = raised
    assert stolen in str(error)
    assert streams.get(lease_key(stolen)) == b"elsewhere:1:0a1b2c"  # not released by the loser


def test_a_sink_writes_nothing_once_its_own_clock_says_a_lease_ran_out(
    streams: redis.Redis, redis_url: str, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease, "VALID_FOR_S", 0.0)  # as if stalled past it before each write
    add_events(streams, make_events(40))
    settings = sink_settings(redis_url, database, sink_flush_ms=50)
    with sink_with(settings, SCANS) as (sink, _), pytest.raises(LeaseLost, match="ran out"):
        sink.run()
    assert stored(database) == (0, 0)
    assert backlog(streams) == 40  # pending for whichever sink holds the streams next


def test_the_lease_of_a_dead_sink_on_this_host_is_taken_over_at_once(streams: redis.Redis) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stream = PARTITIONS.stream_key(0)
    streams.set(lease_key(stream), f"{socket.gethostname()}:{dead.pid}:0a1b2c", px=60_000)
    leases = StreamLeases(streams)
    assert leases.claim([stream]) == [stream]
    assert streams.get(lease_key(stream)) == leases.holder.encode()


def test_an_entry_that_is_not_a_scan_event_is_set_aside_not_retried(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    add_events(streams, make_events(30), per_entry=3)
    poison = {EVENT_FIELD: b"\x05\x00\x00\x00short", STATE_FIELD: b"\x01" * 7}
    poison_id = streams.xadd(PARTITIONS.stream_keys[0], poison)  # type: ignore[arg-type]
    streams.incrby(PARTITIONS.unsunk_keys[0], 1)
    with running_sink(sink_settings(redis_url, database)):
        wait_until(_caught_up(streams, database, 30), 10, "the good events")
    assert stored(database) == (30, 30)
    [(_, dead)] = cast(list[Entry], streams.xrange(dead_letter_key(PARTITIONS.stream_keys[0])))
    assert (dead[b"id"], dead[EVENT_FIELD]) == (poison_id, poison[EVENT_FIELD])
    assert _pending(streams) == 0
