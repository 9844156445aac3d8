-- A queue's depth and head (see QueueStore.queues). KEYS: waiting zset, meta.
-- Returns {calls waiting, the head's meta or ''}.
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
if #head == 0 then return {0, ''} end
return {redis.call('ZCARD', KEYS[1]), redis.call('HGET', KEYS[2], head[1]) or ''}
