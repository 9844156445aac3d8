-- Remove calls waiting at the head of a queue (see QueueStore.purge); claimed ones stay.
-- First, as claim.lua does, calls whose lease ended (their claimer died) go back to their
-- place: they wait again, so they are purged too.
-- KEYS: the queue's waiting zset, claimed zset (call id -> lease end ms), data, meta.
-- ARGV: count.
-- Returns {calls still waiting, id, stored call, meta, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(ended) do
  local meta = redis.call('HGET', KEYS[4], id)
  if meta then redis.call('ZADD', KEYS[1], tonumber(string.match(meta, '^%S+')), id) end
  redis.call('ZREM', KEYS[2], id)
end
local taken = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local out = {0}
for j = 1, #taken, 2 do
  local id = taken[j]
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id)
  out[#out + 1] = redis.call('HGET', KEYS[4], id) or ''
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
out[1] = redis.call('ZCARD', KEYS[1])
return out
