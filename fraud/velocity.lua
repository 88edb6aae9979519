-- Counts what devices and client addresses do, for the device_farm, address_farm and guessing
-- rules, and refuses guessers and addresses past their daily ceiling. One call per actor
-- partition: every key shares the tag KEYS[1].
--
-- An actor is one small hash, '<tag>:dev:<device id>' or '<tag>:ip:<address>', read with one
-- HMGET and written with one HSET when something changed, kept ARGV[8] s after its last change:
--   b  blocked for guessing until, epoch seconds
--   i  '<I4I4I4' guessing window number, invalid codes in it, invalid codes in the one before:
--      the window slides, the one before weighted by the share of it still within the window
--   c  (device) '<I4' hour number, then the distinct serials scanned this hour, '<I8' each
--   m  (device) '<I4' day number, then the distinct member digests used today, 8 bytes each
--   d  (address) '<I4I4I4I4' UTC day number, scans today (valid or not), valid scans, valid
--      scans without a device
--   e  (address) '<I4' day number, then the distinct devices with a valid scan today, 4 bytes
-- Distinct codes, members and devices are kept up to one past their limit (devices up to 256):
-- the rules only ask "more than the limit?", so every hash stays small however hard it is used.
--
-- KEYS[1]  the actors' hash tag, e.g. '{actors:N.S}'
-- ARGV[1]  now, seconds   ARGV[2]  guessing window, s   ARGV[3]  block after this many invalid
-- codes from a device   ARGV[4]  ... from an address   ARGV[5]  cool-down, s   ARGV[6]  codes per
-- hour limit   ARGV[7]  members per day limit   ARGV[8]  how long an idle actor is kept, s
-- ARGV[9]  scans an address may send per UTC day   ARGV[10]  devices per address per day limit
-- ARGV[11]  1: an address blocked for guessing still takes scans from devices with a valid scan
--           there today; 0: it refuses everyone
-- ARGV[12] observations, each '<BBI8c8c4I2' kind (1 device, 2 address), bits (1: the code failed
--          verification; 2: a code check, not a scan; 4: a device behind an address blocked for
--          guessing: its guessing counts are updated if it has a hash, nothing else is added),
--          serial (0: none or invalid), member digest (zeros: none), device digest (zeros:
--          none), then the actor framed by that length
-- Reply: per observation '<I4I4I4I4I4I4I4B': seconds it stays refused (0: not refused; nothing
-- was counted), distinct codes this hour, member ids today, invalid codes in the sliding window,
-- the address's valid scans today, its valid scans without a device today, its devices today,
-- and why it is refused (1 guessing, 2 the daily ceiling).
local OBSERVATION = '<BBI8c8c4I2'
local OBSERVATION_SIZE = struct.size(OBSERVATION)
local REPLY = '<I4I4I4I4I4I4I4B'
local INVALID, CHECK, ADDRESS_BLOCKED = 1, 2, 4  -- the bits
local NO_MEMBER, NO_DEVICE = string.rep('\0', 8), string.rep('\0', 4)
local GUESSING, CEILING = 1, 2
local tag = KEYS[1]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local block_after = {tonumber(ARGV[3]), tonumber(ARGV[4])}
local cooldown = tonumber(ARGV[5])
local codes_kept, members_kept = tonumber(ARGV[6]) + 1, tonumber(ARGV[7]) + 1
local keep = tonumber(ARGV[8])
-- an address's devices are kept up to 256 (a kilobyte): a higher limit switches the rule off
local ceiling, devices_kept = tonumber(ARGV[9]), math.min(tonumber(ARGV[10]) + 1, 256)
local spare_known = ARGV[11] == '1'
local hour, day, slot = math.floor(now / 3600), math.floor(now / 86400), math.floor(now / window)
local window_left = 1 - (now % window) / window
local next_day_s = (day + 1) * 86400 - now

-- the distinct values of a field for this period, with value added if new, wanted and with
-- room left; a field of an earlier period starts over. Returns the count, the new field (nil:
-- unchanged) and whether value was there already.
local function distinct(field, period, value, limit, add)
    local kept, size = '', #value
    if field and struct.unpack('<I4', field) == period then kept = string.sub(field, 5) end
    for at = 1, #kept, size do
        if string.sub(kept, at, at + size - 1) == value then return #kept / size, nil, true end
    end
    if not add or #kept / size >= limit then return #kept / size, nil, false end
    kept = kept .. value
    return #kept / size, struct.pack('<I4', period) .. kept, false
