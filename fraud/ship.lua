-- Binds serial ranges, and every code aggregated under them, to a distributor: all or nothing.
--
-- KEYS[1]  shipped ranges, a sorted set: score = first serial, member = '<I8I8' first, last
--          followed by the distributor id (ranges never overlap, so the one that could hold a
--          serial is the last starting at or before it)
-- KEYS[2]  the shipment log, a list read by every worker to keep its index fresh
-- KEYS[3]  children of aggregated codes: hash parent serial -> '<I8' serials
-- KEYS[4]  the change stream the sink mirrors into ClickHouse ``shipments`` (field 'shipment':
--          the log line), KEYS[5] its unsunk count
-- ARGV[1]  distributor id   ARGV[2]  shipment id   ARGV[3]  now, ms
-- ARGV[4]  the ranges, each '<I8I8B': first, last, expand (1: ship what is aggregated under
--          each serial of the range, for cases and pallets)
-- Reply: the number of serials shipped, or an error 'SHIP_OVERLAP <serial> <distributor>' /
-- 'SHIP_DUPLICATE <serial>' naming the first serial that cannot be shipped.
local RANGE = '<I8I8B'
local RANGE_SIZE = struct.size(RANGE)
local ranges_key, log_key, children_key, changes_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local distributor, shipment_id, now = ARGV[1], ARGV[2], ARGV[3]

local ranges = {}
local function add_children(serial)
    local pending = {serial}
    while #pending > 0 do
        local children = redis.call('HGET', children_key, string.format('%d', table.remove(pending)))
        if children then
            for at = 1, #children, 8 do
                local child = struct.unpack('<I8', children, at)
                ranges[#ranges + 1] = {child, child}
                pending[#pending + 1] = child
            end
        end
    end
end

local packed = ARGV[4]
for at = 1, #packed, RANGE_SIZE do
    local first, last, expand = struct.unpack(RANGE, packed, at)
    ranges[#ranges + 1] = {first, last}
    if expand == 1 then
        for serial = first, last do add_children(serial) end
    end
end
table.sort(ranges, function(a, b) return a[1] < b[1] end)

local merged = {}
for _, range in ipairs(ranges) do
    local previous = merged[#merged]
    if previous and range[1] <= previous[2] then
        return redis.error_reply(string.format('SHIP_DUPLICATE %d', range[1]))
    end
    if previous and range[1] == previous[2] + 1 then
        previous[2] = range[2]
    else
        merged[#merged + 1] = {range[1], range[2]}
    end
end

local shipped = 0
for _, range in ipairs(merged) do
    local before = redis.call('ZREVRANGEBYSCORE', ranges_key, range[2], '-inf', 'LIMIT', 0, 1)[1]
    if before then
        local first, last, at = struct.unpack('<I8I8', before)
        if last >= range[1] then
            local overlap = math.max(first, range[1])
            return redis.error_reply(
                string.format('SHIP_OVERLAP %d %s', overlap, string.sub(before, at)))
        end
    end
    shipped = shipped + range[2] - range[1] + 1
end

local text = {}
for _, range in ipairs(merged) do
    redis.call('ZADD', ranges_key, range[1], struct.pack('<I8I8', range[1], range[2]) .. distributor)
    text[#text + 1] = string.format('%d-%d', range[1], range[2])
end
local line = table.concat({shipment_id, distributor, now, table.concat(text, ',')}, '\n')
redis.call('RPUSH', log_key, line)
redis.call('XADD', changes_key, '*', 'shipment', line)
redis.call('INCR', KEYS[5])
return shipped
