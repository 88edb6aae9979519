"""Shipments and aggregation: which distributor each serial was shipped to, and what each case
holds. The Redis work is described as ``ScriptCall`` values (``ingest`` runs them); the index
that the scan path consults is built in memory from the shipment log.

Every key shares the ``{ship}`` hash tag, so shipping a case and its aggregated units is one
atomic script on one Redis or on Redis Cluster:

- ``{ship}:ranges``: shipped serial ranges, never overlapping (a serial ships once);
- ``{ship}:log``: one line per shipment, read incrementally by every worker;
- ``{ship}:children`` / ``{ship}:parent``: aggregation, both directions;
- ``{ship}:changes``: each shipment's log line again, for the sink to mirror into ClickHouse.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from codes.commands import ChangeStream, ErrorReplies, LuaScript, ScriptCall
from fraud.errors import ShipmentConflict, ShipmentDuplicate

RANGES_KEY = "{ship}:ranges"
LOG_KEY = "{ship}:log"
CHILDREN_KEY = "{ship}:children"
PARENT_KEY = "{ship}:parent"
CHANGES = ChangeStream("{ship}:changes")


def _refused(*reasons: str) -> ErrorReplies:
    return {reason: functools.partial(ShipmentConflict, reason) for reason in reasons}


SHIP = LuaScript.load(
    __package__ or "fraud",
    "ship.lua",
    {**_refused("SHIP_OVERLAP"), "SHIP_DUPLICATE": ShipmentDuplicate},
)
AGGREGATE = LuaScript.load(
    __package__ or "fraud",
    "aggregate.lua",
    _refused(
        "AGG_PARENT_FULL", "AGG_PARENT_SHIPPED", "AGG_CHILD_TAKEN", "AGG_CHILD_SHIPPED", "AGG_CYCLE"
    ),
)
RELEASE = LuaScript.load(__package__ or "fraud", "release.lua")
SNAPSHOT_SHIPMENTS = LuaScript.load(__package__ or "fraud", "snapshot_shipments.lua")

_RANGE = struct.Struct("<QQB")
_SERIAL = struct.Struct("<Q")
NOT_SHIPPED = -1


class SerialRange(NamedTuple):
    first: int
    last: int
    expand: bool  # also ship what is aggregated under each serial (case and pallet batches)

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def ship(
    distributor_id: str, shipment_id: str, now_ms: int, ranges: Sequence[SerialRange]
) -> ScriptCall:
    packed = b"".join(_RANGE.pack(*r) for r in ranges)
    return ScriptCall(
        SHIP,
        (RANGES_KEY, LOG_KEY, CHILDREN_KEY, *CHANGES.keys),
        (distributor_id, shipment_id, now_ms, packed),
    )


def aggregate(parent: int, children: Sequence[int]) -> ScriptCall:
    packed = b"".join(_SERIAL.pack(child) for child in children)
    return ScriptCall(AGGREGATE, (CHILDREN_KEY, PARENT_KEY, RANGES_KEY), (parent, packed))


def release(parent: int) -> ScriptCall:
    return ScriptCall(RELEASE, (CHILDREN_KEY, PARENT_KEY), (parent,))


def snapshot(first_line: int, last_line: int) -> ScriptCall:
    """Appends these lines of the shipment log to ``CHANGES``; reply: how many there were."""
    return ScriptCall(SNAPSHOT_SHIPMENTS, (LOG_KEY, *CHANGES.keys), (first_line, last_line))


class LoggedShipment(NamedTuple):
    shipment_id: str
    distributor_id: str
    time_ms: int
    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, line: str) -> LoggedShipment:
        """A line of ``{ship}:log`` as ``ship.lua`` writes it."""
        shipment_id, distributor_id, time_ms, ranges = line.split("\n")
        pairs = (part.split("-") for part in ranges.split(","))
        return cls(
            shipment_id, distributor_id, int(time_ms), tuple((int(a), int(b)) for a, b in pairs)
        )


class ShipmentIndex:
    """Serial -> distributor for a whole micro-batch at once (sorted range starts, searched by
    numpy). Immutable: ``extended`` returns a new index with more of the log applied."""

    __slots__ = ("_distributor_of_range", "_ends", "_starts", "distributors", "log_length")

    def __init__(
        self,
        starts: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
        distributor_of_range: npt.NDArray[np.int32],
        distributors: tuple[str, ...],
        log_length: int,
    ) -> None:
        self._starts = starts
        self._ends = ends
        self._distributor_of_range = distributor_of_range
        self.distributors = distributors
        self.log_length = log_length

    @classmethod
    def empty(cls) -> ShipmentIndex:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, np.zeros(0, dtype=np.int32), (), 0)

    def __len__(self) -> int:
        return len(self._starts)

    def extended(self, shipments: Iterable[LoggedShipment], log_length: int) -> ShipmentIndex:
        numbers = {name: number for number, name in enumerate(self.distributors)}
        starts, ends, owners = [self._starts], [self._ends], [self._distributor_of_range]
        for shipment in shipments:
            number = numbers.setdefault(shipment.distributor_id, len(numbers))
            bounds = np.array(shipment.ranges, dtype=np.int64).reshape(-1, 2)
            starts.append(bounds[:, 0])
            ends.append(bounds[:, 1])
            owners.append(np.full(len(bounds), number, dtype=np.int32))
        all_starts = np.concatenate(starts)
        order = np.argsort(all_starts, kind="stable")
        return ShipmentIndex(
            all_starts[order],
            np.concatenate(ends)[order],
            np.concatenate(owners)[order],
            tuple(numbers),
            log_length,
        )

    def distributor_numbers(self, serials: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
        """For each serial the number of its distributor in ``distributors``, or NOT_SHIPPED."""
        if not len(self):
            return np.full(len(serials), NOT_SHIPPED, dtype=np.int32)
        position = np.searchsorted(self._starts, serials, side="right") - 1
        clipped = np.maximum(position, 0)
        shipped = (position >= 0) & (serials <= self._ends[clipped])
        return np.where(shipped, self._distributor_of_range[clipped], NOT_SHIPPED).astype(np.int32)

    def distributor_of(self, serial: int) -> str | None:
        [number] = self.distributor_numbers(np.array([serial], dtype=np.int64))
        return None if number == NOT_SHIPPED else self.distributors[number]