end

-- the invalid codes counted in this guessing window and in the one before it
local function invalid_windows(field)
    if not field then return 0, 0 end
    local counted_slot, count = struct.unpack('<I4I4', field)
    local before = #field >= 12 and struct.unpack('<I4', field, 9) or 0
    if counted_slot == slot then return count, before end
    if counted_slot == slot - 1 then return 0, count end
    return 0, 0
end

local function set(changes, name, value)
    changes[#changes + 1] = name
    changes[#changes + 1] = value
end

local replies = {}
local packed, at = ARGV[12], 1
while at <= #packed do
    local kind, bits, serial, member, device, length = struct.unpack(OBSERVATION, packed, at)
    local actor = string.sub(packed, at + OBSERVATION_SIZE, at + OBSERVATION_SIZE + length - 1)
    at = at + OBSERVATION_SIZE + length
    local invalid, check = bit.band(bits, INVALID) > 0, bit.band(bits, CHECK) > 0
    local is_device, adds = kind == 1, bit.band(bits, ADDRESS_BLOCKED) == 0
    local key = tag .. (is_device and ':dev:' or ':ip:') .. actor
    local state = redis.call('HMGET', key, 'b', 'i', is_device and 'c' or 'd',
        is_device and 'm' or 'e')
    local blocked_until = tonumber(state[1] or '0')
    local exists = state[1] or state[2] or state[3] or state[4]
    local scans, valid, without_device, new_day = 0, 0, 0, false
    local devices, devices_field, known = 0, nil, false
    local refused, refused_s = 0, 0
    if not is_device and not check then
        if state[3] then
            local counted_day
            counted_day, scans, valid, without_device = struct.unpack('<I4I4I4I4', state[3])
            if counted_day ~= day then scans, valid, without_device, new_day = 0, 0, 0, true end
        end
        if device ~= NO_DEVICE then
            devices, devices_field, known = distinct(state[4], day, device, devices_kept,
                serial > 0)
        end
        if scans >= ceiling then refused, refused_s = CEILING, next_day_s end
    end
    if refused == 0 and blocked_until > now and not (spare_known and known) then
        refused, refused_s = GUESSING, blocked_until - now
    end
    if refused > 0 then
        replies[#replies + 1] = struct.pack(REPLY, refused_s, 0, 0, 0, 0, 0, 0, refused)
    else
        local changes = {}
        local this_window, before = invalid_windows(state[2])
        if invalid then
            this_window = this_window + 1
            set(changes, 'i', struct.pack('<I4I4I4', slot, this_window, before))
        end
        local invalid_count = this_window + math.floor(before * window_left)
        if invalid and invalid_count >= block_after[kind] and blocked_until <= now then
            set(changes, 'b', now + cooldown)
        end
        local codes, members, field = 0, 0, nil
        if is_device then
            if serial > 0 then
                codes, field = distinct(state[3], hour, struct.pack('<I8', serial), codes_kept,
                    adds)
                if field then set(changes, 'c', field) end
                if member ~= NO_MEMBER then
                    members, field = distinct(state[4], day, member, members_kept, adds)
                    if field then set(changes, 'm', field) end
                end
            end
        elseif not check then
            scans = scans + 1
            if serial > 0 then
                valid = valid + 1
                if device == NO_DEVICE then without_device = without_device + 1 end
            end
            set(changes, 'd', struct.pack('<I4I4I4I4', day, scans, valid, without_device))
            if devices_field then set(changes, 'e', devices_field) end
        end
        if #changes > 0 and (adds or exists) then
            redis.call('HSET', key, unpack(changes))
            -- an address's hash is written by each of its scans: its expiry is renewed once a
            -- day (with the day's first scan), which keeps it the day and the next
            if is_device or check or not state[3] or new_day then
                redis.call('EXPIRE', key, keep)
            end
        end
        replies[#replies + 1] = struct.pack(REPLY, 0, codes, members, invalid_count, valid,
            without_device, devices, 0)
    end
end
return replies
