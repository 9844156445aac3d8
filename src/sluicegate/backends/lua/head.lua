-- A queue's depth, head and pause (see QueueStore.queues). KEYS: waiting zset, meta,
-- paused key. Returns {calls waiting, the head's meta or '', 1 if paused else 0}.
local paused = redis.call('EXISTS', KEYS[3])
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
if #head == 0 then return {0, '', paused} end
return {redis.call('ZCARD', KEYS[1]), redis.call('HGET', KEYS[2], head[1]) or '', paused}
