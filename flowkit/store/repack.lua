-- flowkit repack: rewrite one session's state hash from the old layout (the JSON in 'state', a
-- hashtable) to the packed one (fields s0, s1, ... of at most 64 bytes, a listpack: see
-- flowkit/store/statefield.py), only if 'state' is still exactly what the caller packed.
-- Built by flowkit/store/contract.py (flowkit/store/repack.py drives it).
-- KEYS[1] state: the session's state hash
-- ARGV[1] plain: the 'state' field as read
-- ARGV[2] blob: its packed form (unpacks to exactly ARGV[1])
-- Returns 1 repacked, 0 nothing to do (no 'state' field, or not a hash), -1 it changed (read again).
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local plain = redis.call('HGET', KEYS[1], 'state')
if not plain then return 0 end
if plain ~= ARGV[1] then return -1 end
local old = redis.call('HGETALL', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
local fields = {}
for i = 1, #old, 2 do
  if old[i] ~= 'state' and not string.match(old[i], '^s%d+$') then
    fields[#fields + 1] = old[i]
    fields[#fields + 1] = old[i + 1]
  end
end
if #ARGV[2] > 64 * 96 then
  fields[#fields + 1] = 's0'
  fields[#fields + 1] = ARGV[2]
else
  local n = 0
  for j = 1, #ARGV[2], 64 do
    fields[#fields + 1] = 's' .. n
    fields[#fields + 1] = string.sub(ARGV[2], j, j + 63)
    n = n + 1
  end
end
-- a new key: Redis never converts a hashtable back to a listpack
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
