-- Stores a distributor and bumps the version every worker watches to reload territories.
-- KEYS[1]  distributors hash (id -> JSON)   KEYS[2]  version counter
-- KEYS[3]  the change stream the sink mirrors into ClickHouse ``distributors`` (field
--          'distributor': the JSON), KEYS[4] its unsunk count
-- ARGV[1]  id   ARGV[2]  the distributor as JSON
-- Reply: 1 if the distributor is new, 0 if it was replaced.
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], '*', 'distributor', ARGV[2])
redis.call('INCR', KEYS[4])
return created
