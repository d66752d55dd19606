-- flowkit commit: one atomic, versioned session commit (built by flowkit/store/contract.py).
--
-- Checks the dedupe record and the expected version, then writes the history element, the
-- state with its checksum, the dedupe record and the outbox -- or writes nothing at all.
-- Every key is in the session's slot ({s:<sid>}), so the script runs unchanged on Redis Cluster.
-- All checks come before the first write, and RPUSH (the only write that can fail: WRONGTYPE
-- on a layout-1 stream, which the caller migrates, or OOM) is the first write, so an error can
-- never leave half a commit behind. The history is a list of packed elements
-- (flowkit/store/entries.py), built whole by the caller.
--
-- KEYS[1] state: the session's state hash
-- KEYS[2] hist: the history list
-- KEYS[3] seen: the dedupe zset
-- KEYS[4] snap: the snapshot hash (expired with the session)
-- KEYS[5] fx: the outbox hash
-- KEYS[6] active: the active sessions index (single server only)
-- KEYS[7] timeouts: the timeouts index (single server only)
-- KEYS[8] outbox: the outbox index (single server only)
-- KEYS[9] flows: the set of flows (single server only)
-- ARGV[1] expected: the version the caller read (0 = a new session)
-- ARGV[2] dedupe: the message id's digest ('' = none)
-- ARGV[3] version: the new version
-- ARGV[4] state: the new state, packed (flowkit/store/statefield.py: cut here into fields s0, s1, ...)
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
-- ARGV[17] element: the history element (flowkit/store/entries.py)
-- ARGV[18] whole: '1' if the element holds the whole state, else '0'
-- ARGV[19] session_id: the session id (single server only)
-- ARGV[20] counter_prefix: the counter key prefix (single server only)
-- ARGV[21] outbox_member: the outbox index member of the new version (single server only)
-- Returns {'ok', version, base_ok '1'/'0', old flow, old step, old status}
--   or {'rebase', current version}: base_checksum is not the stored state's and the delta is
--       not a whole state; nothing was written, send the whole state as the delta
--   or {'conflict'|'duplicate'|'corrupt', current version, flow, step, status, updated_at,
--       timeout_at, outbox at of the new version ('' = none)[, checksum, state JSON (conflict only)]}
local cur = redis.call('HMGET', KEYS[1], 'version', 'checksum', 'flow', 'step', 'status', 'updated_at', 'timeout_at')

