-- Counts what devices and client IPs do, for the device_farm and guessing rules, and blocks
-- guessers. One call per actor partition: every key shares the tag KEYS[1].
--
-- An actor is one small hash, '<tag>:dev:<device id>' or '<tag>:ip:<address>', read with one
-- HMGET and written with one HSET when something changed:
--   b  blocked until, epoch seconds
--   i  '<I4I4' guessing window number, invalid codes in it
--   c  '<I4' hour number, then the distinct serials scanned this hour, '<I8' each
--   m  '<I4' day number, then the distinct member digests used today, 8 bytes each
-- Distinct codes and members are kept up to one past their limit: the rules only ask "more than
-- the limit?", and a farm's hash stays a few hundred bytes however hard it scans. Windows are
-- fixed (the hour, the UTC day, the guessing window), not sliding.
--
-- KEYS[1]  the actors' hash tag, e.g. '{actors:N.S}'
-- ARGV[1]  now, seconds   ARGV[2]  guessing window, s   ARGV[3]  block after this many invalid
-- codes from a device   ARGV[4]  ... from an IP   ARGV[5]  cool-down, s   ARGV[6]  codes per
-- hour limit   ARGV[7]  members per day limit   ARGV[8]  how long an idle actor is kept, s
-- ARGV[9]  observations, each '<BBI8c8I2' kind (1 device, 2 IP), invalid (1: the code failed
--          verification), serial (0: none), member digest (zeros: none), then the actor
--          framed by that length
-- Reply: per observation '<I4I4I4I4': seconds it stays blocked (0: not blocked; nothing was
-- counted), distinct codes this hour, member ids today, invalid codes this window.
local OBSERVATION = '<BBI8c8I2'
local OBSERVATION_SIZE = struct.size(OBSERVATION)
local NO_MEMBER = string.rep('\0', 8)
local tag = KEYS[1]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local block_after = {tonumber(ARGV[3]), tonumber(ARGV[4])}
local cooldown = tonumber(ARGV[5])
local codes_kept, members_kept = tonumber(ARGV[6]) + 1, tonumber(ARGV[7]) + 1
local keep = tonumber(ARGV[8])
local hour, day, slot = math.floor(now / 3600), math.floor(now / 86400), math.floor(now / window)

-- the distinct 8-byte values of a field for this period, with value added if new and room left;
-- a field of an earlier period starts over
local function distinct(field, period, value, limit)
    local kept = ''
    if field and struct.unpack('<I4', field) == period then kept = string.sub(field, 5) end
    for at = 1, #kept, 8 do
        if string.sub(kept, at, at + 7) == value then return #kept / 8, nil end
    end
    if #kept / 8 >= limit then return #kept / 8, nil end
    kept = kept .. value
    return #kept / 8, struct.pack('<I4', period) .. kept
end

local function set(changes, name, value)
    changes[#changes + 1] = name
    changes[#changes + 1] = value
end

local replies = {}
local packed, at = ARGV[9], 1
while at <= #packed do
    local kind, invalid, serial, member, length = struct.unpack(OBSERVATION, packed, at)
    local actor = string.sub(packed, at + OBSERVATION_SIZE, at + OBSERVATION_SIZE + length - 1)
    at = at + OBSERVATION_SIZE + length
    local key = tag .. (kind == 1 and ':dev:' or ':ip:') .. actor
    local state = redis.call('HMGET', key, 'b', 'i', 'c', 'm')
    local blocked_until = tonumber(state[1] or '0')
    if blocked_until > now then
        replies[#replies + 1] = struct.pack('<I4I4I4I4', blocked_until - now, 0, 0, 0)
    else
        local changes = {}
        local invalid_count = 0
        if state[2] then
            local counted_slot, count = struct.unpack('<I4I4', state[2])
            if counted_slot == slot then invalid_count = count end
        end
        if invalid == 1 then
            invalid_count = invalid_count + 1
            set(changes, 'i', struct.pack('<I4I4', slot, invalid_count))
            if invalid_count >= block_after[kind] then
                set(changes, 'b', now + cooldown)
            end
        end
        local codes, members, field = 0, 0, nil
        if kind == 1 and serial > 0 then
            codes, field = distinct(state[3], hour, struct.pack('<I8', serial), codes_kept)
            if field then set(changes, 'c', field) end
            if member ~= NO_MEMBER then
                members, field = distinct(state[4], day, member, members_kept)
                if field then set(changes, 'm', field) end
            end
        end
        if #changes > 0 then
            redis.call('HSET', key, unpack(changes))
            redis.call('EXPIRE', key, keep)
        end
        replies[#replies + 1] = struct.pack('<I4I4I4I4', 0, codes, members, invalid_count)
    end
end
return replies
