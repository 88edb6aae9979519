"""The sink: scan events from the Redis streams into ClickHouse ``scans``, each exactly once.

One process reads every partition's stream through the consumer group ``CONSUMER_GROUP`` as the
one fixed consumer ``CONSUMER``, decodes the entries into columns, and makes one columnar insert
per ``sink_batch_rows`` rows or ``sink_flush_ms``, whichever comes first. Then it acknowledges
the entries and trims each stream past them, so a stream's length is its unsunk backlog (the
scan path refuses scans beyond ``max_unsunk_events``).

Exactly once, although ClickHouse 18.16 cannot deduplicate inserts into a MergeTree:

- An entry stays pending (in the group's PEL) from its delivery until it is acknowledged, which
  happens only after its row is in ClickHouse. A sink that dies at any point leaves every entry
  whose insert may have happened pending; nothing is acknowledged that is not stored.
- The first insert of freshly delivered entries needs no check: no row of theirs can exist.
- Every other write (the pending entries found at start, a retry after a failed insert or a
  failed acknowledgement) first waits until ``system.processes`` shows no insert of a sink of
  this database (each carries a recognisable query id: a dead sink's insert may still run on
  the server), then asks ``scans`` which of the events (partition, entry id, place in the
  entry) it already holds, searching only their days and partitions, and inserts only the
  others. The check is per event, so even an insert cut half-way is completed, not repeated.

Only one sink may write at a time (a second one would insert fresh entries while the first is
checking): ``run_sink`` holds ``sink_lease.SinkLease`` while it runs. ClickHouse or Redis being
down only delays the sink: it retries with a backoff capped at ``BACKOFF_CAP_S`` and never
drops an entry. On stop (SIGTERM/SIGINT in ``scanward sink``) it writes and acknowledges the
batch in hand, then returns; if ClickHouse fails that last write, the entries stay pending for
the next start.
"""

from __future__ import annotations

import logging
import threading
import time

from clickhouse_driver.errors import Error as ClickHouseError
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ingest.clickhouse_client import connect, describe
from ingest.config import Settings
from ingest.scan_events import MAX_EVENTS_PER_ENTRY, PARTITIONS, Columns
from ingest.sink_batch import Batch
from ingest.sink_lease import SinkLease
from ingest.sink_streams import NEW, InsertStats, SinkStreams
from ingest.sink_table import ScanTable

log = logging.getLogger(__name__)

MAX_READ_COUNT = 1_000
IDLE_S = 0.02
BACKOFF_FIRST_S, BACKOFF_CAP_S = 0.1, 2.0
_CLICKHOUSE_ERRORS = (ClickHouseError, OSError, EOFError)
_NEW_ENTRIES = dict.fromkeys(range(PARTITIONS), NEW)


