-- Mark a batch revoked. KEYS: batch hash, index version, the change stream (as in
-- reserve_batch.lua) and its unsunk count. ARGV: revoked time (unix ms).
-- Returns 0 for an unknown batch, 1 when revoked now, 2 when it already was.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'status') == 'revoked' then return 2 end
redis.call('HSET', KEYS[1], 'status', 'revoked', 'revoked_at', ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], '*', unpack(redis.call('HGETALL', KEYS[1])))
redis.call('INCR', KEYS[4])
return 1
