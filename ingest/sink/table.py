"""The ClickHouse side of the sink: inserts into its tables and the look-ups of a retried write.

Every insert carries a query id ``scanward-sink:<database>:<table>:<streams>:<uuid>``, where
``<streams>`` is a 256-bit mask with a bit for each stream whose rows it holds, so that a sink
can see in ``system.processes`` whether an insert of rows of its streams, by an earlier attempt
or by a sink that held them before, is still running on the server (the other sinks' inserts,
of other streams, do not hold it up). Each table has its own identity check
(``SinkTable.missing``): which of a batch's rows it already holds.

On a cluster the sink writes one shard's local table (``ingest.sink.shards``). A replicated one
(``SinkTable.replicated``) deduplicates an insert of the very block it already holds, whichever
replica took it (ZooKeeper keeps the hashes of the last 100 blocks), and so do the replicated
rollups its views fill: a failed insert is sent again as it was, to any replica, without a
check. The check that a recovery still needs asks one replica, which may not yet have fetched
every part the others took: it waits until that replica has (``fetches_due``).
"""

from __future__ import annotations

import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Container, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from clickhouse_driver.errors import NetworkError, SocketTimeoutError

from ingest.events.scans import Columns

QUERY_ID_PREFIX = "scanward-sink:"

COLUMNS = (
    "date",
    "time",
    "time_ms",
    "client_time_ms",
    "scan_id",
    "code",
    "serial",
    "key_id",
    "batch_id",
    "sku",
    "gtin",
    "verdict",
    "genuine",
    "first_scan",
    "scan_count",
    "distinct_devices",
    "flag_list",
    "flag_details",
    "lat",
    "lon",
    "accuracy_m",
    "has_location",
    "member_id",
    "device_id",
    "ip",
    "latency_us",
    "risk",
    "distributor_id",
    "surfaced_in",
    "distance_km",
    "stream_partition",
    "stream_ms",
    "stream_seq",
    "stream_index",
)
"""The columns the sink writes: all of ``scans`` but the materialized ``flags``."""

_RUNNING = "SELECT query_id FROM system.processes WHERE startsWith(query_id, %(prefix)s)"
_FETCHES_DUE = """
SELECT count() FROM system.replication_queue
WHERE database = currentDatabase() AND table = %(table)s AND type = 'GET_PART'
"""
_MASK_BITS = 256
_UNREACHABLE = (NetworkError, SocketTimeoutError, OSError, EOFError)


class SinkTable(ABC):
    """One table the sink writes: its name, the columns it inserts (all decoded by its event
    family) and the identity check of a retried write."""

    NAME: ClassVar[str]
    COLUMNS: ClassVar[tuple[str, ...]]
    UTF8: ClassVar[bool] = False
    """Whether the text columns to insert hold UTF-8 ``bytes`` (else ``str``): the driver
    writes bytes as they are, in about half the time it takes to encode ``str``."""

    def __init__(self, client: Any, name: str | None = None, replicas: Sequence[Any] = ()) -> None:
        """``client`` writes and checks ``name`` (the table's own ``NAME`` on one server); the
        clients of a shard's ``replicas``, all of them, tell which inserts still run there."""
        self._client = client
        self.name = name or self.NAME
        self.replicated = bool(replicas)
        self._replicas = replicas or (client,)
        self._query_prefix = f"{QUERY_ID_PREFIX}{client.connection.database}:{self.name}:"
        self._insert = f"INSERT INTO {self.name} ({', '.join(self.COLUMNS)}) VALUES"

    def insert(self, columns: Columns, streams: Collection[str]) -> None:
        """Inserts ``columns``, the rows of entries of ``streams``."""
        self._client.execute(
            self._insert,
            [column_values(name, columns[name]) for name in self.COLUMNS],
            columnar=True,
            query_id=f"{self._query_prefix}{_mask(streams):064x}:{uuid.uuid4().hex}",
            settings={"strings_as_bytes": self.UTF8},
        )

    def running_inserts(self, streams: Collection[str]) -> int:
        """Inserts into this table of rows of any of ``streams``, by any sink of this
        database, that the server (every replica that answers) still runs."""
        mask, prefix = _mask(streams), len(self._query_prefix)
        running = 0
        for client in self._replicas:
            try:
                queries = client.execute(_RUNNING, {"prefix": self._query_prefix})
            except _UNREACHABLE:
                if len(self._replicas) == 1:
                    raise
                continue  # a replica that cannot be reached runs nothing (a refusal is raised)
            running += sum(_overlaps(query_id[prefix:], mask) for (query_id,) in queries)
        return running

    def fetches_due(self) -> int:
        """Parts that other replicas of the shard took and the replica asked has yet to fetch."""
        if not self.replicated:
            return 0
        due: int = self._client.execute(_FETCHES_DUE, {"table": self.name})[0][0]
        return due

    @abstractmethod
    def missing(self, columns: Columns) -> Columns:
        """The rows of ``columns`` that the table lacks."""