-- The state blob lives in fields of at most 64 bytes (s0, s1, ...) so the hash stays listpack-
-- encoded; the old layout's single 'state' field is still read, and wins (statefield.py).
local function read_blob()
  local plain = redis.call('HGET', KEYS[1], 'state')
  if plain then return plain end
  local parts, i = {}, 0
  while true do
    local p = redis.call('HGET', KEYS[1], 's' .. i)
    if not p then break end
    parts[#parts + 1] = p
    i = i + 1
  end
  return table.concat(parts)
end

local function blob_fields(blob)
  if #blob > 64 * 96 then return {'s0', blob}, 1 end  -- a hashtable anyway: one field
  local out, n = {}, 0
  for i = 1, #blob, 64 do
    out[#out + 1] = 's' .. n
    out[#out + 1] = string.sub(blob, i, i + 63)
    n = n + 1
  end
  return out, n
end

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
  t[10] = read_blob()
  return t
end

local new = tonumber(ARGV[3])
local base_ok = '1'
if oldv > 0 and (ARGV[6] == '' or ARGV[6] ~= (cur[2] or '')) then
  -- the caller diffed against something that is not the stored state: the whole state must
  -- be stored. The state travels packed (deflated), which Lua cannot unpack, so unless the
  -- element holds the whole state already the caller sends it again as one (nothing written yet).
  base_ok = '0'
  if ARGV[18] ~= '1' then return {'rebase', oldv} end
end

-- 1. the history element (first write: it is the one that can fail). A history ahead of the
-- state (the state key lost or replaced by an older one) is refused: versions only grow.
local last = redis.call('LINDEX', KEYS[2], -1)
if last then
  -- (a binary element starts with byte 1 and its version: '\1<v>:'; a JSON one with '[<v>,')
  local lv = tonumber(string.match(last, '^\1(%d+):') or string.match(last, '^%[(%d+),'))
  if lv and lv >= new then
    return redis.error_reply('ERR flowkit commit: version ' .. new .. ' is equal or smaller than the last in ' ..
      'the history (' .. lv .. '): the state key was lost or replaced; load() the session to recover it')
  end
end
local maxlen = tonumber(ARGV[15])
local n = redis.call('RPUSH', KEYS[2], ARGV[17])
if maxlen > 0 and n > maxlen then redis.call('LTRIM', KEYS[2], n - maxlen, -1) end

-- 2. the state (timeout_at in the same HSET; HDEL only if one was stored: cur[7])
local chunks, nchunks = blob_fields(ARGV[4])
local pttl = redis.call('PTTL', KEYS[1])  -- (read before the state may be written anew)
local live_again = ARGV[12] ~= '1' and pttl > 0
local anew = redis.call('HEXISTS', KEYS[1], 'state') == 1 or redis.call('HSTRLEN', KEYS[1], 's0') > 64
if anew then
  -- the old layout, or a state too big for a listpack before: the hash is a hashtable and
  -- Redis never converts one back, so it is written anew (every field it holds is written
  -- below; its TTL is put back after)
  redis.call('DEL', KEYS[1])
end
if ARGV[11] ~= '' and ARGV[12] ~= '1' then
  redis.call('HSET', KEYS[1], 'version', new, 'checksum', ARGV[5], 'flow', ARGV[7],
    'step', ARGV[8], 'status', ARGV[9], 'updated_at', ARGV[10], 'timeout_at', ARGV[11], unpack(chunks))
else
  redis.call('HSET', KEYS[1], 'version', new, 'checksum', ARGV[5], 'flow', ARGV[7],
    'step', ARGV[8], 'status', ARGV[9], 'updated_at', ARGV[10], unpack(chunks))
  if cur[7] then redis.call('HDEL', KEYS[1], 'timeout_at') end
end
if anew and pttl > 0 then redis.call('PEXPIRE', KEYS[1], pttl) end
-- the previous state's chunks past the new blob's
while redis.call('HDEL', KEYS[1], 's' .. nchunks) == 1 do nchunks = nchunks + 1 end

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
elseif live_again then
  -- a session ended under a retention, restarted by a process that keeps ended sessions
  -- (retention off): it is live again and must not expire
  for i = 1, 5 do redis.call('PERSIST', KEYS[i]) end
end

-- 6. single server: the derived indexes and counters, in the same script, so no crash can
-- leave them stale (on a cluster they live in other slots: flowkit/store/ops.py writes them
-- beside the script and undoes them when it wrote nothing). As ops._index_cmds and
-- codec.counter_move do it.
if #KEYS >= 9 then
  local sid = ARGV[19]
  if ARGV[12] ~= '1' then
    redis.call('ZADD', KEYS[6], ARGV[10], sid)
    if ARGV[11] ~= '' then redis.call('ZADD', KEYS[7], ARGV[11], sid) else redis.call('ZREM', KEYS[7], sid) end
  else
    redis.call('ZREM', KEYS[6], sid)
    redis.call('ZREM', KEYS[7], sid)
  end
  if ARGV[13] ~= '' then
    redis.call('ZADD', KEYS[8], 'NX', string.match(ARGV[13], '^(%d+):'), ARGV[21])
  end
  local function count(flow, step, status, n)
    if flow == '' then return end
    local key = ARGV[20] .. flow
    redis.call('HINCRBY', key, 'sessions', n)
    if status ~= '' then redis.call('HINCRBY', key, 'status:' .. status, n) end
    if step ~= '' then redis.call('HINCRBY', key, 'step:' .. step, n) end
  end
  local of, ost, oss = cur[3] or '', cur[4] or '', cur[5] or ''
  if of ~= ARGV[7] or ost ~= ARGV[8] or oss ~= ARGV[9] then
    count(of, ost, oss, -1)
    count(ARGV[7], ARGV[8], ARGV[9], 1)
    if of ~= ARGV[7] then redis.call('SADD', KEYS[9], ARGV[7]) end
  end
end

return {'ok', new, base_ok, cur[3] or '', cur[4] or '', cur[5] or ''}
