"""The families of events the sink moves, each from its Redis streams into its ClickHouse table.

A family says which streams to read (a fixed set, or one discovered while the sink runs), where
each keeps its count of unsunk events, how many events an entry holds, how entries decode into
the table's columns (every family has ``stream_ms``, the entry id's time) and which table
takes them, with its identity check for retried writes. Everything else, the exactly-once
machinery, is the same for all families (``ingest.sink.consumer``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import cast

from codes import batches
from codes.commands import ChangeStream
from fraud import distributors, shipments
from ingest.events import draws, scans
from ingest.events.partitions import Partitions
from ingest.events.scans import Columns
from ingest.sink import mirror
from ingest.sink.shards import Placement
from ingest.sink.table import DrawTable, ScanTable, SinkTable
from ingest.store.scripts import SyncRedis
from rewards import store
from rewards.campaigns import is_campaign_id

Fields = dict[bytes, bytes]
Entry = tuple[bytes, Fields]
Entries = Sequence[Entry]


@dataclass(frozen=True, slots=True)
class EventFamily:
    name: str
    stats_key: str
    """The hash where the sink keeps the stats of its inserts of this family."""
    max_events_per_entry: int
    """What the sink sizes its reads by."""
    flush_scale: int
    """A batch of the family is written after this many times ``sink_flush_ms`` (if it has not
    reached ``sink_batch_rows`` before): every insert costs ClickHouse a part to write and merge,
    so a family nobody waits for is written in fewer, larger inserts (and its streams, when
    idle, are polled that many times less often)."""
    stream_keys: Callable[[SyncRedis], Collection[str]]
    """The family's streams now, which the running sinks share out (``ingest.sink.lease``)."""
    unsunk_key: Callable[[str], str]
    """The count of the unsunk events of a stream, which the sink's acknowledgement lowers."""
    events_in: Callable[[Fields], int]
    decode: Callable[[str, Entries], Columns]
    """Columns for some entries of one stream, their text as the table inserts it (see
    ``SinkTable.UTF8``); ``ValueError``, ``KeyError``, ``IndexError``, ``UnicodeDecodeError``
    or ``struct.error`` for entries not of the family's layout."""
    table: type[SinkTable]
    placement: Placement
    """Which shard of a cluster each row goes to."""


SCAN_STATS_KEY = "{sink}:stats"


def scan_family(partitions: Partitions) -> EventFamily:
    """Scan events, from the stream of each of ``partitions``."""

    def decode(stream: str, entries: Entries) -> Columns:
        return scans.decode_columns(partitions.of_stream(stream), entries, utf8=True)

    unsunk_keys = dict(zip(partitions.stream_keys, partitions.unsunk_keys, strict=True))
    return EventFamily(
        name="scans",
        stats_key=SCAN_STATS_KEY,
        max_events_per_entry=scans.MAX_EVENTS_PER_ENTRY,
        flush_scale=1,
        stream_keys=lambda _: partitions.stream_keys,
        unsunk_key=unsunk_keys.__getitem__,
        events_in=scans.events_in,
        decode=decode,
        table=ScanTable,
        placement=Placement.BY_PARTITION,
    )


def _campaign_streams(redis: SyncRedis) -> list[str]:
    """The draw streams of the campaigns in ``CAMPAIGNS_KEY`` (a member that is not a campaign
    id names no stream the draw script writes)."""
    members = cast(set[bytes], redis.smembers(store.CAMPAIGNS_KEY))
    ids = sorted(member.decode(errors="replace") for member in members)
    return [store.draw_stream(cid) for cid in ids if is_campaign_id(cid)]


def _decode_draws(stream: str, entries: Entries) -> Columns:
    return draws.decode_columns(draws.campaign_of(stream), entries)


DRAWS = EventFamily(
    name="draws",
    stats_key="{sink}:draws:stats",
    max_events_per_entry=scans.MAX_EVENTS_PER_ENTRY,
    flush_scale=5,  # a part every 5 s costs ClickHouse ~1 us a draw, one a second ~10
    stream_keys=_campaign_streams,
    unsunk_key=store.unsunk_key,
    events_in=draws.draws_in,
    decode=_decode_draws,
    table=DrawTable,
    placement=Placement.BY_CAMPAIGN,
)
"""Entries of more draws than ``max_events_per_entry`` only make a read bring more rows."""


def _mirror(
    name: str,
    changes: ChangeStream,
    decode: Callable[[str, Entries], Columns],
    table: type[SinkTable],
    read_as_events: int,
) -> EventFamily:
    """The family of a change stream of reference data (``ingest.sink.mirror``): an entry is one
    change, but reads are sized as if it held ``read_as_events`` events (a shipment of many
    ranges, a distributor's megabytes of borders), so that a read stays small."""
    return EventFamily(
        name=name,
        stats_key=f"{{sink}}:{name}:stats",
        max_events_per_entry=read_as_events,
        flush_scale=5,  # nobody waits on these: a change shows in ClickHouse within 5 s
        stream_keys=lambda _: (changes.key,),
        unsunk_key=lambda _: changes.unsunk_key,
        events_in=lambda _: 1,
        decode=decode,
        table=table,
        placement=Placement.EVERY_SHARD,
    )


BATCHES = _mirror("batches", batches.CHANGES, mirror.decode_batches, mirror.BatchTable, 1)
SHIPMENTS = _mirror(
    "shipments", shipments.CHANGES, mirror.decode_shipments, mirror.ShipmentTable, 1_000
)
DISTRIBUTORS = _mirror(
    "distributors",
    distributors.CHANGES,
    mirror.decode_distributors,
    mirror.DistributorTable,
    10_000,
)


def families(partitions: Partitions) -> tuple[EventFamily, ...]:
    return (scan_family(partitions), DRAWS, BATCHES, SHIPMENTS, DISTRIBUTORS)
