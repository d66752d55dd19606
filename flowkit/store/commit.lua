-- flowkit commit: one atomic, versioned session commit (see flowkit/store/ops.py).
--
-- Checks the expected version (or, for recovery, that the bad raw state is still there),
-- then writes the history element, the state with its checksum, the dedupe record, the
-- outbox and snapshots -- or writes nothing at all. Every key is in the session's slot
-- ({s:<sid>}), so the script runs unchanged on Redis Cluster.
--
-- All checks come before the first write, and RPUSH (the only write that can fail: WRONGTYPE
-- on a layout-1 stream, which the caller migrates, or OOM) is the first write, so an error can
-- never leave half a commit behind. The history is a list of packed elements
-- (flowkit/store/entries.py): ARGV[24] .. delta .. ']'.
--
-- KEYS: 1 state, 2 hist, 3 seen, 4 snap, 5 fx, 6 quarantine (the state key when unused)
-- ARGV:  1 mode 'c' commit | 'r' recover (quarantine + restore) | 'q' quarantine only
--        2 guard: expected version ('c') | raw version field ('r','q')
--        3 raw checksum field ('r','q')       4 dedupe key: the message id's digest ('' = none)
--        5 new version   6 state JSON   7 checksum   8 base checksum ('' = unknown)
--        9 flow  10 step  11 status  12 updated_at  13 timeout_at ('' = none)  14 terminal '1'/'0'
--       15 outbox value "<at>:<effects JSON>" ('' = none)   16 dedupe max
--       17 history max len (0 = all)   18 snapshot every (0 = never)
--       19 '1' = snapshot the old state (rollback)   20 drop snapshots below this version (0 = keep)
--       (18/19: flowkit sends 0: its snapshots are whole-state history elements now; the snap
--       hash holds only what the stream layout wrote, and is still read)
--       21 terminal ttl ms (0 = none)   22 quarantine reason   23 now ms
--       24 the history element without its delta and ']'   25 the delta (JSON)
local mode = ARGV[1]
local cur

local function truth(tag, v)
  -- the caller undoes its optimistic index writes from these facts
  local fxat = ''
  local fx = redis.call('HGET', KEYS[5], ARGV[5])
  if fx then fxat = string.match(fx, '^(%d+):') or '' end
  return {tag, v, cur[3] or '', cur[4] or '', cur[5] or '', cur[6] or '', cur[7] or '', fxat}
end

local created = 0
local ktype = 'hash'
if mode == 'c' then
  cur = redis.call('HMGET', KEYS[1], 'version', 'checksum', 'flow', 'step', 'status', 'updated_at', 'timeout_at')
  if ARGV[4] ~= '' then
    local seen = redis.call('ZSCORE', KEYS[3], ARGV[4])
    if seen then return truth('duplicate', tonumber(seen)) end
  end
  local v = tonumber(cur[1] or '0')
  if v == nil then return truth('corrupt', -1) end
  if v ~= tonumber(ARGV[2]) then
    -- the current state comes back with the conflict: the caller reruns its engine on it
    -- without another round trip (it verifies the checksum, as a load would)
    local t = truth('conflict', v)
    t[9] = cur[2] or ''
    t[10] = redis.call('HGET', KEYS[1], 'state') or ''
    return t
  end
else
  ktype = redis.call('TYPE', KEYS[1]).ok
  if ktype == 'hash' or ktype == 'none' then
    cur = redis.call('HMGET', KEYS[1], 'version', 'checksum', 'flow', 'step', 'status', 'updated_at', 'timeout_at')
  else
    cur = {'type:*', '', false, false, false, false, false}
  end
  if (cur[1] or '') ~= ARGV[2] or (cur[2] or '') ~= ARGV[3] then
    return truth('conflict', tonumber(cur[1] or '0') or -1)
  end
  if mode == 'q' then
    if redis.call('EXISTS', KEYS[6]) == 0 then
      created = 1
      if ktype == 'hash' then
        redis.call('HSET', KEYS[6], unpack(redis.call('HGETALL', KEYS[1])))
      elseif ktype ~= 'none' then
        redis.call('HSET', KEYS[6], 'q_dump', redis.call('DUMP', KEYS[1]))
      end
      redis.call('HSET', KEYS[6], 'q_reason', ARGV[22], 'q_at', ARGV[23], 'q_type', ktype)
    end
    return {'quarantined', created}
  end
