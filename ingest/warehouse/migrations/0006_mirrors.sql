-- Batches, shipments and distributors as Redis holds them. The scripts that change them append
-- each changed record, as it now is, to a change stream ({codes}:changes, {ship}:changes,
-- {geo}:changes), and the sink moves the entries here exactly once (a row is known by its
-- stream entry: stream_ms, stream_seq). `scanward mirror` appends what Redis held before.
-- A record has a row per change until ClickHouse merges them: each table is a
-- ReplacingMergeTree on the record's key keeping the highest version, the entry's place in its
-- stream (stream_ms * 2^20 + stream_seq), which is the order in which Redis made the changes;
-- so SELECT ... FINAL reads every record once, as it is now. The tables hold thousands of rows,
-- not billions.

-- One row per order and per revocation of a batch.
CREATE TABLE IF NOT EXISTS batches
(
    batch_id String,
    sku String,
    gtin String,
    kind String,
    line_id String,
    key_id UInt8,
    first_serial UInt64,
    last_serial UInt64,
    quantity UInt64,
    created DateTime,
    created_ms UInt64,
    status String,
    revoked_ms UInt64,
    version UInt64,
    stream_ms UInt64,
    stream_seq UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (sku, batch_id);

-- One row per serial range shipped: a serial ships once, so a range's first serial is its key.
-- A case's range covers the case codes; what they hold is shipped too, in ranges of its own.
CREATE TABLE IF NOT EXISTS shipments
(
    date Date,
    time DateTime,
    time_ms UInt64,
    shipment_id String,
    distributor_id String,
    first_serial UInt64,
    last_serial UInt64,
    codes UInt64,
    range_index UInt32,
    version UInt64,
    stream_ms UInt64,
    stream_seq UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(date)
ORDER BY (distributor_id, first_serial);

-- One row per put of a distributor; territory is its GeoJSON geometry.
CREATE TABLE IF NOT EXISTS distributors
(
    distributor_id String,
    name String,
    territory String,
    updated DateTime,
    updated_ms UInt64,
    version UInt64,
    stream_ms UInt64,
    stream_seq UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY distributor_id;
