-- Reads the packed records (see scan_state.lua) of a partition's codes, for the fraud rules.
-- KEYS[1]  the partition's event stream, "{scans:N}:events" (for its tag)
-- ARGV[1]  serials, '<I8' each
-- Reply: per serial its record, or '' for a code never scanned.
local RECORD_BUCKET = 128
local stream = KEYS[1]
local tag = string.sub(stream, 1, string.find(stream, '}', 1, true))
local serials, replies = ARGV[1], {}
for at = 1, #serials, 8 do
    local serial = struct.unpack('<I8', serials, at)
    local record_key = tag .. ':rec:' .. math.floor(serial / RECORD_BUCKET)
    replies[#replies + 1] = redis.call('HGET', record_key, tostring(serial % RECORD_BUCKET)) or ''
end
return replies
