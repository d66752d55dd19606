-- flowkit recover: quarantine a bad session state and replace it by a state rebuilt from its
-- last good version, as a new 'recovery' commit (built by flowkit/store/contract.py). Only
-- if the raw state is still what the caller judged bad; all checks come before the first
-- write and RPUSH (the one that can fail) is the first write. Every key is in the session's slot.
--
-- KEYS[1] state: the session's state key (any type: a bad one may not be a hash)
-- KEYS[2] hist: the history list
-- KEYS[3] seen: the dedupe zset (expired with the session)
-- KEYS[4] snap: the snapshot hash (expired with the session)
-- KEYS[5] fx: the outbox hash (expired with the session)
-- KEYS[6] quarantine: the quarantine hash for this bad state
-- ARGV[1] raw_version: the bad state's version field as read ('type:*' = not a hash)
-- ARGV[2] raw_checksum: the bad state's checksum field as read
-- ARGV[3] version: the new version
-- ARGV[4] state: the rebuilt state, packed (flowkit/store/statefield.py: cut here into fields s0, s1, ...)
-- ARGV[5] checksum: its checksum
-- ARGV[6] flow: the flow (index field)
-- ARGV[7] step: the step ('' = none)
-- ARGV[8] status: the status
-- ARGV[9] updated_at: ms
-- ARGV[10] timeout_at: ms ('' = none)
-- ARGV[11] terminal: '1' or '0'
-- ARGV[12] history_max: history elements kept (0 = all)
-- ARGV[13] terminal_ttl_ms: expiry of ended sessions (0 = none)
-- ARGV[14] reason: why the state is bad
-- ARGV[15] now: ms
-- ARGV[16] element: the history element (flowkit/store/entries.py; holding the whole state)
-- Returns {'ok', version, bad flow, bad step, bad status, 1 if the quarantine copy was made now / 0}
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

local new = tonumber(ARGV[3])

-- 1. the history element (first write: it is the one that can fail); versions only grow
local last = redis.call('LINDEX', KEYS[2], -1)
if last then
  local lv = tonumber(string.match(last, '^\1(%d+):') or string.match(last, '^%[(%d+),'))
  if lv and lv >= new then
    return redis.error_reply('ERR flowkit recover: version ' .. new .. ' is equal or smaller than the last in ' ..
      'the history (' .. lv .. '): the state key was lost or replaced; load() the session to recover it')
  end
end
local maxlen = tonumber(ARGV[12])
local n = redis.call('RPUSH', KEYS[2], ARGV[16])
if maxlen > 0 and n > maxlen then redis.call('LTRIM', KEYS[2], n - maxlen, -1) end

-- 2. keep the bad state for inspection before it is replaced
local created = 0
if redis.call('EXISTS', KEYS[6]) == 0 then
  created = 1
  if ktype == 'hash' then
    redis.call('HSET', KEYS[6], unpack(redis.call('HGETALL', KEYS[1])))
  elseif ktype ~= 'none' then
    redis.call('HSET', KEYS[6], 'q_dump', redis.call('DUMP', KEYS[1]))
  end
  redis.call('HSET', KEYS[6], 'q_reason', ARGV[14], 'q_at', ARGV[15], 'q_type', ktype)
end
redis.call('DEL', KEYS[1])

-- 3. the state (the key was deleted above: no old chunks to drop), its blob in fields of at
-- most 64 bytes so the hash stays listpack-encoded (statefield.py)
local chunks = {}
if #ARGV[4] > 64 * 96 then
  chunks = {'s0', ARGV[4]}
else
  for i = 1, #ARGV[4], 64 do
    chunks[#chunks + 1] = 's' .. (#chunks / 2)
    chunks[#chunks + 1] = string.sub(ARGV[4], i, i + 63)
  end
end
if ARGV[10] ~= '' and ARGV[11] ~= '1' then
  redis.call('HSET', KEYS[1], 'version', new, 'checksum', ARGV[5], 'flow', ARGV[6],
    'step', ARGV[7], 'status', ARGV[8], 'updated_at', ARGV[9], 'timeout_at', ARGV[10], unpack(chunks))
else
  redis.call('HSET', KEYS[1], 'version', new, 'checksum', ARGV[5], 'flow', ARGV[6],
    'step', ARGV[7], 'status', ARGV[8], 'updated_at', ARGV[9], unpack(chunks))
end

-- 4. cleanup, as a commit does
local ttl = tonumber(ARGV[13])
if ttl > 0 then
  for i = 1, 5 do
    if ARGV[11] == '1' then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
  end
elseif ARGV[11] ~= '1' and redis.call('PTTL', KEYS[1]) > 0 then
  for i = 1, 5 do redis.call('PERSIST', KEYS[i]) end
end

return {'ok', new, cur[3] or '', cur[4] or '', cur[5] or '', created}
