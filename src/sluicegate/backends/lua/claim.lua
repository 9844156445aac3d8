-- Take calls from the head of a queue (see QueueStore.claim), leased to the claimer;
-- first, calls whose lease ended (their claimer died) go back to their place. A paused
-- queue gives none.
-- KEYS: the queue's waiting zset, claimed zset (call id -> lease end ms), data, meta,
--       paused key. ARGV: count, lease ms.
-- Returns {calls still waiting, 1 if paused else 0, id, stored call, meta, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(ended) do
  local meta = redis.call('HGET', KEYS[4], id)
  if meta then redis.call('ZADD', KEYS[1], tonumber(string.match(meta, '^%S+')), id) end
  redis.call('ZREM', KEYS[2], id)
end
if redis.call('EXISTS', KEYS[5]) == 1 then return {redis.call('ZCARD', KEYS[1]), 1} end
local taken = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local out = {0, 0}
for j = 1, #taken, 2 do
  local id = taken[j]
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id)
  out[#out + 1] = redis.call('HGET', KEYS[4], id)
end
out[1] = redis.call('ZCARD', KEYS[1])
return out
