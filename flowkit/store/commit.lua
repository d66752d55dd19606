-- flowkit commit: one atomic, versioned session commit (built by flowkit/store/contract.py).
--
-- Checks the dedupe record and the expected version, then writes the history element, the
-- state with its checksum, the dedupe record and the outbox -- or writes nothing at all.
-- Every key is in the session's slot ({s:<sid>}), so the script runs unchanged on Redis Cluster.
-- All checks come before the first write, and RPUSH (the only write that can fail: WRONGTYPE
-- on a layout-1 stream, which the caller migrates, or OOM) is the first write, so an error can
-- never leave half a commit behind. The history is a list of packed elements
-- (flowkit/store/entries.py): head .. delta .. ']'.
--
-- KEYS[1] state: the session's state hash
-- KEYS[2] hist: the history list
-- KEYS[3] seen: the dedupe zset
-- KEYS[4] snap: the snapshot hash (expired with the session)
-- KEYS[5] fx: the outbox hash
-- ARGV[1] expected: the version the caller read (0 = a new session)
-- ARGV[2] dedupe: the message id's digest ('' = none)
-- ARGV[3] version: the new version
-- ARGV[4] state: the new state JSON
-- ARGV[5] checksum: the new state's checksum
-- ARGV[6] base_checksum: checksum of the state the delta was made against ('' = unknown)
-- ARGV[7] flow: the flow (index field)
-- ARGV[8] step: the step ('' = none)
-- ARGV[9] status: the status
-- ARGV[10] updated_at: ms
-- ARGV[11] timeout_at: ms ('' = none)
-- ARGV[12] terminal: '1' or '0'
-- ARGV[13] outbox: "<at>:<effects JSON>" ('' = none)
-- ARGV[14] dedupe_max: dedupe records kept (0 = all)
-- ARGV[15] history_max: history elements kept (0 = all)
-- ARGV[16] terminal_ttl_ms: expiry of ended sessions (0 = none)
-- ARGV[17] head: the history element without its delta and ']'
-- ARGV[18] delta: the delta (JSON)
-- Returns {'ok', version, base_ok '1'/'0', old flow, old step, old status}
--   or {'conflict'|'duplicate'|'corrupt', current version, flow, step, status, updated_at,
--       timeout_at, outbox at of the new version ('' = none)[, checksum, state JSON (conflict only)]}
local cur = redis.call('HMGET', KEYS[1], 'version', 'checksum', 'flow', 'step', 'status', 'updated_at', 'timeout_at')

local function truth(tag, v)
  -- the caller undoes its optimistic index writes from these facts
  local fxat = ''
  local fx = redis.call('HGET', KEYS[5], ARGV[3])
  if fx then fxat = string.match(fx, '^(%d+):') or '' end
  return {tag, v, cur[3] or '', cur[4] or '', cur[5] or '', cur[6] or '', cur[7] or '', fxat}
end

if ARGV[2] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[3], ARGV[2])
  if seen then return truth('duplicate', tonumber(seen)) end
end
local oldv = tonumber(cur[1] or '0')
if oldv == nil then return truth('corrupt', -1) end
if oldv ~= tonumber(ARGV[1]) then
  -- the current state comes back with the conflict: the caller reruns its engine on it
  -- without another round trip (it verifies the checksum, as a load would)
  local t = truth('conflict', oldv)
  t[9] = cur[2] or ''
  t[10] = redis.call('HGET', KEYS[1], 'state') or ''
  return t
end

local new = tonumber(ARGV[3])
local base_ok = '1'
local delta = ARGV[18]
if oldv > 0 and (ARGV[6] == '' or ARGV[6] ~= (cur[2] or '')) then
  -- the caller diffed against something that is not the stored state: store the whole state
  base_ok = '0'
  delta = '{"r":' .. ARGV[4] .. '}'
end

-- 1. the history element (first write: it is the one that can fail). A history ahead of the
-- state (the state key lost or replaced by an older one) is refused: versions only grow.
local last = redis.call('LINDEX', KEYS[2], -1)
if last then
  local lv = tonumber(string.match(last, '^%[(%d+),'))
  if lv and lv >= new then
    return redis.error_reply('ERR flowkit commit: version ' .. new .. ' is equal or smaller than the last in ' ..
      'the history (' .. lv .. '): the state key was lost or replaced; load() the session to recover it')
  end
end
local maxlen = tonumber(ARGV[15])
local n = redis.call('RPUSH', KEYS[2], ARGV[17] .. delta .. ']')
if maxlen > 0 and n > maxlen then redis.call('LTRIM', KEYS[2], n - maxlen, -1) end

-- 2. the state (timeout_at in the same HSET; HDEL only if one was stored: cur[7])
if ARGV[11] ~= '' and ARGV[12] ~= '1' then
  redis.call('HSET', KEYS[1], 'version', new, 'state', ARGV[4], 'checksum', ARGV[5], 'flow', ARGV[7],
    'step', ARGV[8], 'status', ARGV[9], 'updated_at', ARGV[10], 'timeout_at', ARGV[11])
else
  redis.call('HSET', KEYS[1], 'version', new, 'state', ARGV[4], 'checksum', ARGV[5], 'flow', ARGV[7],
    'step', ARGV[8], 'status', ARGV[9], 'updated_at', ARGV[10])
  if cur[7] then redis.call('HDEL', KEYS[1], 'timeout_at') end
end

-- 3. dedupe: the message id -> the version that applied it (bounded). Each version adds
-- at most one id, so the set cannot outgrow max before the version does: no ZCARD before.
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[3], new, ARGV[2])
  local max = tonumber(ARGV[14])
  if max > 0 and new > max then
    local c = redis.call('ZCARD', KEYS[3])
    if c > max then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, c - max - 1) end
  end
end

-- 4. the outbox: effects to run after the commit, until acknowledged
if ARGV[13] ~= '' then redis.call('HSET', KEYS[5], new, ARGV[13]) end

-- 5. cleanup: terminal sessions may expire from Redis (their history lives on in exports)
local ttl = tonumber(ARGV[16])
if ttl > 0 then
  for i = 1, 5 do
    if ARGV[12] == '1' then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
  end
elseif ARGV[12] ~= '1' and redis.call('PTTL', KEYS[1]) > 0 then
  -- a session ended under a retention, restarted by a process that keeps ended sessions
  -- (retention off): it is live again and must not expire
  for i = 1, 5 do redis.call('PERSIST', KEYS[i]) end
end

return {'ok', new, base_ok, cur[3] or '', cur[4] or '', cur[5] or ''}
