-- Stores a distributor and bumps the version every worker watches to reload territories.
-- KEYS[1]  distributors hash (id -> JSON)   KEYS[2]  version counter
-- ARGV[1]  id   ARGV[2]  the distributor as JSON
-- Reply: 1 if the distributor is new, 0 if it was replaced.
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return created
