"""The sink's draw family against real Redis and ClickHouse: draw entries as the draw script
writes them become rows of ``draws`` (``awards`` shows the won ones), a campaign added while the
sink runs is picked up, and every draw is stored once through a crash or a cut insert."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import redis

from ingest.events.scans import CONSUMER_GROUP
from ingest.sink.family import DRAWS, Entry
from ingest.sink.streams import STATS_KEY, dead_letter_key
from ingest.sink.table import DRAW_COLUMNS, DrawTable
from rewards.store import CAMPAIGNS_KEY, unsunk_key
from rewards.store import draw_stream as stream_key
from tests.draw_support import OUTCOME, PRIZES, Draw, add_draws, encode_entry, make_draws
from tests.sink_support import (
    Crash,
    CrashBeforeAck,
    HalfThenCut,
    in_thread,
    query,
    running_sink,
    sink_settings,
    sink_with,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]


def register(client: redis.Redis, *campaigns: str) -> None:
    client.sadd(CAMPAIGNS_KEY, *campaigns)


def unsunk(client: redis.Redis, *campaigns: str) -> int:
    return sum(int(client.get(unsunk_key(stream_key(c))) or 0) for c in campaigns)


def pending(client: redis.Redis, *campaigns: str) -> int:
    return sum(int(client.xpending(stream_key(c), CONSUMER_GROUP)["pending"]) for c in campaigns)


def stored(url: str) -> tuple[int, int]:
    """Rows in ``draws`` and distinct draws (campaign, seq) among them."""
    [(rows, distinct)] = query(url, "SELECT count(), uniqExact(campaign_id, seq) FROM draws")
    return int(rows), int(distinct)


def caught_up(client: redis.Redis, url: str, total: int, *campaigns: str) -> Callable[[], bool]:
    return lambda: unsunk(client, *campaigns) == 0 and stored(url)[0] == total


_SELECTED = ", ".join(
    {"date": "toString(date)", "time": "toUnixTimestamp(time)", "day": "toString(day)"}.get(c, c)
    for c in DRAW_COLUMNS
    if c != "stream_ms"
)


def _expected(draw: Draw) -> tuple[Any, ...]:
    request, prize = draw.request, PRIZES[draw.prize] if draw.prize >= 0 else None
    time_ms = request["time_ms"]
    return (
        datetime.fromtimestamp(time_ms / 1000, UTC).date().isoformat(),
        time_ms // 1000,
        time_ms,
        draw.campaign,
        request["day"],
        draw.seq,
        request["version"],
        request["scan_id"],
        request["member_id"],
        request["code"],
        request["serial"],
        request["tier"],
        request["risk"],
        request["draw_value"],
        int(prize is not None),
        prize["id"] if prize else "",
        prize["kind"] if prize else "",
        prize["value"] if prize else 0,
        draw.guaranteed,
        draw.available,
        draw.points_balance,
    )


def test_draws_become_rows_with_their_prizes_and_awards_shows_the_won(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    draws = make_draws("spring-26", 40) + make_draws("cap_hunt", 10, first_seq=500)
    register(streams, "spring-26", "cap_hunt", "not a campaign id!")
    add_draws(streams, draws)
    with running_sink(sink_settings(redis_url, database)):
        wait_until(caught_up(streams, database, 50, "spring-26", "cap_hunt"), 10, "the draws")

    rows = query(database, f"SELECT {_SELECTED} FROM draws ORDER BY campaign_id DESC, seq")
    assert rows == [_expected(draw) for draw in draws]
    assert query(database, "SELECT uniqExact(toYYYYMM(date)) FROM draws") == [(2,)]
    won = [(d.campaign, d.seq) for d in draws if d.prize >= 0]
    awards = "SELECT campaign_id, seq, won FROM awards ORDER BY campaign_id DESC, seq"
    assert query(database, awards) == [(*key, 1) for key in won]
    assert 0 < len(won) < len(draws)
    assert pending(streams, "spring-26", "cap_hunt") == 0
    assert streams.xlen(stream_key("spring-26")) == 0
    assert int(streams.hget(DRAWS.stats_key, "rows_total") or 0) == 50
    assert streams.hget(STATS_KEY, "rows_total") is None, "draws counted as scans"


def test_a_campaign_added_while_the_sink_runs_is_picked_up(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    register(streams, "first")
    add_draws(streams, make_draws("first", 5))
    with running_sink(sink_settings(redis_url, database)):
        wait_until(caught_up(streams, database, 5, "first"), 10, "the first campaign")
        add_draws(streams, make_draws("later", 4))  # drawn before the sink knows the campaign
        register(streams, "later")
        add_draws(streams, make_draws("later", 3, first_seq=5))
        wait_until(caught_up(streams, database, 12, "first", "later"), 10, "the later campaign")
    assert stored(database) == (12, 12)
    assert pending(streams, "first", "later") == 0


def test_a_crash_between_insert_and_ack_inserts_no_draw_twice(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    register(streams, "a", "b")
    add_draws(streams, make_draws("a", 30) + make_draws("b", 12), per_entry=4)
    # one insert of all 42 draws, however slow the machine
    settings = sink_settings(redis_url, database, sink_batch_rows=42, sink_flush_ms=60_000)
    with sink_with(settings, DRAWS, streams=CrashBeforeAck) as (sink, _), pytest.raises(Crash):
        sink.run()
    assert stored(database) == (42, 42)
    assert pending(streams, "a", "b") == 8 + 3

    with running_sink(settings):
        wait_until(lambda: unsunk(streams, "a", "b") == 0, 10, "the pending draws to be acked")
    assert stored(database) == (42, 42)
    assert pending(streams, "a", "b") == 0
    assert streams.hget(DRAWS.stats_key, "rows_total") is None, "the restarted sink inserted rows"


class _HalfThenCut(HalfThenCut, DrawTable):
    pass


def test_an_insert_cut_half_way_is_completed_not_repeated(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    register(streams, "a", "b")
    add_draws(streams, make_draws("a", 21) + make_draws("b", 20), per_entry=7)
    settings = sink_settings(redis_url, database, sink_batch_rows=41, sink_flush_ms=60_000)
    with sink_with(settings, DRAWS, table=_HalfThenCut) as (sink, stop), in_thread(sink.run, stop):
        wait_until(lambda: unsunk(streams, "a", "b") == 0, 10, "the draws to be acknowledged")
    assert stored(database) == (41, 41)


def test_an_entry_that_is_not_draws_goes_to_the_dead_letter_stream(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    register(streams, "a")
    add_draws(streams, make_draws("a", 9))
    poison = encode_entry(make_draws("a", 2, first_seq=10))
    poison[b"o"] = poison[b"o"][: OUTCOME.size]  # two requests, one outcome
    poison_id = streams.xadd(stream_key("a"), poison)  # type: ignore[arg-type]
    streams.incrby(unsunk_key(stream_key("a")), 1)
    add_draws(streams, make_draws("a", 3, first_seq=12))
    with running_sink(sink_settings(redis_url, database)):
        wait_until(caught_up(streams, database, 12, "a"), 10, "the good draws")
    assert stored(database) == (12, 12)
    [(_, dead)] = cast(list[Entry], streams.xrange(dead_letter_key(stream_key("a"))))
    assert dead == {**poison, b"id": poison_id}
    assert pending(streams, "a") == 0
