-- Decides a micro-batch of scans of one partition and appends their events, atomically.
--
-- KEYS[1]  the partition's event stream, "{scans:N}:events"
-- KEYS[2]  the partition's count of events not yet in ClickHouse, "{scans:N}:unsunk"
--          (every other key is built here with the same hash tag)
-- ARGV[1]  the most unsunk events the partition may hold; past it nothing is changed
-- ARGV[2]  seconds a retry key is remembered
-- ARGV[3]  the scans back to back, each: the packed scan (SCAN), the byte length of its
--          retry key ('<I2', 0 without a client scan_id) and the key, then the event framed by
--          its length ('<I4');
--          one argument rather than three per scan: the client's cost is per argument
--
-- The new events are appended as one stream entry (see ingest/scan_events.py).
-- Reply: one string per scan, "N" (new) or "R" (a retry, nothing changed) followed by STATE.
local SCAN = '<BI8I8i4i4c4c8'            -- has_code, serial, now_ms, lat, lon, device, member
-- A code's record and the rule record_scan applies to it are defined in fraud/scan_record.py;
-- tests/test_scan_record.py holds this script to them.
local RECORD = '<I6I6i4i4i4i4I4I2c8'     -- first/last ms, first/last lat+lon, count,
                                         -- distinct devices, first member; then device hashes
local STATE = '<BI4I2'                   -- first scan?, scan count, distinct devices
local SCAN_SIZE = struct.size(SCAN)
local DEVICE_SIZE, MAX_DEVICES = 4, 4
local NO_DEVICE = string.rep('\0', DEVICE_SIZE)
-- 65,472 bits make an 8,184-byte bitmap: with its header it fills exactly one 8 KiB allocation
local SEEN_RANGE, RECORD_BUCKET = 65472, 128
-- built only when a bitmap is created: 8 KiB per call otherwise cost more than the call's work
local function empty_bitmap() return string.rep('\0', SEEN_RANGE / 8) end

local stream = KEYS[1]
local tag = string.sub(stream, 1, string.find(stream, '}', 1, true))

local function known_device(devices, device)
    for at = 1, #devices, DEVICE_SIZE do
        if string.sub(devices, at, at + DEVICE_SIZE - 1) == device then return true end
    end
    return false
end

local bitmaps_known = {}  -- bitmaps this call has seen exist, to ask Redis once per call

local function record_scan(serial, now, lat, lon, device, member)
    local seen_key = tag .. ':seen:' .. math.floor(serial / SEEN_RANGE)
    if not bitmaps_known[seen_key] then
        -- created at full size: growing by SETBIT would over-allocate up to twice the length
        if redis.call('EXISTS', seen_key) == 0 then redis.call('SET', seen_key, empty_bitmap()) end
        bitmaps_known[seen_key] = true
    end
    local was_seen = redis.call('SETBIT', seen_key, serial % SEEN_RANGE, 1)
    local record_key = tag .. ':rec:' .. math.floor(serial / RECORD_BUCKET)
    local field = tostring(serial % RECORD_BUCKET)
    local record = redis.call('HGET', record_key, field)
    local first_ms, first_lat, first_lon, count, distinct, first_member, devices, _
    if record then
        local at
        first_ms, _, first_lat, first_lon, _, _, count, distinct, first_member, at =
            struct.unpack(RECORD, record)
        devices = string.sub(record, at)
        count = count + 1
        if device ~= NO_DEVICE and not known_device(devices, device) then
            if #devices < DEVICE_SIZE * MAX_DEVICES then
                devices = devices .. device
                distinct = distinct + 1
            else
                -- counted exactly up to MAX_DEVICES; then "more" (without the slots a device
                -- coming back could not be told from a new one)
                distinct = MAX_DEVICES + 1
            end
        end
    else
        first_ms, first_lat, first_lon, count, first_member = now, lat, lon, 1, member
        if device == NO_DEVICE then distinct, devices = 0, '' else distinct, devices = 1, device end
    end
    redis.call('HSET', record_key, field, struct.pack(RECORD, first_ms, now, first_lat, first_lon,
        lat, lon, count, distinct, first_member) .. devices)
    return struct.pack(STATE, was_seen == 0 and 1 or 0, count, distinct)
end

local unsunk_key = KEYS[2]
if tonumber(redis.call('GET', unsunk_key) or '0') >= tonumber(ARGV[1]) then
    if redis.call('XLEN', stream) > 0 then
        return redis.error_reply('STREAM_FULL the unsunk event backlog is at its bound')
    end
    redis.call('DEL', unsunk_key)  -- an emptied stream holds nothing unsunk, whatever was counted
end
local ttl = tonumber(ARGV[2])
local replies, events, states = {}, {}, {}
local scans, at = ARGV[3], 1
while at <= #scans do
    local scan = string.sub(scans, at, at + SCAN_SIZE - 1)
    local id_length = struct.unpack('<I2', scans, at + SCAN_SIZE)
    local retry_key = string.sub(scans, at + SCAN_SIZE + 2, at + SCAN_SIZE + 1 + id_length)
    local event_at = at + SCAN_SIZE + 2 + id_length
    local event_length = struct.unpack('<I4', scans, event_at)
    local event = string.sub(scans, event_at, event_at + 3 + event_length)
    at = event_at + 4 + event_length
    local id_key = retry_key ~= '' and (tag .. ':sid:' .. retry_key) or nil
    local stored = id_key and redis.call('GET', id_key)
    if stored then
        replies[#replies + 1] = 'R' .. stored
    else
        local has_code, serial, now, lat, lon, device, member = struct.unpack(SCAN, scan)
        local state = struct.pack(STATE, 0, 0, 0)
        if has_code == 1 then state = record_scan(serial, now, lat, lon, device, member) end
        if id_key then redis.call('SET', id_key, state, 'EX', ttl) end
        events[#events + 1], states[#states + 1] = event, state
        replies[#replies + 1] = 'N' .. state
    end
end
if #events > 0 then
    redis.call('XADD', stream, '*', 'e', table.concat(events), 's', table.concat(states))
    redis.call('INCRBY', unsunk_key, #events)
end
return replies
