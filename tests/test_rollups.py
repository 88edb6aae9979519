"""The analysts' rollups (migration 0005): each equals the same aggregation of the raw table, and
a view that fails leaves no source row twice."""

from __future__ import annotations

import pytest
import redis

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
