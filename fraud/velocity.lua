-- Counts what devices and client IPs do, for the device_farm and guessing rules, and blocks
-- guessers. One call per actor partition: every key shares the tag KEYS[1].
--
-- KEYS[1]  the partition's tag, '{actors:N}'
-- ARGV[1]  now, seconds   ARGV[2]  guessing window, s   ARGV[3]  block after this many invalid
-- codes from a device   ARGV[4]  ... from an IP   ARGV[5]  cool-down, s
-- ARGV[6]  observations, each '<BBI8c8' kind (1 device, 2 IP), invalid (1: the code failed
--          verification), serial (0: none), member digest (zeros: none), then the actor
--          framed by its length '<I2'
-- Reply: per observation '<I4I4I4I4': seconds it stays blocked (0: not blocked; nothing was
-- counted), distinct codes this hour, member ids today, invalid codes this window.
-- Windows are fixed (the hour, the UTC day, the guessing window), not sliding.
local OBSERVATION = '<BBI8c8I2'
local OBSERVATION_SIZE = struct.size(OBSERVATION)
local NO_MEMBER = string.rep('\0', 8)
local HOUR, DAY = 3600, 86400
local tag = KEYS[1]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local block_after = {tonumber(ARGV[3]), tonumber(ARGV[4])}
local cooldown = tonumber(ARGV[5])
local hour, day, slot = math.floor(now / HOUR), math.floor(now / DAY), math.floor(now / window)

local function distinct(key, value, ttl)
    if redis.call('PFADD', key, value) == 1 then redis.call('EXPIRE', key, ttl) end
    return redis.call('PFCOUNT', key)
end

local replies = {}
local packed, at = ARGV[6], 1
while at <= #packed do
    local kind, invalid, serial, member, length = struct.unpack(OBSERVATION, packed, at)
    local actor = string.sub(packed, at + OBSERVATION_SIZE, at + OBSERVATION_SIZE + length - 1)
    at = at + OBSERVATION_SIZE + length
    local base = tag .. (kind == 1 and ':dev:' or ':ip:') .. actor
    local blocked = redis.call('TTL', base .. ':blocked')
    if blocked > 0 then
        replies[#replies + 1] = struct.pack('<I4I4I4I4', blocked, 0, 0, 0)
    else
        local codes, members = 0, 0
        if kind == 1 and serial > 0 then
            codes = distinct(base .. ':codes:' .. hour, string.format('%d', serial), 2 * HOUR)
            if member ~= NO_MEMBER then
                members = distinct(base .. ':members:' .. day, member, 2 * DAY)
            end
        end
        local invalid_key = base .. ':invalid:' .. slot
        local invalid_count
        if invalid == 1 then
            invalid_count = redis.call('INCR', invalid_key)
            if invalid_count == 1 then redis.call('EXPIRE', invalid_key, 2 * window) end
            if invalid_count >= block_after[kind] then
                redis.call('SET', base .. ':blocked', 1, 'EX', cooldown)
            end
        else
            invalid_count = tonumber(redis.call('GET', invalid_key) or '0')
        end
        replies[#replies + 1] = struct.pack('<I4I4I4I4', 0, codes, members, invalid_count)
    end
end
return replies
