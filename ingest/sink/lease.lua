-- Compare-and-set of a stream's sink lease: only a caller that names the current holder changes it.
-- KEYS[1] the lease; ARGV[1] the holder expected now; ARGV[2] the new holder, or "" to release;
-- ARGV[3] the lease's time to live in ms. Reply: 1 if changed, 0 if someone else holds it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
