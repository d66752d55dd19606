-- flowkit set_timeout: record when a session should wake up, if it exists and can still wake
-- (built by flowkit/store/contract.py).
-- KEYS[1] state: the session's state hash
-- KEYS[2] timeouts: the timeouts index (single server only: then the script writes it, so
--         no crash can leave it stale; a cluster writes it beside the script)
-- ARGV[1] timeout_at: ms ('' = none)
-- ARGV[2] terminal: the terminal statuses, comma-separated (flowkit.store.codec.TERMINAL_STATUSES)
-- ARGV[3] session_id: the session id (single server only)
-- Returns 1 if the timeouts index should hold the session, 0 if it should not.
local TERMINAL = {}
for w in string.gmatch(ARGV[2], '[^,]+') do TERMINAL[w] = true end
local st = redis.call('HMGET', KEYS[1], 'version', 'status')
local held = 1
if not st[1] then
  held = 0
elseif ARGV[1] == '' or TERMINAL[st[2]] then
  redis.call('HDEL', KEYS[1], 'timeout_at')
  held = 0
else
  redis.call('HSET', KEYS[1], 'timeout_at', ARGV[1])
end
if #KEYS >= 2 then
  if held == 1 then redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3]) else redis.call('ZREM', KEYS[2], ARGV[3]) end
end
return held
