-- Saves a campaign as a new version and commits a secret seed for each of its days.
-- KEYS[1] config  KEYS[2] version  KEYS[3] every version's config  KEYS[4] seeds by day
-- ARGV[1] the campaign JSON, ARGV[2] its time zone, then pairs: a day 'YYYY-MM-DD' and a fresh
-- seed (kept only where the day has none: a published seed hash must keep matching)
-- Reply: the new version (1 for a new campaign). The time zone of a saved campaign cannot
-- change: its days, and when each day's seed is revealed, hang on it.
local saved = redis.call('GET', KEYS[1])
if saved and cjson.decode(saved).timezone ~= ARGV[2] then
    return redis.error_reply('TIMEZONE_FIXED the campaign runs in ' .. cjson.decode(saved).timezone)
end
local version = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], version, ARGV[1])
for i = 3, #ARGV, 2 do
    redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1])
end
return version
