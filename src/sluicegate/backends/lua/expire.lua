-- Remove the waiting calls at the head enqueued at or before a cutoff (QueueStore.expire).
-- KEYS: the queue's waiting zset, data, meta. ARGV: cutoff (seconds).
-- Returns {calls still waiting, the new head's enqueued_at or '', id, stored call, meta, ...}.
local cutoff = tonumber(ARGV[1])
local out = {0, ''}
while true do
  local head = redis.call('ZRANGE', KEYS[1], 0, 99)
  if #head == 0 then break end
  local stop = false
  for _, id in ipairs(head) do
    local meta = redis.call('HGET', KEYS[3], id)
    local at = meta and tonumber(string.match(meta, '^%S+ (%S+)'))
    if at and at > cutoff then
      out[2] = string.match(meta, '^%S+ (%S+)')
      stop = true
      break
    end
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', KEYS[2], id)
    out[#out + 1] = meta or ''
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
  if stop then break end
end
out[1] = redis.call('ZCARD', KEYS[1])
return out
