"""The analysts' rollups (migration 0005): each equals the same aggregation of the raw table, a
view that fails leaves no source row twice, and rebuilding days puts their rollups right."""

from __future__ import annotations

from datetime import date

import pytest
import redis

from ingest.warehouse import rollups
from ingest.warehouse.topology import Topology
from tests.analytics_support import load_analytics_data
from tests.sink_support import (
    add_events,
    backlog,
    make_events,
    query,
    running_sink,
    sink_settings,
    stored,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
NO_SERVER = "clickhouse://127.0.0.1:1/default"
"""A URL nothing answers: checks that come before any query."""


@pytest.fixture
def sunk(streams: redis.Redis, redis_url: str, database: str) -> str:
    load_analytics_data(streams, redis_url, database)
    return database


# (rollup query, the same figures from the raw table): rows compared sorted
ROLLUPS = {
    "scans_hourly": (
        # hours as numbers: the driver gives a column's DateTime and an expression's different
        # time zone objects
        "SELECT date, toUInt32(hour) AS h, sku, batch_id, distributor_id, verdict, sum(scans),"
        " sum(first_scans) FROM scans_hourly GROUP BY date, h, sku, batch_id, distributor_id,"
        " verdict",
        "SELECT date, toUInt32(toStartOfHour(time)) AS h, sku, batch_id, distributor_id, verdict,"
        " count(), sum(first_scan) FROM scans"
        " GROUP BY date, h, sku, batch_id, distributor_id, verdict",
    ),
    "scanners_daily": (
        "SELECT date, sku, uniqIfMerge(members), uniqIfMerge(devices) FROM scanners_daily"
        " GROUP BY date, sku",
        "SELECT date, sku, uniqIf(member_id, member_id != ''), uniqIf(device_id, device_id != '')"
        " FROM scans GROUP BY date, sku",
    ),
    "diversion_daily": (
        "SELECT date, distributor_id, surfaced_in, sku, sum(scans), sum(outside)"
        " FROM diversion_daily GROUP BY date, distributor_id, surfaced_in, sku",
        "SELECT date, distributor_id, surfaced_in, sku, count(), countIf(distance_km > 0)"
        " FROM scans WHERE distributor_id != '' AND has_location = 1"
        " GROUP BY date, distributor_id, surfaced_in, sku",
    ),
    "counterfeits_daily": (
        "SELECT date, cell_lat, cell_lon, sum(scans) FROM counterfeits_daily"
        " GROUP BY date, cell_lat, cell_lon",
        "SELECT date, toInt16(floor(lat * 10)) AS cell_lat, toInt16(floor(lon * 10)) AS cell_lon,"
        " count() FROM scans WHERE verdict = 'counterfeit' AND has_location = 1"
        " GROUP BY date, cell_lat, cell_lon",
    ),
    "awards_daily": (
        "SELECT date, campaign_id, prize_id, prize_kind, tier, sum(awards), sum(value)"
        " FROM awards_daily GROUP BY date, campaign_id, prize_id, prize_kind, tier",
        "SELECT date, campaign_id, prize_id, prize_kind, tier, count(), sum(prize_value)"
        " FROM awards GROUP BY date, campaign_id, prize_id, prize_kind, tier",
    ),
}


@pytest.mark.parametrize("rollup", sorted(ROLLUPS))
def test_a_rollup_equals_the_same_aggregation_of_the_raw_table(sunk: str, rollup: str) -> None:
    from_rollup, from_raw = ROLLUPS[rollup]
    rows = sorted(query(sunk, from_rollup))
    assert rows == sorted(query(sunk, from_raw))
    assert len(rows) > 3, "the data set gives the rollup several groups"


def test_the_data_set_reaches_every_rollup(sunk: str) -> None:
    [(counterfeits, outside, awards)] = query(
        sunk,
        "SELECT (SELECT sum(scans) FROM counterfeits_daily),"
        " (SELECT sum(outside) FROM diversion_daily), (SELECT sum(awards) FROM awards_daily)",
    )
    assert counterfeits > 100
    assert outside > 100
    assert awards == 200


def test_a_failing_view_leaves_no_source_row_twice(
    streams: redis.Redis, redis_url: str, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    # every insert into scans now fails in this view, after the rows are in scans
    query(
        database,
        "CREATE MATERIALIZED VIEW failing ENGINE = Memory AS SELECT toUInt8(code) AS n FROM scans",
    )
    add_events(streams, make_events(300))
    settings = sink_settings(redis_url, database, sink_batch_rows=100)
    with running_sink(settings):
        wait_until(lambda: backlog(streams) == 0, 30, "the sink to get past the failing view")
    assert stored(database) == (300, 300)
    assert "clickhouse insert failed; retrying" in caplog.messages  # the view did fail


def rollups_differing_from_raw(database: str) -> list[str]:
    """The rollups whose figures differ from the same aggregation of the raw tables."""
    return [
        rollup
        for rollup, (from_rollup, from_raw) in ROLLUPS.items()
        if sorted(query(database, from_rollup)) != sorted(query(database, from_raw))
    ]


def test_rebuilding_days_puts_their_rollups_right_and_leaves_other_days(sunk: str) -> None:
    # rollups gone wrong as a view failing half-way leaves them: rows missing, rows extra
    query(sunk, "ALTER TABLE scans_hourly DELETE WHERE sku = 'COLA-330'")
    query(sunk, "ALTER TABLE awards_daily DELETE WHERE tier = 1")
    query(
        sunk,
        "INSERT INTO diversion_daily SELECT date, distributor_id, surfaced_in, sku, scans, outside"
        " FROM diversion_daily",
    )
    wait_until(lambda: not _unfinished_mutations(sunk), 30, "the deletions")
    assert rollups_differing_from_raw(sunk) == ["scans_hourly", "diversion_daily", "awards_daily"]

    rows = rollups.rebuild(Topology.parse(sunk), date(2026, 2, 1), date(2026, 2, 2))
    assert rows["scans_hourly"] > 0
    assert rows["awards_daily"] > 0
    # only 2026-02-01 was rebuilt: 2026-01-31 and the draws of 02-02 and 02-03 still differ
    assert rollups_differing_from_raw(sunk) == ["scans_hourly", "diversion_daily", "awards_daily"]
    rollups.rebuild(Topology.parse(sunk), date(2026, 1, 1), date(2026, 3, 1))
    assert rollups_differing_from_raw(sunk) == []


def test_rebuilding_after_a_failed_view_makes_every_rollup_whole(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    query(
        database,
        "CREATE MATERIALIZED VIEW failing ENGINE = Memory AS SELECT toUInt8(code) AS n FROM scans",
    )
    add_events(streams, make_events(300))
    with running_sink(sink_settings(redis_url, database, sink_batch_rows=100)):
        wait_until(lambda: backlog(streams) == 0, 30, "the sink to get past the failing view")
    query(database, "DROP TABLE failing")
    rollups.rebuild(Topology.parse(database), date(2026, 1, 1), date(2026, 3, 1))
    assert rollups_differing_from_raw(database) == []


def _unfinished_mutations(database: str) -> int:
    [(count,)] = query(
        database,
        "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0",
    )
    return int(count)


@pytest.mark.parametrize(
    ("since", "until", "error"),
    [
        (date(2026, 2, 2), date(2026, 2, 2), "--until must be after --since"),
        (date(2026, 2, 1), date(2026, 2, 3), r"only days before today \(2026-02-02, UTC\)"),
    ],
)
def test_days_the_sink_may_still_write_are_not_rebuilt(
    since: date, until: date, error: str
) -> None:
    with pytest.raises(rollups.RollupError, match=error):
        rollups.rebuild(Topology.parse(NO_SERVER), since, until, today=date(2026, 2, 2))


def test_the_rollups_are_read_from_the_migrations() -> None:
    found = {rollup.table: rollup.source for rollup in rollups.rollups()}
    assert found == {**dict.fromkeys(ROLLUPS, "scans"), "awards_daily": "draws"}


def test_a_failed_rebuild_says_which_rollup_failed_and_what_to_do(database: str) -> None:
    query(database, "DROP TABLE diversion_daily")
    with pytest.raises(rollups.RollupError) as failed:
        rollups.rebuild(Topology.parse(database), date(2026, 1, 1), date(2026, 1, 2))
    message = str(failed.value)
    assert message.startswith("rebuilding diversion_daily failed (Code: 60.")
    assert message.endswith("run again (rebuilt: scans_hourly, scanners_daily)")
