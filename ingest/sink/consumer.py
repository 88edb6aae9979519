"""The sink: events from the Redis streams into ClickHouse, each exactly once.

It moves every family of events (``ingest.sink.family``): scan events from the partitions'
streams (``<tag>:events``) into ``scans``, prize draws from each campaign's stream
``{camp:<id>}:draws`` into ``draws``, and the changes of batches, shipments and distributors
into their mirrors (``ingest.sink.mirror``). A family's streams are read through the consumer group
``CONSUMER_GROUP`` as the one fixed consumer ``CONSUMER``; entries are decoded into columns and
written in one columnar insert per ``sink_batch_rows`` rows or ``sink_flush_ms`` (times the
family's ``flush_scale``: draws and changes wait 5 s, and an idle stream of theirs is polled
5 times less often), whichever comes first. Then the sink acknowledges
the entries and trims each stream past them, so a stream's length is its unsunk backlog (the
scan path refuses scans beyond ``max_unsunk_events``). Streams of campaigns added while the
sink runs are found every ``DISCOVER_S`` (below).

A loop reads and decodes the next insert while its writer thread (``_Writer``) inserts and
acknowledges the last one: the insert's server side and the acknowledgement run in ClickHouse
and Redis, and the loop's thread runs meanwhile. The writer writes one insert at a time, in the
order they were read, so each stream's entries are acknowledged in stream order, each insert
after its insert; the loop waits for the write in flight before it writes anything itself (the
pending entries of a new stream) and before it recovers after a failure, and a write that fails
ends the loop as a failure of its own would. At most two inserts are in memory: the one being
written and the one being read.

Exactly once, although ClickHouse 18.16 cannot deduplicate inserts into a MergeTree:

- An entry stays pending (in the group's PEL) from its delivery until it is acknowledged, which
  happens only after its rows are in ClickHouse. A sink that dies at any point leaves every
  entry whose insert may have happened pending; nothing is acknowledged that is not stored.
- The first insert of freshly delivered entries needs no check: no row of theirs can exist.
- Every other write (the pending entries found at start or in a stream just taken over, a
  retry after a failed insert or a failed acknowledgement) first waits until
  ``system.processes`` shows no insert of rows of its streams into the family's table by a sink
  of this database (each insert's query id names its streams: a dead sink's insert may still
  run on the server), then asks the table which of the events it already holds
  (``SinkTable.missing``: for scans the partition, entry id and place in the entry, searching
  only their days and partitions; for draws the campaign and seq, searching only their
  campaigns' seq ranges) and inserts only the others. The check is per event, so even an
  insert cut half-way is completed, not repeated.

Several sinks share the streams: each reads only the streams whose lease it holds
(``ingest.sink.lease``), so no two write a stream's entries at once (a second one would insert
fresh entries while the first is checking). They share one consumer name, so a stream's pending
entries pass with its lease. Within a sink, ``run_sink`` runs one ``Sink`` loop per family, each
in its own thread with its own Redis connection and ClickHouse clients, one per shard (and one
per replica for the checks), which one thread uses at a time. Every ``DISCOVER_S`` a loop
takes the streams it now holds (new campaigns, streams of a sink that stopped, its share when it
starts) and recovers their pending entries before reading new ones, and gives back those over
its share once everything read of them is written.
Separate loops keep the families independent: their inserts fill at their own pace, and a
failing or slow insert into one table (each retried with its own backoff) delays nothing of the
others. The loops share the stop event: when one ends (stop, a lost lease, a crash) the others
write their inserts in hand and end too.

On a ClickHouse cluster each insert's rows go to their shards' local tables
(``ingest.sink.shards``), shard by shard; the check above runs against the shard each row went
to, and a shard's insert that failed is sent again unchanged to a replicated table (see
``ingest.sink.table``).

ClickHouse or Redis being down only delays the sink: it retries with a backoff capped at
``BACKOFF_CAP_S`` and never drops an entry. On stop (SIGTERM/SIGINT in ``scanward sink``) each
loop finishes the write in flight, writes and acknowledges the insert in hand, then returns; if
ClickHouse fails either write, the entries not written stay pending for the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ingest.config import Settings
from ingest.events.scans import Columns
from ingest.sink.family import EventFamily, families
from ingest.sink.insert import Insert
from ingest.sink.lease import LeaseLost, StreamLeases
from ingest.sink.shards import ShardedTable, ShardMap, check_shard_map
from ingest.sink.streams import NEW, InsertStats, SinkStreams
from ingest.sink.table import SinkTable
from ingest.store.connect import addresses, sync_client
from ingest.store.layout import check_layout
from ingest.store.scripts import SyncRedis
from ingest.warehouse.client import ERRORS as CLICKHOUSE_ERRORS
from ingest.warehouse.client import connect, describe
from ingest.warehouse.cluster_schema import local_table
from ingest.warehouse.topology import Topology

log = logging.getLogger(__name__)

MAX_READ_COUNT = 1_000
LEASE_TIMEOUT_S = 2.0
"""Of the leases' commands: a renewal that hangs must not outlast the lease."""
IDLE_S = 0.02
FETCH_WAIT_S = 0.5
DISCOVER_S = 1.0
BACKOFF_FIRST_S, BACKOFF_CAP_S = 0.1, 2.0


