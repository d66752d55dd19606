-- flowkit set_timeout: record when a session should wake up, if it exists and can still wake
-- (built by flowkit/store/contract.py).
-- KEYS[1] state: the session's state hash
-- ARGV[1] timeout_at: ms ('' = none)
-- ARGV[2] terminal: the terminal statuses, comma-separated (flowkit.store.codec.TERMINAL_STATUSES)
-- Returns 1 if the timeouts index should hold the session, 0 if it should not.
local TERMINAL = {}
for w in string.gmatch(ARGV[2], '[^,]+') do TERMINAL[w] = true end
local st = redis.call('HMGET', KEYS[1], 'version', 'status')
if not st[1] then return 0 end
if ARGV[1] == '' or TERMINAL[st[2]] then
  redis.call('HDEL', KEYS[1], 'timeout_at')
  return 0
end
redis.call('HSET', KEYS[1], 'timeout_at', ARGV[1])
return 1
