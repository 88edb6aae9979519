-- Records what a case (or pallet) holds: a code belongs to at most one parent.
--
-- KEYS[1]  children: hash parent serial -> '<I8' serials    KEYS[2]  parent: hash child -> parent
-- KEYS[3]  shipped ranges (see ship.lua): a shipped parent cannot take new children
-- ARGV[1]  parent serial   ARGV[2]  children, '<I8' each
-- Reply: the number of children, or an error naming the conflict:
-- 'AGG_PARENT_FULL', 'AGG_PARENT_SHIPPED', 'AGG_CHILD_TAKEN <child> <its parent>',
-- 'AGG_CHILD_SHIPPED <child>', 'AGG_CYCLE <child>'.
local children_key, parent_key, ranges_key = KEYS[1], KEYS[2], KEYS[3]
local parent, children = ARGV[1], ARGV[2]

local function shipped(serial)
    local before = redis.call('ZREVRANGEBYSCORE', ranges_key, serial, '-inf', 'LIMIT', 0, 1)[1]
    if not before then return false end
    local _, last = struct.unpack('<I8I8', before)
    return last >= tonumber(serial)
end

if redis.call('HEXISTS', children_key, parent) == 1 then
    return redis.error_reply('AGG_PARENT_FULL')
end
if shipped(parent) then return redis.error_reply('AGG_PARENT_SHIPPED') end
local names = {}
for at = 1, #children, 8 do
    local child = string.format('%d', struct.unpack('<I8', children, at))
    local taken = redis.call('HGET', parent_key, child)
    if taken then return redis.error_reply('AGG_CHILD_TAKEN ' .. child .. ' ' .. taken) end
    if shipped(child) then return redis.error_reply('AGG_CHILD_SHIPPED ' .. child) end
    -- a parent cannot go inside its own children (a pallet inside one of its cases)
    local ancestor = redis.call('HGET', parent_key, parent)
    while ancestor do
        if ancestor == child then return redis.error_reply('AGG_CYCLE ' .. child) end
        ancestor = redis.call('HGET', parent_key, ancestor)
    end
    names[#names + 1] = child
end
redis.call('HSET', children_key, parent, children)
for _, child in ipairs(names) do redis.call('HSET', parent_key, child, parent) end
return #names