def _entries_to_read(rows: int, streams: int, events_per_entry: int) -> int:
    """Entries to ask each stream for: however full the entries, a read brings at most about
    ``rows`` more rows (an entry holds up to ``events_per_entry`` events)."""
    return max(1, min(MAX_READ_COUNT, rows // (max(streams, 1) * events_per_entry)))


class _Stopped(Exception):
    """Stop was asked while the sink could not yet write safely."""


class Backoff:
    def __init__(self) -> None:
        self.delay = BACKOFF_FIRST_S

    def wait(self, stop: threading.Event) -> None:
        stop.wait(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_CAP_S)


class Sink:
    """The loop of one event family: ``streams`` and ``tables`` are that family's."""

    def __init__(
        self, streams: SinkStreams, tables: ShardedTable, settings: Settings, stop: threading.Event
    ) -> None:
        self._streams = streams
        self._family = streams.family
        self._tables = tables
        self._batch_rows = settings.sink_batch_rows
        self._flush_ms = settings.sink_flush_ms * self._family.flush_scale
        self._idle_s = IDLE_S * self._family.flush_scale
        self._stop = stop
        self._log = {"family": self._family.name}

    def run(self) -> None:
        """Sinks until ``stop`` is set; the inserts in hand are written before returning."""
        log.info(
            "sink started",
            extra={**self._log, "batch_rows": self._batch_rows, "flush_ms": self._flush_ms},
        )
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self._streams.open()
                self._recover(self._streams.keys)
                backoff = Backoff()
                self._follow()
            except RedisError as error:
                # Pending entries may now include some whose reply was lost: recover them.
                log.warning("redis failed; recovering", extra={**self._log, "error": str(error)})
                backoff.wait(self._stop)
            except _Stopped:
                break
        log.info("sink stopped", extra=self._log)

    def _recover(self, keys: Collection[str]) -> None:
        """Writes the entries of streams ``keys`` left pending by an earlier run or a failed
        step, page by page."""
        cursors = dict.fromkeys(keys, b"0")
        while cursors and not self._stop.is_set():
            insert = Insert(self._family)
            count = _entries_to_read(
                self._batch_rows, len(cursors), self._family.max_events_per_entry
            )
            for key, entries in self._streams.read(cursors, count).items():
                if entries:
                    cursors[key] = entries[-1][0]
                    insert.add(key, entries)
                else:
                    del cursors[key]
            if insert.vanished:
                log.warning(
                    "pending entries deleted from their stream by someone else: not stored",
                    extra={**self._log, "entries": insert.vanished},
                )
            if insert.size:
                log.info("recovering pending entries", extra={**self._log, "entries": insert.size})
                self._write(insert, fresh=False)

    def _follow(self) -> None:
        """Reads new entries and hands them as inserts to the writer until stop; looks for new
        streams every ``DISCOVER_S``."""
        insert = Insert(self._family)
        discovered = time.monotonic()
        with _Writer(self._write_fresh, f"sink-{self._family.name}-writer") as writer:
            while not self._stop.is_set():
                writer.check()
                if time.monotonic() - discovered >= DISCOVER_S:
                    discovered = time.monotonic()
                    added, given = self._streams.discover()
                    if given:  # everything read of them written and acknowledged first
                        if insert.size:
                            writer.submit(insert)
                            insert = Insert(self._family)
                        writer.wait()
                        self._streams.give_back(given)
                        log.info("gave streams back", extra={**self._log, "streams": given})
                    if added:
                        log.info("took streams", extra={**self._log, "streams": added})
                        writer.wait()  # the ClickHouse client serves one thread at a time
                        self._recover(added)  # before any new entry of theirs is acknowledged
                keys = self._streams.keys
                count = _entries_to_read(
                    self._batch_rows, len(keys), self._family.max_events_per_entry
                )
                replies = self._streams.read(dict.fromkeys(keys, NEW), count)
                for key, entries in replies.items():
                    while entries := insert.add(key, entries, self._batch_rows):  # it is full
                        writer.submit(insert)
                        insert = Insert(self._family)
                if insert.size and (
                    insert.rows >= self._batch_rows or insert.age_ms >= self._flush_ms
                ):
                    writer.submit(insert)
                    insert = Insert(self._family)
                elif all(len(entries) < count for entries in replies.values()):
                    self._stop.wait(self._idle_s)
            if insert.size:
                writer.submit(insert)

    def _write_fresh(self, insert: Insert) -> None:
        self._write(insert, fresh=True)

    def _write(self, insert: Insert, *, fresh: bool) -> None:
        """Inserts the rows of ``insert`` that ClickHouse lacks, each into its shard's table
        (``ingest.sink.shards``), then acknowledges the insert.

        ``fresh``: no insert of these entries was ever tried, so there is nothing to look up. A
        shard's insert that succeeded is not tried again when another's fails; one that failed
        is sent again as it was to a replicated table, which deduplicates it, and checked
        first otherwise.
        """
        backoff = Backoff()
        streams = insert.ids.keys()
        parts = self._tables.split(insert.columns())
        sent: dict[int, Columns] = {}  # by part, what its last insert sent
        written: dict[int, InsertStats | None] = {}  # by part, once its insert succeeded
        while True:
            if not self._streams.may_write(streams):
                # another sink may have these streams now: their entries stay pending for it
                raise LeaseLost(f"the leases of {', '.join(insert.ids)} ran out before a write")
            try:
                for part, (table, rows) in enumerate(parts):
                    if part in written:
                        continue
                    if part in sent and table.replicated:
                        columns = sent[part]
                    else:
                        columns = rows if fresh else self._missing(table, rows, streams)
                    sent[part] = columns
                    written[part] = self._insert_rows(table, columns, streams)
                break
            except CLICKHOUSE_ERRORS as error:
                pending = {**self._log, "entries": insert.size, "error": describe(error)}
                if self._stop.is_set():
                    log.error("stopping with entries pending for the next start", extra=pending)
                    raise _Stopped from error
                log.warning("clickhouse insert failed; retrying", extra=pending)
                backoff.wait(self._stop)
                fresh = False
        if insert.undecodable:
            log.error(
                "entries that do not decode set aside in the dead-letter streams",
                extra={
                    **self._log,
                    "entries": [
                        f"{key} {entry_id.decode()}" for key, (entry_id, _) in insert.undecodable
                    ],
                },
            )
            self._streams.set_aside(insert.undecodable)
        self._streams.acknowledge(insert.ids, insert.events, InsertStats.of(written.values()))

    def _missing(self, table: SinkTable, columns: Columns, streams: Collection[str]) -> Columns:
        if not columns:
            return {}
        self._wait_while(
            lambda: table.running_inserts(streams) > 0,
            "waiting for an earlier insert to finish",
            table,
            IDLE_S,
        )
        self._wait_while(
            lambda: table.fetches_due() > 0,
            "waiting for the replica to fetch the parts its peers took before checking",
            table,
            FETCH_WAIT_S,
            logging.WARNING,  # a peer's part it cannot fetch holds the shard's recovery
        )
        missing = table.missing(columns)
        log.info(
            "checked entries against clickhouse",
            extra={
                **self._log,
                "table": table.name,
                "rows": len(columns["stream_ms"]),
                "missing": len(missing["stream_ms"]),
            },
        )
        return missing

    def _wait_while(
        self,
        busy: Callable[[], bool],
        message: str,
        table: SinkTable,
        interval_s: float,
        level: int = logging.INFO,
    ) -> None:
        """Until ``busy()`` is false (logging ``message`` once if it is not at first);
        ``_Stopped`` on stop."""
        if not busy():
            return
        log.log(level, message, extra={**self._log, "table": table.name})
        while busy():
            if self._stop.wait(interval_s):
                raise _Stopped

    def _insert_rows(
        self, table: SinkTable, columns: Columns, streams: Collection[str]
    ) -> InsertStats | None:
        rows = len(columns["stream_ms"]) if columns else 0
        if not rows:
            return None
        started = time.perf_counter()
        table.insert(columns, streams)
        finished_ms = int(time.time() * 1000)
        stats = InsertStats(
            rows=rows,
            seconds=time.perf_counter() - started,
            finished_ms=finished_ms,
            lag_ms=finished_ms - int(columns["stream_ms"].min()),
        )
        log.info(
            "inserted",
            extra={
                **self._log,
                "table": table.name,
                "rows": rows,
                "seconds": round(stats.seconds, 3),
                "lag_ms": stats.lag_ms,
            },
        )
        return stats


class _Writer:
    """Writes the inserts of a sink loop in a thread of its own, one at a time and in the order
    they are submitted (see the module's documentation)."""

    def __init__(self, write: Callable[[Insert], None], name: str) -> None:
        self._write = write
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._writing: Future[None] | None = None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *_: object) -> None:
        """Waits for the insert being written; raises the error of its write."""
        try:
            self.wait()
        finally:
            self._thread.shutdown()

    def submit(self, insert: Insert) -> None:
        """Has ``insert`` written once the previous write is done; raises the error of that write
        (then ``insert`` is not written)."""
        insert.columns()  # its last entries decoded here, while the previous insert is written
        self.wait()
        self._writing = self._thread.submit(self._write, insert)

    def check(self) -> None:
        """Raises the error of a write that has failed."""
        if self._writing is not None and self._writing.done():
            self.wait()

    def wait(self) -> None:
        """Waits until no insert is being written; raises the error of the last write."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()


def run_sink(settings: Settings, stop: threading.Event) -> None:
    """Runs a sink of ``settings`` until ``stop`` is set: one loop per event family, each over
    the streams whose leases this sink holds (see the module's documentation). A loop's failure
    ends the others and is raised; so is ``LeaseLost`` once the loops have ended."""
    redis_url, clickhouse_url = settings.redis_url, settings.clickhouse_url
    if redis_url is None or clickhouse_url is None:
        raise ValueError("the sink needs redis_url and clickhouse_url")
    topology = Topology.parse(clickhouse_url)
    shard_map = ShardMap.of(len(topology.shards), settings.partitions)
    redis = _redis(redis_url, LEASE_TIMEOUT_S)
    written = threading.Event()  # the loops have written what they hold: the leases may go
    try:
        check_layout(redis, settings.partitions, addresses(redis_url))
        if topology.clustered:
            check_shard_map(redis, shard_map)
        leases = StreamLeases(redis)
        heartbeat = leases.keep(stop, written)
    except BaseException:
        redis.close()
        raise
    try:
        moved = families(settings.partitions)
        with ThreadPoolExecutor(len(moved), thread_name_prefix="sink") as pool:
            loops = [
                pool.submit(
                    _run_family, each, leases, redis_url, topology, shard_map, settings, stop
                )
                for each in moved
            ]
        for loop in loops:
            loop.result()
        if leases.lost is not None:
            raise leases.lost
    finally:
        stop.set()
        written.set()
        heartbeat.join()
        leases.leave()
        redis.close()


def _run_family(
    family: EventFamily,
    leases: StreamLeases,
    redis_url: str,
    topology: Topology,
    shard_map: ShardMap,
    settings: Settings,
    stop: threading.Event,
) -> None:
    redis = _redis(redis_url)
    clients: list[Any] = []
    try:
        tables: dict[int, SinkTable] = {}
        for shard, urls in enumerate(topology.shards, 1):
            writer = connect(",".join(urls))  # on any replica that answers
            replicas = [connect(url) for url in urls] if topology.replicated else []
            clients += [writer, *replicas]
            name = local_table(family.table.NAME) if topology.clustered else None
            tables[shard] = family.table(writer, name, replicas)
        sharded = ShardedTable(tables, shard_map, family.placement)
        streams = SinkStreams(redis, family, leases, sharded.by_shard)
        Sink(streams, sharded, settings, stop).run()
    finally:
        stop.set()  # one loop ending ends the others
        for client in clients:
            client.disconnect()
        redis.close()


def _redis(url: str, socket_timeout_s: float = 30) -> SyncRedis:
    # No silent retries: a read retried after a lost reply would leave entries pending unseen.
    return sync_client(
        url, socket_connect_timeout=2, socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 0)
    )
