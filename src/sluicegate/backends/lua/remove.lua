-- Forget a call, waiting or claimed (see QueueStore.remove).
-- KEYS: the queue's waiting zset, claimed zset, data, meta. ARGV: call id.
-- Returns the calls still waiting.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return redis.call('ZCARD', KEYS[1])
