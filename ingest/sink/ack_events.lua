-- The sink's acknowledgement of stream entries whose events are in ClickHouse.
--
-- KEYS[1]  the partition's event stream, KEYS[2] its count of unsunk events
-- ARGV[1]  the consumer group, ARGV[2] the id to trim below (just past the last acked entry)
-- then pairs: an entry id and how many events it holds
--
-- Only entries this call acknowledges are subtracted, so a repeated acknowledgement (after a
-- lost reply) does not count them twice. Reply: the events subtracted.
local acked = 0
for i = 3, #ARGV, 2 do
    if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
        acked = acked + tonumber(ARGV[i + 1])
    end
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
if acked > 0 and tonumber(redis.call('DECRBY', KEYS[2], acked)) < 0 then
    redis.call('SET', KEYS[2], 0)
end
return acked
