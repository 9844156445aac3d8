-- Reserve one slot in every limit, or in none (see sluicegate.storage.SlotStore.acquire).
-- KEYS: per limit: its sent zset (ticket -> sent ms), held zset (ticket -> lease end ms),
--       pause key (paused until ms); then, with a queue to wait behind, its waiting zset
--       and its paused key (set while an operator pauses it).
-- ARGV: now ms ('' = this server's TIME), lease ms, ticket, number of limits,
--       '1' to wait behind the queue, then count and period ms of each limit.
-- Returns {0, now} when granted, else {ms to wait, 1 if paused else 0}.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local lease, ticket, n = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local paused = 0
for i = 1, n do
  local until_ms = tonumber(redis.call('GET', KEYS[3 * i]))
  if until_ms and until_ms - now > paused then paused = until_ms - now end
end
if paused > 0 then return {paused, 1} end
if ARGV[5] == '1' and (redis.call('ZCARD', KEYS[3 * n + 1]) > 0
                       or redis.call('EXISTS', KEYS[3 * n + 2]) == 1) then
  return {tonumber(ARGV[7]), 0}
end
local wait = 0
for i = 1, n do
  local sent, held = KEYS[3 * i - 2], KEYS[3 * i - 1]
  local count, period = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  -- A lease that ended belongs to an instance that died: count it as sent at the lease end.
  local ended = redis.call('ZRANGEBYSCORE', held, '-inf', now, 'WITHSCORES')
  for j = 1, #ended, 2 do
    redis.call('ZADD', sent, ended[j + 1], ended[j])
    redis.call('ZREM', held, ended[j])
  end
  redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - period)
  local stamped = redis.call('ZCARD', sent)
  local excess = stamped + redis.call('ZCARD', held) - count
  if excess >= 0 then
    local w = period  -- reservations alone fill the window: the earliest they could free
    if excess < stamped then
      local entry = redis.call('ZRANGE', sent, excess, excess, 'WITHSCORES')
      w = math.max(1, tonumber(entry[2]) + period - now)
    end
    if w > wait then wait = w end
  end
end
if wait > 0 then return {wait, 0} end
for i = 1, n do
  redis.call('ZADD', KEYS[3 * i - 1], now + lease, ticket)
  redis.call('PEXPIRE', KEYS[3 * i - 1], lease + tonumber(ARGV[5 + 2 * i]))
end
return {0, now}
