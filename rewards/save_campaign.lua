-- Saves a campaign as a new version and commits a secret seed for each of its days.
-- KEYS[1] config  KEYS[2] version  KEYS[3] every version's config  KEYS[4] seeds by day
-- ARGV[1] the campaign JSON, then pairs: a day 'YYYY-MM-DD' and a fresh seed (kept only where
-- the day has none: a published seed hash must keep matching)
-- Reply: the new version (1 for a new campaign).
local version = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], version, ARGV[1])
for i = 2, #ARGV, 2 do
    redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1])
end
return version
