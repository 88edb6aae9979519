-- One row per answered scan, written by the sink (ingest/sink.py) from the Redis streams.
-- (stream_partition, stream_ms, stream_seq) is the event's id in its stream: the sink looks it
-- up to write every event exactly once. Sorted for the analysts' questions: a day, a SKU, a
-- batch, a serial range.
CREATE TABLE IF NOT EXISTS scans
(
    date Date,
    time DateTime,
    time_ms UInt64,
    client_time_ms Int64,
    scan_id String,
    code String,
    serial UInt64,
    key_id UInt8,
    batch_id String,
    sku String,
    gtin String,
    verdict String,
    genuine UInt8,
    first_scan UInt8,
    scan_count UInt32,
    distinct_devices UInt16,
    flag_list String,
    flags Array(String) MATERIALIZED arrayFilter(x -> x != '', splitByChar(',', flag_list)),
    flag_details String,
    lat Float64,
    lon Float64,
    accuracy_m Float32,
    has_location UInt8,
    member_id String,
    device_id String,
    ip String,
    latency_us UInt32,
    stream_partition UInt8,
    stream_ms UInt64,
    stream_seq UInt64,
    stream_index UInt16
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (date, sku, batch_id, serial);
