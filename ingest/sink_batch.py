"""The stream entries of one insert: their rows as columns and, per stream, their ids."""

from __future__ import annotations

import struct
import time

import numpy as np

from ingest.scan_events import Columns
from ingest.sink_family import Entries, Entry, EventFamily

_UNDECODABLE = (KeyError, ValueError, IndexError, UnicodeDecodeError, struct.error)


class Batch:
    def __init__(self, family: EventFamily) -> None:
        self._family = family
        self.ids: dict[str, list[bytes]] = {}
        """Every entry id by stream key, in stream order: what to acknowledge."""
        self.events: dict[str, list[int]] = {}
        """How many events each of those entries holds."""
        self.size = 0
        """Entries."""
        self.rows = 0
        self.vanished = 0
        """Pending entries deleted from their stream by someone else: nothing left to insert."""
        self.undecodable: list[tuple[str, Entry]] = []
        """Entries that are not events of the family (a bug, or a writer of another version):
        they are set aside for a person to look at, not retried forever."""
        self._parts: list[Columns] = []
        self._started = time.monotonic()

    def add(self, stream: str, entries: Entries) -> None:
        if not entries:
            return
        if not self.size:
            self._started = time.monotonic()
        self.ids.setdefault(stream, []).extend(entry_id for entry_id, _ in entries)
        counts = [self._family.events_in(fields) if fields else 0 for _, fields in entries]
        self.events.setdefault(stream, []).extend(counts)
        self.size += len(entries)
        kept = [entry for entry in entries if entry[1]]
        self.vanished += len(entries) - len(kept)
        columns = self._decode(stream, kept)
        if columns is not None:
            self._parts.append(columns)
            self.rows += len(columns["stream_ms"])

    def _decode(self, stream: str, entries: Entries) -> Columns | None:
        if not entries:
            return None
        decode = self._family.decode
        try:
            return decode(stream, entries)
        except _UNDECODABLE:
            good = []
            for entry in entries:
                try:
                    decode(stream, [entry])
                except _UNDECODABLE:
                    self.undecodable.append((stream, entry))
                else:
                    good.append(entry)
            return decode(stream, good) if good else None

    @property
    def age_ms(self) -> float:
        return (time.monotonic() - self._started) * 1000

    def columns(self) -> Columns:
        if len(self._parts) == 1:
            return self._parts[0]
        parts = self._parts
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
