"""Draw entries as the sink decodes them, without servers: what it refuses (the entry then goes
to the dead-letter stream) rather than store wrongly."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from ingest.events.draws import campaign_of, decode_columns, draws_in
from rewards.campaigns import is_campaign_id
from rewards.store import draw_stream as stream_key
from tests.draw_support import OUTCOME, PRIZES, encode_entry, make_draws

Fields = dict[bytes, bytes]


def _entry() -> Fields:
    return encode_entry(make_draws("c", 2))


def _with_request(change: Callable[[dict[str, object]], object]) -> Fields:
    draws = make_draws("c", 2)
    change(draws[1].request)
    return encode_entry(draws)


def _with_outcome(prize: int, mask: int) -> Fields:
    fields = _entry()
    fields[b"o"] = fields[b"o"][: OUTCOME.size] + OUTCOME.pack(9, prize, 0, mask, 0)
    return fields


def _replaced(field: bytes, value: bytes) -> Fields:
    return {**_entry(), field: value}


def test_an_entry_decodes_into_one_row_per_draw() -> None:
    columns = decode_columns("c", [(b"1769860800000-3", _entry())])
    assert columns["seq"].tolist() == [1, 2]
    assert columns["campaign_id"].tolist() == ["c", "c"]
    assert columns["prize_id"].tolist() == ["cash-5", "points-100"]
    assert columns["available"].tolist() == [5, 2]
    assert columns["stream_ms"].tolist() == [1769860800000] * 2
    assert draws_in(_entry()) == 2


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(_replaced(b"o", _entry()[b"o"][: OUTCOME.size]), id="fewer outcomes"),
        pytest.param(_replaced(b"o", _entry()[b"o"][:-1]), id="a cut outcome"),
        pytest.param(_replaced(b"r", _entry()[b"r"][:-1]), id="a cut request"),
        pytest.param(_replaced(b"r", struct.pack("<I", 2) + b"[]"), id="shorter than a request"),
        pytest.param(_replaced(b"p", b'[{"id": "x", "kind": "voucher", "value": 1}]'), id="kind"),
        pytest.param(_replaced(b"p", b'{"id": "x"}'), id="prizes not a list"),
        pytest.param(_with_outcome(len(PRIZES), 0), id="a prize index past the prizes"),
        pytest.param(_with_outcome(-2, 0), id="a negative prize index"),
        pytest.param(_with_outcome(0, 1 << len(PRIZES)), id="a mask bit past the prizes"),
        pytest.param(_with_request(lambda r: r.update(code="A\x1fB")), id="a string too many"),
        pytest.param(_replaced(b"r", struct.pack("<I", 33) + bytes(32) + b"\xff"), id="not UTF-8"),
        pytest.param({b"r": _entry()[b"r"], b"o": _entry()[b"o"]}, id="no prizes"),
        pytest.param(_replaced(b"p", b"\xff"), id="prizes not JSON"),
    ],
)
def test_an_entry_not_of_the_layout_is_refused(fields: Fields) -> None:
    with pytest.raises((ValueError, KeyError)):
        decode_columns("c", [(b"1-0", fields)])
    assert decode_columns("c", [(b"1-0", _entry())])["seq"].tolist() == [1, 2]


def test_campaign_ids_and_their_streams() -> None:
    assert campaign_of(stream_key("spring_26-A")) == "spring_26-A"
    assert is_campaign_id("a" * 64)
    for text in ("", "a" * 65, "a b", "a}", "é"):
        assert not is_campaign_id(text)
    with pytest.raises(ValueError, match="draw stream"):
        campaign_of("{scans:0}:events")
