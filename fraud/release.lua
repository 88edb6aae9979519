-- Empties a case: its children may then be aggregated again.
-- KEYS[1]  children hash   KEYS[2]  parent hash   ARGV[1]  parent serial
-- Reply: the number of children released (0 if the code held none).
local children = redis.call('HGET', KEYS[1], ARGV[1])
if not children then return 0 end
for at = 1, #children, 8 do
    redis.call('HDEL', KEYS[2], string.format('%d', struct.unpack('<I8', children, at)))
end
redis.call('HDEL', KEYS[1], ARGV[1])
return #children / 8
