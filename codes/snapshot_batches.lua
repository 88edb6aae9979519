-- Appends batches, as they are now, to the change stream that reserve_batch.lua and
-- revoke_batch.lua append to on every change (`scanward mirror`): read and appended in one
-- script, so that the stream's order stays the order of the batches' states.
-- KEYS: the change stream, its unsunk count, then the batch hashes. Reply: the batches appended.
local appended = 0
for i = 3, #KEYS do
    local fields = redis.call('HGETALL', KEYS[i])
    if #fields > 0 then
        redis.call('XADD', KEYS[1], '*', unpack(fields))
        appended = appended + 1
    end
end
redis.call('INCRBY', KEYS[2], appended)
return appended
