-- One row per prize draw, won or lost, written by the sink (ingest/sink.py) from the campaigns'
-- draw streams: the audit log of the provably fair draws. With the campaign's config of
-- `config_version` and the day's seed, `draw_value` and `available` let an auditor recompute
-- each outcome.
--   date, time, time_ms   when the draw was made (UTC); `day` the campaign's local day
--   seq                   the draw's number in its campaign: (campaign_id, seq) identifies a
--                         draw, and the sink looks it up to write every draw exactly once
--   tier, risk            the member's loyalty tier and the scan's fraud risk level (0-4)
--   won, prize_*          the prize drawn (won = 0, '' and 0 when none); prize_kind is cash,
--                         points or item, prize_value its amount (cents of cash, points)
--   guaranteed            1 when the guaranteed-daily rule gave the prize
--   available             the prizes this draw could win: bit i for the i-th prize of the
--                         campaign's version `config_version` (bitTest(available, i))
--   points_balance        the member's points in the campaign after the draw (0 unless a
--                         points prize was won)
--   stream_ms             when the draw entered its stream (the sink's lag)
-- The scan's SKU, batch and place are in `scans` (same scan_id); `serial` locates the batch.
CREATE TABLE IF NOT EXISTS draws
(
    date Date,
    time DateTime,
    time_ms UInt64,
    campaign_id String,
    day Date,
    seq UInt64,
    config_version UInt32,
    scan_id String,
    member_id String,
    code String,
    serial UInt64,
    tier UInt8,
    risk UInt8,
    draw_value UInt64,
    won UInt8,
    prize_id String,
    prize_kind String,
    prize_value Int64,
    guaranteed UInt8,
    available UInt32,
    points_balance Int64,
    stream_ms UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (campaign_id, day, seq);

-- The awards and points ledger: the draws that won a prize. A plain view (nothing stored twice,
-- nothing that can fail an insert into draws); its columns are named so that a column added to
-- draws later does not change it.
CREATE VIEW IF NOT EXISTS awards AS
SELECT
    date, time, time_ms, campaign_id, day, seq, config_version, scan_id, member_id, code,
    serial, tier, risk, draw_value, won, prize_id, prize_kind, prize_value,
    guaranteed, available, points_balance, stream_ms
FROM draws
WHERE won = 1;