end

local new = tonumber(ARGV[5])
local oldv = tonumber(cur[1] or '0') or 0
local base_ok = '1'
local delta = ARGV[25]
if mode == 'c' and oldv > 0 and (ARGV[8] == '' or ARGV[8] ~= (cur[2] or '')) then
  -- the caller diffed against something that is not the stored state: store the whole state
  base_ok = '0'
  delta = '{"r":' .. ARGV[6] .. '}'
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
local maxlen = tonumber(ARGV[17])
local n = redis.call('RPUSH', KEYS[2], ARGV[24] .. delta .. ']')
if maxlen > 0 and n > maxlen then redis.call('LTRIM', KEYS[2], n - maxlen, -1) end

-- 2. recovery: keep the bad state for inspection before it is replaced
if mode == 'r' then
  if redis.call('EXISTS', KEYS[6]) == 0 then
    created = 1
    if ktype == 'hash' then
      redis.call('HSET', KEYS[6], unpack(redis.call('HGETALL', KEYS[1])))
    elseif ktype ~= 'none' then
      redis.call('HSET', KEYS[6], 'q_dump', redis.call('DUMP', KEYS[1]))
    end
    redis.call('HSET', KEYS[6], 'q_reason', ARGV[22], 'q_at', ARGV[23], 'q_type', ktype)
  end
  redis.call('DEL', KEYS[1])
end

-- 3. snapshot of the old state (every N versions, and before a rollback), copied server side
local every = tonumber(ARGV[18])
if mode == 'c' and oldv > 0 and cur[2] and ((every > 0 and oldv % every == 0) or ARGV[19] == '1') then
  local oldjson = redis.call('HGET', KEYS[1], 'state')
  if oldjson then redis.call('HSET', KEYS[4], oldv, cur[2] .. ':' .. oldjson) end
  local keep = tonumber(ARGV[20])
  if keep > 0 then
    for _, f in ipairs(redis.call('HKEYS', KEYS[4])) do
      if tonumber(f) < keep then redis.call('HDEL', KEYS[4], f) end
    end
  end
end

-- 4. the state (timeout_at in the same HSET; HDEL only if one was stored: cur[7])
if ARGV[13] ~= '' and ARGV[14] ~= '1' then
  redis.call('HSET', KEYS[1], 'version', new, 'state', ARGV[6], 'checksum', ARGV[7], 'flow', ARGV[9],
    'step', ARGV[10], 'status', ARGV[11], 'updated_at', ARGV[12], 'timeout_at', ARGV[13])
else
  redis.call('HSET', KEYS[1], 'version', new, 'state', ARGV[6], 'checksum', ARGV[7], 'flow', ARGV[9],
    'step', ARGV[10], 'status', ARGV[11], 'updated_at', ARGV[12])
  if cur[7] then redis.call('HDEL', KEYS[1], 'timeout_at') end
end

-- 5. dedupe: the message id -> the version that applied it (bounded). Each version adds
-- at most one id, so the set cannot outgrow max before the version does: no ZCARD before.
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], new, ARGV[4])
  local max = tonumber(ARGV[16])
  if max > 0 and new > max then
    local n = redis.call('ZCARD', KEYS[3])
    if n > max then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - max - 1) end
  end
end

-- 6. the outbox: effects to run after the commit, until acknowledged
if ARGV[15] ~= '' then redis.call('HSET', KEYS[5], new, ARGV[15]) end

-- 7. cleanup: terminal sessions may expire from Redis (their history lives on in exports)
local ttl = tonumber(ARGV[21])
if ttl > 0 then
  for i = 1, 5 do
    if ARGV[14] == '1' then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
  end
elseif ARGV[14] ~= '1' and redis.call('PTTL', KEYS[1]) > 0 then
  -- a session ended under a retention, restarted by a process that keeps ended sessions
  -- (retention off): it is live again and must not expire
  for i = 1, 5 do redis.call('PERSIST', KEYS[i]) end
end

return {'ok', new, base_ok, cur[3] or '', cur[4] or '', cur[5] or '', created}
