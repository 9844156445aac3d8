-- Stamp or give back reservations of one limit (see SlotStore.sent and .release).
-- KEYS: the limit's sent zset and held zset.
-- ARGV: now ms ('' = this server's TIME), period ms, then per reservation: its ticket and
--       its send time in ms ('' = now; '-' = never sent: give the slot back).
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local stamped = false
for i = 3, #ARGV, 2 do
  -- A reservation whose lease ended was counted as sent then: nothing left to do.
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 and ARGV[i + 1] ~= '-' then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 1]) or now, ARGV[i])
    stamped = true
  end
end
if stamped then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000) end
return (#ARGV - 2) / 2
