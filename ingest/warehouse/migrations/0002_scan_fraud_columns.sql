-- What the fraud rules decided on, as columns analysts filter by: the risk level (0-4), the
-- distributor the code was shipped to, the distributor whose territory the scan lies in, and
-- how far outside the shipped-to territory it lies (0 inside, nan when not measured).
-- One statement (ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS): it changes all or nothing.
ALTER TABLE scans
    ADD COLUMN distance_km Float32 AFTER latency_us,
    ADD COLUMN surfaced_in String AFTER latency_us,
    ADD COLUMN distributor_id String AFTER latency_us,
    ADD COLUMN risk UInt8 AFTER latency_us;
