-- flowkit migrate-layout: replace one session's history list by the same records as binary
-- elements (flowkit/store/rehist.py), only if the list is exactly what the caller converted.
-- Built by flowkit/store/contract.py.
-- KEYS[1] hist: the history list
-- ARGV[1] length: the list's length as read
-- ARGV[2] last: its last element as read
-- ARGV[3] elements: the repacked elements, this and every ARGV after it, oldest first
-- Returns 1 repacked, 0 nothing to do (not a list), -1 the list changed (read again).
if redis.call('TYPE', KEYS[1]).ok ~= 'list' then return 0 end
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return -1 end
if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[2] then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 1000 do  -- (unpack is bounded by Lua's C stack)
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
