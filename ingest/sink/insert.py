"""The stream entries of one insert: their rows as columns and, per stream, their ids.

Entries are decoded as the insert fills, a few thousand rows at a time (``DECODE_ROWS``): one
call per stream for many reads costs a fraction of a call per read, and an insert that is
complete has only its last few entries left to decode before it can be written.
"""

from __future__ import annotations

import bisect
import itertools
import struct
import time

import numpy as np

from ingest.events.scans import Columns
from ingest.sink.family import Entries, Entry, EventFamily

DECODE_ROWS = 16_384
"""Rows held undecoded before the insert decodes them."""
_UNDECODABLE = (KeyError, ValueError, IndexError, UnicodeDecodeError, struct.error)


class Insert:
    def __init__(self, family: EventFamily) -> None:
        self._family = family
        self.ids: dict[str, list[bytes]] = {}
        """Every entry id by stream key, in stream order: what to acknowledge."""
        self.events: dict[str, list[int]] = {}
        """How many events each of those entries holds."""
        self.size = 0
        """Entries."""
        self.rows = 0
        """Events in the entries (those of undecodable entries too, until ``columns``)."""
        self.vanished = 0
        """Pending entries deleted from their stream by someone else: nothing left to insert."""
        self.undecodable: list[tuple[str, Entry]] = []
        """Entries that are not events of the family (a bug, or a writer of another version),
        all known once ``columns`` has been called: they are set aside for a person to look at,
        not retried forever."""
        self._held: dict[str, list[Entry]] = {}
        self._held_rows = 0
        self._parts: list[Columns] = []
        self._columns: Columns | None = None
        self._started = time.monotonic()

    def add(self, stream: str, entries: Entries, rows: int | None = None) -> Entries:
        """Adds ``entries`` of ``stream`` or, given ``rows``, only the first of them up to the
        one that brings the insert to ``rows`` rows; returns the others."""
        counts = [self._family.events_in(fields) if fields else 0 for _, fields in entries]
        rest: Entries = []
        if rows is not None:
            taken = _taken(counts, rows - self.rows)
            entries, rest, counts = entries[:taken], entries[taken:], counts[:taken]
        if not entries:
            return rest
        if not self.size:
            self._started = time.monotonic()
        self.ids.setdefault(stream, []).extend(entry_id for entry_id, _ in entries)
        self.events.setdefault(stream, []).extend(counts)
        self.size += len(entries)
        self.rows += sum(counts)
        kept = [entry for entry in entries if entry[1]]
        self.vanished += len(entries) - len(kept)
        self._held.setdefault(stream, []).extend(kept)
        self._held_rows += sum(counts)
        if self._held_rows >= DECODE_ROWS:
            self._decode_held()
        return rest

    @property
    def age_ms(self) -> float:
        return (time.monotonic() - self._started) * 1000

    def columns(self) -> Columns:
        """The rows of every entry that decodes; ``{}`` when none does. The insert is complete:
        nothing may be added after."""
        if self._columns is None:
            self._decode_held()
            self._columns = _concatenated(self._parts)
            self._parts = []
            self.rows = len(self._columns["stream_ms"]) if self._columns else 0
        return self._columns

    def _decode_held(self) -> None:
        for stream, entries in self._held.items():
            if (columns := self._decode(stream, entries)) is not None:
                self._parts.append(columns)
        self._held, self._held_rows = {}, 0

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


def _taken(counts: list[int], room: int) -> int:
    """How many entries of ``counts`` events fit in ``room`` rows: up to the one that fills it."""
    if room <= 0:
        return 0
    return bisect.bisect_left(list(itertools.accumulate(counts)), room) + 1


def _concatenated(parts: list[Columns]) -> Columns:
    if len(parts) <= 1:
        return parts[0] if parts else {}
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
