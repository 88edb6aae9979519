-- Reserve a contiguous range of global serials and record the batch, atomically.
-- KEYS: next serial counter, batch hash, batch index (zset by first serial), index version,
--       the change stream the sink mirrors into ClickHouse ``batches`` and its unsunk count
-- ARGV: quantity, highest serial allowed, then the batch's field/value pairs
local quantity = tonumber(ARGV[1])
local first = tonumber(redis.call('GET', KEYS[1]) or '1')
if first + quantity - 1 > tonumber(ARGV[2]) then
  return redis.error_reply('SERIALS_EXHAUSTED the 40-bit serial space cannot hold this batch')
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('BATCH_EXISTS batch id already taken')
end
redis.call('SET', KEYS[1], first + quantity)
local fields = {'first_serial', first, 'quantity', quantity}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[3], first, KEYS[2])
redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[5], '*', unpack(redis.call('HGETALL', KEYS[2])))
redis.call('INCR', KEYS[6])
return first
