-- Append a call to its queue (see QueueStore.push).
-- KEYS: the queue's seq counter, waiting zset (call id -> seq), data hash (call id ->
--       the stored call), meta hash (call id -> 'seq enqueued_at rate').
-- ARGV: call id, stored call, enqueued_at, rate. Returns the calls waiting.
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], seq .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
return redis.call('ZCARD', KEYS[2])
