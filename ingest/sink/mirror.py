"""The mirror of Redis reference data in ClickHouse: batches, shipments and distributors.

The scripts that change them append each changed record, as it now is, to a change stream
(``codes.commands.ChangeStream``): a batch's fields, a shipment's log line, a distributor's
JSON. Their event families (``ingest.sink.family``) decode those entries into the tables of
migration 0006, which the sink fills exactly once like ``scans``: a row is known by its stream
entry. A record changed again gets a row more; the tables keep each record's row of the highest
``version``, its entry's place in the stream: the order in which Redis made the changes (the
scripts append in the same atomic step as they change the record). So ``SELECT ... FINAL``
reads each record once, as Redis holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson

from codes import batches
from codes.batches import Batch
from fraud import distributors, shipments
from fraud.shipments import LoggedShipment
from ingest.events.scans import Columns
from ingest.sink.table import SinkTable, rows_not_in

if TYPE_CHECKING:
    from ingest.sink.family import Entries

CHANGE_STREAMS = (batches.CHANGES, shipments.CHANGES, distributors.CHANGES)


_STREAM_COLUMNS = ("version", "stream_ms", "stream_seq")
_SEQ_BITS = 20  # entries one stream gets in a millisecond stay far below 2**20


class MirrorTable(SinkTable):
    IDENTITY: ClassVar[tuple[str, ...]] = ("stream_ms", "stream_seq")
    """The columns that tell a row from every other: its stream entry."""

    def missing(self, columns: Columns) -> Columns:
        """The rows of ``columns`` that the table lacks, searched between their first and last
        stream time."""
        ms = columns["stream_ms"]
        query = (
            f"SELECT {', '.join(self.IDENTITY)} FROM {self.name}"
            " WHERE stream_ms BETWEEN %(first)s AND %(last)s"
        )
        stored = set(self._client.execute(query, {"first": int(ms.min()), "last": int(ms.max())}))
        keys = zip(*(columns[name].tolist() for name in self.IDENTITY), strict=True)
        return rows_not_in(columns, keys, stored)


class BatchTable(MirrorTable):
    NAME = "batches"
    COLUMNS = (
        "batch_id",
        "sku",
        "gtin",
        "kind",
        "line_id",
        "key_id",
        "first_serial",
        "last_serial",
        "quantity",
        "created",
        "created_ms",
        "status",
        "revoked_ms",
        *_STREAM_COLUMNS,
    )


class ShipmentTable(MirrorTable):
    NAME = "shipments"
    COLUMNS = (
        "date",
        "time",
        "time_ms",
        "shipment_id",
        "distributor_id",
        "first_serial",
        "last_serial",
        "codes",
        "range_index",
        *_STREAM_COLUMNS,
    )
    IDENTITY = ("stream_ms", "stream_seq", "range_index")


class DistributorTable(MirrorTable):
    NAME = "distributors"
    COLUMNS = (
        "distributor_id",
        "name",
        "territory",
        "updated",
        "updated_ms",
        *_STREAM_COLUMNS,
    )


def decode_batches(_stream: str, entries: Entries) -> Columns:
    rows = []
    for entry_id, fields in entries:
        batch = Batch.from_redis({k.decode(): v.decode() for k, v in fields.items()})
        revoked_ms = int(fields.get(b"revoked_at", 0))
        rows.append(
            (
                batch.batch_id,
                batch.sku,
                batch.gtin,
                batch.kind.value,
                batch.line_id,
                batch.key_id,
                batch.first_serial,
                batch.last_serial,
                batch.quantity,
                batch.created_ms // 1000,
                batch.created_ms,
                batch.status.value,
                revoked_ms,
                *_stream_columns(entry_id),
            )
        )
    return _columns(BatchTable.COLUMNS, rows)


def decode_shipments(_stream: str, entries: Entries) -> Columns:
    rows = []
    for entry_id, fields in entries:
        shipment = LoggedShipment.parse(fields[b"shipment"].decode())
        shipped = shipment.time_ms
        for index, (first, last) in enumerate(shipment.ranges):
            rows.append(
                (
                    _utc_date(shipped),
                    shipped // 1000,
                    shipped,
                    shipment.shipment_id,
                    shipment.distributor_id,
                    first,
                    last,
                    last - first + 1,
                    index,
                    *_stream_columns(entry_id),
                )
            )
    return _columns(ShipmentTable.COLUMNS, rows)


def decode_distributors(_stream: str, entries: Entries) -> Columns:
    rows = []
    for entry_id, fields in entries:
        stored = orjson.loads(fields[b"distributor"])
        updated_ms = int(stored["updated_ms"])
        rows.append(
            (
                str(stored["distributor_id"]),
                str(stored["name"]),
                orjson.dumps(stored["territory"]).decode(),
                updated_ms // 1000,
                updated_ms,
                *_stream_columns(entry_id),
            )
        )
    return _columns(DistributorTable.COLUMNS, rows)


def _stream_columns(entry_id: bytes) -> tuple[int, int, int]:
    """``version``, ``stream_ms`` and ``stream_seq`` of an entry."""
    ms, _, seq = entry_id.partition(b"-")
    return (int(ms) << _SEQ_BITS) + int(seq), int(ms), int(seq)


def _utc_date(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def _columns(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> Columns:
    """Rows as columns (of Python values: reference data changes a few times a day)."""
    by_column = zip(*rows, strict=True) if rows else ((),) * len(names)
    return {
        name: np.array(values, dtype=object) for name, values in zip(names, by_column, strict=True)
    }
