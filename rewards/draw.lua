-- The draws of a micro-batch in one campaign, atomically: who may still win, budget and cap
-- reservation, the member's daily limit, the points credit and the draw log (rewards/odds.py
-- states the rule; this is its atomic form).
--
-- KEYS[1]  the campaign's draw stream "{camp:C}:draws", KEYS[2] its unsunk count
--          (every other key is built here with the same hash tag)
-- ARGV[1]  the campaign version the caller computed the arguments from; another one stored
--          means the campaign changed: nothing is done and STALE_CAMPAIGN is answered
-- ARGV[2]  the campaign's local day 'YYYY-MM-DD'   ARGV[3] now, ms
-- ARGV[4]  the member daily win limit               ARGV[5] seconds a retry key is kept
-- ARGV[6]  member tiers                             ARGV[7] the prizes as JSON ([{id, kind,
--          value}], the stream entry's 'p')
-- ARGV[8]  per prize: PRIZE, its id framed by '<I2', then per tier its slice of the draw
--          values ('<I8I8')
-- ARGV[9]  the draws back to back: DRAW, then the member id, the retry key (both framed by
--          '<I2') and the request framed by '<I4' (the entry's 'r', see rewards/draw_log.py)
--
-- Reply: one string per draw: 'N' + RESULT (drawn now), 'R' + RESULT (a retried scan id: the
-- result it had, whatever the campaign has become since), or 'D' (the code drew in this
-- campaign before: no draw). RESULT is OUTCOME, then for a win WON and the prize id.
-- Redis does not undo a script that fails half-way, so nothing after the version check may fail
-- on the arguments (a tier without slices is simply not available).
local PRIZE = '<I4I4I4BBBi8'  -- total budget, released today so far, guaranteed count owed
                              -- now, min tier, high value?, kind (KINDS), value
local KINDS = {[0] = 'cash', [1] = 'points', [2] = 'item'}
local POINTS = 1
local REQUEST_FIXED = 32      -- the numbers before a request's strings (rewards/draw_log.py)
local DRAW = '<I8I8BB'        -- serial, draw value, tier, risk
local OUTCOME = '<I8i2BI4i8'  -- seq, prize index (-1 none), guaranteed?, available mask,
                              -- points balance after
local WON = '<Bi8'            -- the prize's kind (KINDS), value
local SEEN_RANGE = 65472      -- as in ingest/scan/scan_state.lua: one 8 KiB bitmap per range
local function empty_bitmap() return string.rep('\0', SEEN_RANGE / 8) end
local DAY_KEYS_TTL = 3 * 86400
local RECENT_AWARDS = 10

local stream = KEYS[1]
local tag = string.sub(stream, 1, string.find(stream, '}', 1, true))
if redis.call('GET', tag .. ':version') ~= ARGV[1] then
    return redis.error_reply('STALE_CAMPAIGN the campaign changed; reload it')
end
local day, now_ms, limit, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tiers, prize_json = tonumber(ARGV[6]), ARGV[7]

local prizes, ids, packed, at = {}, {}, ARGV[8], 1
while at <= #packed do
    local p, id_length = {low = {}, high = {}}, 0
    p.total, p.released, p.owed, p.min_tier, p.high_value, p.kind, p.value, id_length, at =
        struct.unpack(PRIZE .. 'I2', packed, at)
    ids[#ids + 1] = string.sub(packed, at, at + id_length - 1)
    at = at + id_length
    for tier = 0, tiers - 1 do
        p.low[tier], p.high[tier], at = struct.unpack('<I8I8', packed, at)
    end
    prizes[#prizes + 1] = p
end

local awarded_key, today_key = tag .. ':awarded', tag .. ':day:' .. day
local wins_key, points_key = tag .. ':wins:' .. day, tag .. ':points'
local awarded = redis.call('HMGET', awarded_key, unpack(ids))
local today = redis.call('HMGET', today_key, unpack(ids))
for i = 1, #prizes do
    awarded[i], today[i] = tonumber(awarded[i]) or 0, tonumber(today[i]) or 0
end

local wins_of = {}  -- members' wins today, read once per call
local function wins(member)
    if not wins_of[member] then
        wins_of[member] = tonumber(redis.call('HGET', wins_key, member)) or 0
    end
    return wins_of[member]
end
local seq = tonumber(redis.call('GET', tag .. ':seq')) or 0  -- written back once, at the end

local awards = 0
local function award(index, member, request)
    local p = prizes[index]
    awards = awards + 1
    awarded[index], today[index] = awarded[index] + 1, today[index] + 1
    wins_of[member] = wins_of[member] + 1
    redis.call('HINCRBY', awarded_key, ids[index], 1)
    redis.call('HINCRBY', today_key, ids[index], 1)
    redis.call('HINCRBY', wins_key, member, 1)
    local balance = 0
    if p.kind == POINTS then balance = redis.call('HINCRBY', points_key, member, p.value) end
    local recent_key = tag .. ':recent:' .. member
    -- the request's strings: scan id, member id, code, ...
    local strings = string.sub(request, REQUEST_FIXED + 1)
    local scan_end = string.find(strings, '\31', 1, true)
    local code_start = string.find(strings, '\31', scan_end + 1, true) + 1
    local code_end = (string.find(strings, '\31', code_start, true) or #strings + 1) - 1
    redis.call('LPUSH', recent_key, cjson.encode({
        prize_id = ids[index], kind = KINDS[p.kind], value = p.value,
        scan_id = string.sub(strings, 1, scan_end - 1),
        code = string.sub(strings, code_start, code_end), time_ms = now_ms, day = day}))
    redis.call('LTRIM', recent_key, 0, RECENT_AWARDS - 1)
    return balance
end

local function draw(value, tier, risk, member, request)
    local under_limit = wins(member) < limit
    local mask, available = 0, {}
    for i, p in ipairs(prizes) do
        available[i] = risk < 4 and tier >= p.min_tier and (risk < 3 or p.high_value == 0)
            and under_limit and awarded[i] < p.total and today[i] < p.released
        if available[i] then mask = mask + 2 ^ (i - 1) end
    end
    local chosen, guaranteed = 0, 0
    for i, p in ipairs(prizes) do
        if available[i] and today[i] < p.owed then chosen, guaranteed = i, 1; break end
    end
    if chosen == 0 then
        for i, p in ipairs(prizes) do
            if available[i] and p.low[tier] and p.low[tier] <= value and value < p.high[tier] then
                chosen = i; break
            end
        end
    end
    local balance = 0
    if chosen > 0 then balance = award(chosen, member, request) end
    seq = seq + 1
    local outcome = struct.pack(OUTCOME, seq, chosen - 1, guaranteed, mask, balance)
    if chosen == 0 then return outcome, outcome end
    local won = prizes[chosen]
    return outcome, outcome .. struct.pack(WON, won.kind, won.value) .. ids[chosen]
end

local bitmaps_known = {}
local function first_draw_of(serial)
    local key = tag .. ':drawn:' .. math.floor(serial / SEEN_RANGE)
    if not bitmaps_known[key] then
        if redis.call('EXISTS', key) == 0 then redis.call('SET', key, empty_bitmap()) end
        bitmaps_known[key] = true
    end
    return redis.call('SETBIT', key, serial % SEEN_RANGE, 1) == 0
end

local replies, requests, outcomes = {}, {}, {}
local draws, DRAW_SIZE = ARGV[9], struct.size(DRAW)
at = 1
while at <= #draws do
    local serial, value, tier, risk = struct.unpack(DRAW, draws, at)
    at = at + DRAW_SIZE
    local length = struct.unpack('<I2', draws, at)
    local member = string.sub(draws, at + 2, at + 1 + length)
    at = at + 2 + length
    length = struct.unpack('<I2', draws, at)
    local retry_key = string.sub(draws, at + 2, at + 1 + length)
    at = at + 2 + length
    length = struct.unpack('<I4', draws, at)
    local request = string.sub(draws, at + 4, at + 3 + length)
    at = at + 4 + length
    local id_key = retry_key ~= '' and (tag .. ':sid:' .. retry_key) or nil
    local stored = id_key and redis.call('GET', id_key)
    if stored then
        replies[#replies + 1] = 'R' .. stored
    elseif not first_draw_of(serial) then
        replies[#replies + 1] = 'D'
    else
        local outcome, result = draw(value, tier, risk, member, request)
        if id_key then redis.call('SET', id_key, result, 'EX', ttl) end
        requests[#requests + 1] = struct.pack('<I4', #request) .. request
        outcomes[#outcomes + 1] = outcome
        replies[#replies + 1] = 'N' .. result
    end
end
if #outcomes > 0 then
    redis.call('XADD', stream, '*', 'r', table.concat(requests), 'o', table.concat(outcomes),
        'p', prize_json)
    redis.call('INCRBY', KEYS[2], #outcomes)
    redis.call('SET', tag .. ':seq', seq)
end
if awards > 0 then  -- the only writes to the day's keys
    redis.call('EXPIRE', today_key, DAY_KEYS_TTL)
    redis.call('EXPIRE', wins_key, DAY_KEYS_TTL)
end
return replies
