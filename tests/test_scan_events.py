"""Scan events as the sink decodes them, without servers."""

from __future__ import annotations

import pytest

from ingest.events.scans import EVENT_FIELD, STATE, STATE_FIELD, decode_columns
from tests.sink_support import make_events


def test_an_event_of_another_layout_is_refused_not_inserted_misaligned() -> None:
    [event] = make_events(1)
    encoded = event.encode()
    older = encoded.rsplit(b"\x1f", 2)[0]  # as a writer without the two newest fields wrote it
    older = len(older[4:]).to_bytes(4, "little") + older[4:]
    entry = (b"1-0", {EVENT_FIELD: older, STATE_FIELD: bytes(STATE.itemsize)})
    with pytest.raises(ValueError, match="string fields"):
        decode_columns(0, [entry])
    current = (b"1-0", {EVENT_FIELD: encoded, STATE_FIELD: bytes(STATE.itemsize)})
    assert decode_columns(0, [current])["scan_id"].tolist() == [event.scan_id]