_STORED_SCANS = """
SELECT stream_partition, stream_ms, stream_seq, stream_index FROM {table}
WHERE date IN %(dates)s AND stream_partition IN %(partitions)s
  AND stream_ms BETWEEN %(first_ms)s AND %(last_ms)s
"""


class ScanTable(SinkTable):
    NAME = "scans"
    COLUMNS = COLUMNS
    UTF8 = True

    def missing(self, columns: Columns) -> Columns:
        """The rows of ``columns`` that ``scans`` lacks, event by event (partition, entry id,
        place in the entry): an insert cut inside an entry is completed, not repeated.

        Only the days and partitions of these rows are searched, between their first and last
        stream time.
        """
        partitions, ms, seq, index = (
            columns[n] for n in ("stream_partition", "stream_ms", "stream_seq", "stream_index")
        )
        stored = set(
            self._client.execute(
                _STORED_SCANS.format(table=self.name),
                {
                    "dates": tuple(np.unique(columns["date"]).tolist()),
                    "partitions": tuple(np.unique(partitions).tolist()),
                    "first_ms": int(ms.min()),
                    "last_ms": int(ms.max()),
                },
            )
        )
        keys = zip(partitions.tolist(), ms.tolist(), seq.tolist(), index.tolist(), strict=True)
        return rows_not_in(columns, keys, stored)


DRAW_COLUMNS = (
    "date",
    "time",
    "time_ms",
    "campaign_id",
    "day",
    "seq",
    "config_version",
    "scan_id",
    "member_id",
    "code",
    "serial",
    "tier",
    "risk",
    "draw_value",
    "won",
    "prize_id",
    "prize_kind",
    "prize_value",
    "guaranteed",
    "available",
    "points_balance",
    "stream_ms",
)
"""The columns of ``draws``, all written by the sink."""

_STORED_DRAWS = "SELECT campaign_id, seq FROM {table} WHERE date IN %(dates)s AND ({campaigns})"
_CAMPAIGN_RANGE = (
    "(campaign_id = %(campaign_{0})s AND day IN %(days_{0})s"
    " AND seq BETWEEN %(first_{0})s AND %(last_{0})s)"
)


class DrawTable(SinkTable):
    NAME = "draws"
    COLUMNS = DRAW_COLUMNS

    def missing(self, columns: Columns) -> Columns:
        """The rows of ``columns`` that ``draws`` lacks, draw by draw (campaign id, seq).

        Only the campaigns of these rows are searched, each on its days between its first and
        last seq.
        """
        campaigns, seq = columns["campaign_id"], columns["seq"]
        ranges = []
        parameters: dict[str, Any] = {"dates": tuple(np.unique(columns["date"]).tolist())}
        for i, campaign in enumerate(np.unique(campaigns).tolist()):
            rows = campaigns == campaign
            ranges.append(_CAMPAIGN_RANGE.format(i))
            parameters |= {
                f"campaign_{i}": campaign,
                f"days_{i}": tuple(np.unique(columns["day"][rows]).tolist()),
                f"first_{i}": int(seq[rows].min()),
                f"last_{i}": int(seq[rows].max()),
            }
        query = _STORED_DRAWS.format(table=self.name, campaigns=" OR ".join(ranges))
        stored = set(self._client.execute(query, parameters))
        return rows_not_in(columns, zip(campaigns.tolist(), seq.tolist(), strict=True), stored)


def _mask(streams: Collection[str]) -> int:
    mask = 0
    for stream in streams:
        mask |= 1 << (zlib.crc32(stream.encode()) % _MASK_BITS)
    return mask


def _overlaps(query_id_rest: str, mask: int) -> bool:
    """Whether an insert whose query id ends in ``query_id_rest`` may hold rows of ``mask``'s
    streams (one without a mask, of another version, may hold any)."""
    text, colon, _ = query_id_rest.partition(":")
    if not colon or len(text) != _MASK_BITS // 4:
        return True
    try:
        return bool(int(text, 16) & mask)
    except ValueError:
        return True


def rows_not_in(
    columns: Columns, keys: Iterable[tuple[Any, ...]], stored: Container[tuple[Any, ...]]
) -> Columns:
    """The rows of ``columns`` whose key (``keys`` has one per row, in order) is not ``stored``."""
    count = len(columns["stream_ms"])
    absent = np.fromiter((key not in stored for key in keys), dtype=bool, count=count)
    return {name: column[absent] for name, column in columns.items()}


def column_values(name: str, column: npt.NDArray[np.generic]) -> list[Any]:
    """A decoded column as the driver inserts it."""
    if name == "time":
        # Raw epoch seconds: the driver would read naive datetimes in the server's time zone.
        column = column.astype(np.int64)
    values: list[Any] = column.tolist()
    return values
