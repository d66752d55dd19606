-- flowkit quarantine: copy a bad session state aside for inspection, when no good version can
-- be rebuilt (built by flowkit/store/contract.py). Only if the raw state is still what the
-- caller judged bad; the state itself is left as it is. Both keys are in the session's slot.
--
-- KEYS[1] state: the session's state key (any type: a bad one may not be a hash)
-- KEYS[2] quarantine: the quarantine hash for this bad state
-- ARGV[1] raw_version: the bad state's version field as read ('type:*' = not a hash)
-- ARGV[2] raw_checksum: the bad state's checksum field as read
-- ARGV[3] reason: why the state is bad
-- ARGV[4] now: ms
-- Returns {'quarantined', 1 if the copy was made now / 0 if it was there}
--   or {'conflict', the current version (-1 = not a number)}: the state changed, read again
local ktype = redis.call('TYPE', KEYS[1]).ok
local cur
if ktype == 'hash' or ktype == 'none' then
  cur = redis.call('HMGET', KEYS[1], 'version', 'checksum', 'flow', 'step', 'status', 'updated_at', 'timeout_at')
else
  cur = {'type:*', '', false, false, false, false, false}
end
if (cur[1] or '') ~= ARGV[1] or (cur[2] or '') ~= ARGV[2] then
  return {'conflict', tonumber(cur[1] or '0') or -1}
end
local created = 0
if redis.call('EXISTS', KEYS[2]) == 0 then
  created = 1
  if ktype == 'hash' then
    redis.call('HSET', KEYS[2], unpack(redis.call('HGETALL', KEYS[1])))
  elseif ktype ~= 'none' then
    redis.call('HSET', KEYS[2], 'q_dump', redis.call('DUMP', KEYS[1]))
  end
  redis.call('HSET', KEYS[2], 'q_reason', ARGV[3], 'q_at', ARGV[4], 'q_type', ktype)
end
return {'quarantined', created}
