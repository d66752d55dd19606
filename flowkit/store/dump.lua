-- flowkit backup: every key of one session, read atomically.
-- KEYS: 1 state, 2 hist, 3 seen, 4 snap, 5 fx.  Returns {} if the session does not exist.
local st = redis.call('HGETALL', KEYS[1])
if #st == 0 then return {} end
return {st, redis.call('XRANGE', KEYS[2], '-', '+'), redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5]), redis.call('PTTL', KEYS[1])}
