-- flowkit backup: every key of one session, read atomically.
-- Built by flowkit/store/contract.py.
-- KEYS[1] state: the session's state hash
-- KEYS[2] hist: the history (list, or a layout-1 stream)
-- KEYS[3] seen: the dedupe zset
-- KEYS[4] snap: the snapshot hash
-- KEYS[5] fx: the outbox hash
-- Returns {} if the session does not exist, else {state, hist, seen, snap, fx, ttl ms, layout}.
-- The 7th value says the history's layout: 2 a list of packed elements, 1 a stream of entries.
local st = redis.call('HGETALL', KEYS[1])
if #st == 0 then return {} end
local hist, layout = redis.pcall('LRANGE', KEYS[2], 0, -1), 2
if hist.err then hist, layout = redis.call('XRANGE', KEYS[2], '-', '+'), 1 end
return {st, hist, redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5]), redis.call('PTTL', KEYS[1]), layout}
