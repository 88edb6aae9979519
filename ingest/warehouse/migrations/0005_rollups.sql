-- Rollups for the analysts' dashboards (docs: README, Analytics), each a materialized view
-- into a table of its own (TO ...), so that the table can be queried, backfilled and dropped
-- like any other. Summing tables are summed again when parts merge: read them with sum() and
-- GROUP BY, never row by row. The views see the rows inserted after they were made.
-- Kept to what ClickHouse 18.16 and current versions both accept; every column of a view is a
-- plain type (no LowCardinality reaches a rollup).

-- Scans by hour, SKU, batch, shipped-to distributor and verdict.
CREATE TABLE IF NOT EXISTS scans_hourly
(
    date Date,
    hour DateTime,
    sku String,
    batch_id String,
    distributor_id String,
    verdict String,
    scans UInt64,
    first_scans UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (date, hour, sku, distributor_id, verdict, batch_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS scans_hourly_view TO scans_hourly AS
SELECT
    date, toStartOfHour(time) AS hour, sku, batch_id, distributor_id, verdict,
    count() AS scans, sum(toUInt64(first_scan)) AS first_scans
FROM scans
GROUP BY date, hour, sku, batch_id, distributor_id, verdict;

-- Distinct consumers (members) and phones (devices) a day, by SKU: uniqIf states (scans without
-- a member or a device do not count as one), merged when read with uniqIfMerge. The states are
-- typed uniqIf, not uniq: 18.16 does not convert one into the other, and the insert would fail.
CREATE TABLE IF NOT EXISTS scanners_daily
(
    date Date,
    sku String,
    members AggregateFunction(uniqIf, String, UInt8),
    devices AggregateFunction(uniqIf, String, UInt8)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (date, sku);

CREATE MATERIALIZED VIEW IF NOT EXISTS scanners_daily_view TO scanners_daily AS
SELECT
    date, sku,
    uniqIfState(member_id, member_id != '') AS members,
    uniqIfState(device_id, device_id != '') AS devices
FROM scans
GROUP BY date, sku;

-- The diversion matrix: scans of codes shipped to a distributor, by the territory they
-- surfaced in ('' when in none), a day. `outside` counts those outside the shipped-to
-- territory by any distance.
CREATE TABLE IF NOT EXISTS diversion_daily
(
    date Date,
    distributor_id String,
    surfaced_in String,
    sku String,
    scans UInt64,
    outside UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (date, distributor_id, surfaced_in, sku);

CREATE MATERIALIZED VIEW IF NOT EXISTS diversion_daily_view TO diversion_daily AS
SELECT
    date, distributor_id, surfaced_in, sku,
    count() AS scans, sum(toUInt64(distance_km > 0)) AS outside
FROM scans
WHERE distributor_id != '' AND has_location = 1
GROUP BY date, distributor_id, surfaced_in, sku;

-- Counterfeit scans a day by grid cell of 0.1 degree (about 11 km): cell_lat = floor(lat * 10),
-- so the cell spans cell_lat / 10 to (cell_lat + 1) / 10 degrees.
CREATE TABLE IF NOT EXISTS counterfeits_daily
(
    date Date,
    cell_lat Int16,
    cell_lon Int16,
    scans UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (date, cell_lat, cell_lon);

CREATE MATERIALIZED VIEW IF NOT EXISTS counterfeits_daily_view TO counterfeits_daily AS
SELECT
    date,
    toInt16(floor(lat * 10)) AS cell_lat,
    toInt16(floor(lon * 10)) AS cell_lon,
    count() AS scans
FROM scans
WHERE verdict = 'counterfeit' AND has_location = 1
GROUP BY date, cell_lat, cell_lon;

-- Prizes awarded and their value a day, by campaign, prize and the winner's tier (value in the
-- prize's unit: cents for cash, points for points, items for items).
CREATE TABLE IF NOT EXISTS awards_daily
(
    date Date,
    campaign_id String,
    prize_id String,
    prize_kind String,
    tier UInt8,
    awards UInt64,
    value Int64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (date, campaign_id, prize_id, tier, prize_kind);

CREATE MATERIALIZED VIEW IF NOT EXISTS awards_daily_view TO awards_daily AS
SELECT
    date, campaign_id, prize_id, prize_kind, tier,
    count() AS awards, sum(prize_value) AS value
FROM draws
WHERE won = 1
GROUP BY date, campaign_id, prize_id, prize_kind, tier;
