-- Alerts an investigator acts on, written by `scanward alerts` (ingest/alerts.py) from the
-- scans of a recent window. One row per subject: a detection run writes every alert it finds
-- again with a newer `detected`, and ReplacingMergeTree keeps the newest (read with FINAL).
--   diversion_batch   a distributor's batch surfacing outside its territory: distributor_id,
--                     batch_id; share = out-of-territory scans / located scans
--   diversion_region  a distributor's goods surfacing in one place: distributor_id,
--                     surfaced_in (the territory they surfaced in, '' outside all); share = scans
--                     there / the distributor's located scans
--   cloned_code       a code scanned as a clone: code, batch_id, distributor_id
--   device_farm       a device flagged as a scan farm: device_id
CREATE TABLE IF NOT EXISTS fraud_alerts
(
    alert_id String,
    kind String,
    distributor_id String,
    batch_id String,
    surfaced_in String,
    code String,
    device_id String,
    scans UInt64,
    flagged UInt64,
    share Float64,
    first_seen DateTime,
    last_seen DateTime,
    detected DateTime,
    status String
)
ENGINE = ReplacingMergeTree(detected)
ORDER BY (kind, distributor_id, batch_id, surfaced_in, code, device_id);
