-- flowkit migrate-layout: replace one session's layout-1 history stream by the compact list
-- (flowkit/store/migrate.py), only if the stream is exactly what the caller converted.
-- Built by flowkit/store/contract.py.
-- KEYS[1] hist: the history key
-- ARGV[1] length: the stream's length as read
-- ARGV[2] last: its last entry id as read ('' = empty)
-- ARGV[3] elements: the compact elements, this and every ARGV after it, oldest first
-- Returns 1 migrated, 0 nothing to do (already a list, or gone), -1 the stream changed (read again).
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'stream' then return 0 end
if redis.call('XLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return -1 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if (last[1] and last[1][1] or '') ~= ARGV[2] then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  for i = 3, #ARGV, 1000 do  -- (unpack is bounded by Lua's C stack)
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return 1
