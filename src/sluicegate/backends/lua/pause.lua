-- Pause limits (see SlotStore.pause): no slot of them until now + ms.
-- KEYS: the pause key of each limit. ARGV: now ms ('' = this server's TIME), ms.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ms = tonumber(ARGV[2])
for i = 1, #KEYS do
  local until_ms = tonumber(redis.call('GET', KEYS[i])) or 0
  if now + ms > until_ms then redis.call('SET', KEYS[i], now + ms, 'PX', ms) end
end
return now + ms
