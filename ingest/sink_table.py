"""The ClickHouse side of the sink: inserts into ``scans`` and the look-ups of a retried write.

Every insert carries a query id starting with ``scanward-sink:<database>:`` so that a sink can
see in ``system.processes`` whether an insert of an earlier attempt, or of a sink that died, is
still running on the server.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.scan_events import Columns

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

_INSERT = f"INSERT INTO scans ({', '.join(COLUMNS)}) VALUES"
_RUNNING = "SELECT count() FROM system.processes WHERE startsWith(query_id, %(prefix)s)"
_STORED_IDS = """
SELECT stream_partition, stream_ms, stream_seq, stream_index FROM scans
WHERE date IN %(dates)s AND stream_partition IN %(partitions)s
  AND stream_ms BETWEEN %(first_ms)s AND %(last_ms)s
"""


class ScanTable:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._query_prefix = f"{QUERY_ID_PREFIX}{client.connection.database}:"

    def insert(self, columns: Columns) -> None:
        self._client.execute(
            _INSERT,
            [column_values(name, columns[name]) for name in COLUMNS],
            columnar=True,
            query_id=self._query_prefix + uuid.uuid4().hex,
        )

    def running_inserts(self) -> int:
        """Inserts of any sink of this database that the server is still running."""
        [(count,)] = self._client.execute(_RUNNING, {"prefix": self._query_prefix})
        return int(count)

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
                _STORED_IDS,
                {
                    "dates": tuple(np.unique(columns["date"]).tolist()),
                    "partitions": tuple(np.unique(partitions).tolist()),
                    "first_ms": int(ms.min()),
                    "last_ms": int(ms.max()),
                },
            )
        )
        keys = zip(partitions.tolist(), ms.tolist(), seq.tolist(), index.tolist(), strict=True)
        absent = np.fromiter((key not in stored for key in keys), dtype=bool, count=len(ms))
        return {name: column[absent] for name, column in columns.items()}


def column_values(name: str, column: npt.NDArray[np.generic]) -> list[Any]:
    """A decoded column as the driver inserts it into ``scans``."""
    if name == "time":
        # Raw epoch seconds: the driver would read naive datetimes in the server's time zone.
        column = column.astype(np.int64)
    values: list[Any] = column.tolist()
    return values
