-- Put claimed calls back at their place (see QueueStore.reclaim): those named, and those
-- whose lease ended. KEYS: the queue's waiting zset, claimed zset, meta. ARGV: call ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local back = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(ARGV) do back[#back + 1] = id end
for _, id in ipairs(back) do
  if redis.call('ZREM', KEYS[2], id) == 1 then
    local meta = redis.call('HGET', KEYS[3], id)
    if meta then redis.call('ZADD', KEYS[1], tonumber(string.match(meta, '^%S+')), id) end
  end
end
return redis.call('ZCARD', KEYS[1])
