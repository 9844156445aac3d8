-- Slots held at now (see SlotStore.in_use). KEYS: sent zset, held zset.
-- ARGV: now ms ('' = this server's TIME), period ms.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[2])), '+inf')
  + redis.call('ZCARD', KEYS[2])