def _entries_to_read(rows: int, partitions: int) -> int:
    """Entries to ask each partition for: however full the entries, a read brings at most about
    ``rows`` more rows (an entry holds up to ``MAX_EVENTS_PER_ENTRY`` events)."""
    return max(1, min(MAX_READ_COUNT, rows // (partitions * MAX_EVENTS_PER_ENTRY)))


class _Stopped(Exception):
    """Stop was asked while the sink could not yet write safely."""


class Backoff:
    def __init__(self) -> None:
        self.delay = BACKOFF_FIRST_S

    def wait(self, stop: threading.Event) -> None:
        stop.wait(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_CAP_S)


class Sink:
    def __init__(
        self, streams: SinkStreams, table: ScanTable, settings: Settings, stop: threading.Event
    ) -> None:
        self._streams = streams
        self._table = table
        self._batch_rows = settings.sink_batch_rows
        self._flush_ms = settings.sink_flush_ms
        self._stop = stop

    def run(self) -> None:
        """Sinks until ``stop`` is set; the batch in hand is written before returning."""
        log.info(
            "sink started",
            extra={"batch_rows": self._batch_rows, "flush_ms": self._flush_ms},
        )
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self._streams.ensure_groups()
                self._recover()
                backoff = Backoff()
                self._follow()
            except RedisError as error:
                # Pending entries may now include some whose reply was lost: recover them.
                log.warning("redis failed; recovering", extra={"error": str(error)})
                backoff.wait(self._stop)
            except _Stopped:
                break
        log.info("sink stopped")

    def _recover(self) -> None:
        """Writes the entries left pending by an earlier run or a failed step, page by page."""
        cursors = dict.fromkeys(range(PARTITIONS), b"0")
        while cursors and not self._stop.is_set():
            batch = Batch()
            count = _entries_to_read(self._batch_rows, len(cursors))
            for partition, entries in self._streams.read(cursors, count).items():
                if entries:
                    cursors[partition] = entries[-1][0]
                    batch.add(partition, entries)
                else:
                    del cursors[partition]
            if batch.vanished:
                log.warning(
                    "pending entries deleted from their stream by someone else: not stored",
                    extra={"entries": batch.vanished},
                )
            if batch.size:
                log.info("recovering pending entries", extra={"entries": batch.size})
                self._write(batch, fresh=False)

    def _follow(self) -> None:
        """Reads new entries and writes them in batches until stop."""
        batch = Batch()
        while not self._stop.is_set():
            count = _entries_to_read(self._batch_rows - batch.rows, PARTITIONS)
            replies = self._streams.read(_NEW_ENTRIES, count)
            for partition, entries in replies.items():
                batch.add(partition, entries)
            if batch.size and (batch.rows >= self._batch_rows or batch.age_ms >= self._flush_ms):
                self._write(batch, fresh=True)
                batch = Batch()
            elif all(len(entries) < count for entries in replies.values()):
                self._stop.wait(IDLE_S)
        if batch.size:
            self._write(batch, fresh=True)

    def _write(self, batch: Batch, *, fresh: bool) -> None:
        """Inserts the rows of ``batch`` that ClickHouse lacks, then acknowledges the batch.

        ``fresh``: no insert of these entries was ever tried, so there is nothing to look up.
        """
        backoff = Backoff()
        while True:
            try:
                stats = self._insert(batch.columns() if fresh else self._missing(batch))
                break
            except _CLICKHOUSE_ERRORS as error:
                pending = {"entries": batch.size, "error": describe(error)}
                if self._stop.is_set():
                    log.error("stopping with entries pending for the next start", extra=pending)
                    raise _Stopped from error
                log.warning("clickhouse insert failed; retrying", extra=pending)
                backoff.wait(self._stop)
                fresh = False
        if batch.undecodable:
            log.error(
                "entries that are not scan events set aside in the dead-letter streams",
                extra={"entries": [entry_id for _, (entry_id, _) in batch.undecodable]},
            )
            self._streams.set_aside(batch.undecodable)
        self._streams.acknowledge(batch.ids, batch.events, stats)

    def _missing(self, batch: Batch) -> Columns:
        if not batch.rows:
            return {}
        if self._table.running_inserts():
            log.info("waiting for an earlier insert to finish")
            while self._table.running_inserts():
                if self._stop.wait(IDLE_S):
                    raise _Stopped
        missing = self._table.missing(batch.columns())
        log.info(
            "checked entries against clickhouse",
            extra={"rows": batch.rows, "missing": len(missing["stream_ms"])},
        )
        return missing

    def _insert(self, columns: Columns) -> InsertStats | None:
        rows = len(columns["stream_ms"]) if columns else 0
        if not rows:
            return None
        started = time.perf_counter()
        self._table.insert(columns)
        finished_ms = int(time.time() * 1000)
        stats = InsertStats(
            rows=rows,
            seconds=time.perf_counter() - started,
            finished_ms=finished_ms,
            lag_ms=finished_ms - int(columns["stream_ms"].min()),
        )
        log.info(
            "inserted",
            extra={"rows": rows, "seconds": round(stats.seconds, 3), "lag_ms": stats.lag_ms},
        )
        return stats


def run_sink(settings: Settings, stop: threading.Event) -> None:
    """Runs the sink of ``settings`` until ``stop`` is set (see the module's documentation)."""
    if settings.redis_url is None or settings.clickhouse_url is None:
        raise ValueError("the sink needs redis_url and clickhouse_url")
    # No silent retries: a read retried after a lost reply would leave entries pending unseen.
    redis = Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=30,
        retry=Retry(NoBackoff(), 0),
    )
    lease = SinkLease(redis)
    if not lease.acquire(stop):
        redis.close()
        return
    heartbeat = lease.keep(stop)
    client = connect(settings.clickhouse_url)
    try:
        Sink(SinkStreams(redis), ScanTable(client), settings, stop).run()
    finally:
        client.disconnect()
        stop.set()
        heartbeat.join()
        lease.release()
        redis.close()
