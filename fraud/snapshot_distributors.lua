-- Appends distributors, as they are now, to the change stream that put_distributor.lua appends
-- to on every put (`scanward mirror`): read and appended in one script, so that the stream's
-- order stays the order of the distributors' states.
-- KEYS[1]  distributors hash   KEYS[2]  the change stream   KEYS[3]  its unsunk count
-- ARGV  distributor ids. Reply: the distributors appended.
local appended = 0
for i = 1, #ARGV do
    local stored = redis.call('HGET', KEYS[1], ARGV[i])
    if stored then
        redis.call('XADD', KEYS[2], '*', 'distributor', stored)
        appended = appended + 1
    end
end
redis.call('INCRBY', KEYS[3], appended)
return appended
