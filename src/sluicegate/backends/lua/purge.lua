-- Remove calls waiting at the head of a queue (see QueueStore.purge); claimed ones stay.
-- KEYS: the queue's waiting zset, data, meta. ARGV: count.
-- Returns {calls still waiting, id, stored call, meta, ...}.
local taken = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local out = {0}
for j = 1, #taken, 2 do
  local id = taken[j]
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
out[1] = redis.call('ZCARD', KEYS[1])
return out
