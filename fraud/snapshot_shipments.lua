-- Appends lines of the shipment log to the change stream that ship.lua appends each new one to
-- (`scanward mirror`).
-- KEYS[1]  the shipment log   KEYS[2]  the change stream   KEYS[3]  its unsunk count
-- ARGV[1], ARGV[2]  the first and last index of the lines. Reply: the lines appended.
local lines = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])
for _, line in ipairs(lines) do
    redis.call('XADD', KEYS[2], '*', 'shipment', line)
end
redis.call('INCRBY', KEYS[3], #lines)
return #lines
