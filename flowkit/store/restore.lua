-- flowkit restore: put one session back from a backup, unless Redis already holds a version
-- at least as new (restoring never overwrites newer data). All of it or nothing: every
-- check comes before the first write (Redis does not roll a script back on an error).
-- Built by flowkit/store/contract.py. On a single server all KEYS and ARGV are sent: the
-- derived indexes and counters are then written in the same script, so a restore killed at
-- any point leaves every session either fully restored (indexes included) or untouched. On a
-- cluster (the indexes live in other slots) only KEYS[1..5] and ARGV[1..2] are sent.
--
-- KEYS[1] state: the session's state hash
-- KEYS[2] hist: the history list
-- KEYS[3] seen: the dedupe zset
-- KEYS[4] snap: the snapshot hash
-- KEYS[5] fx: the outbox hash
-- KEYS[6] active: the active sessions index (single server only)
-- KEYS[7] timeouts: the timeouts index (single server only)
-- KEYS[8] outbox: the outbox index (single server only)
-- KEYS[9] flows: the set of flows (single server only)
-- ARGV[1] version: the backup's version
-- ARGV[2] data: JSON {"state": [f, v, ...], "hist": [element as hex, ...] (binary elements,
--         flowkit/store/entries.py, packed by backup.py from the file's entries; JSON cannot
--         carry bytes), "seen": [score, member, ...], "snap": [f, v, ...],
--         "fx": [f, v, ...], "ttl": ms}
-- ARGV[3] session_id: the session id (single server only)
-- ARGV[4] counter_prefix: the counter key prefix (single server only)
-- ARGV[5] terminal: the terminal statuses, comma-separated (single server only)
-- Returns {'restored'|'skipped', the version that was there ('' = none), old flow, step, status}.
local TERMINAL = {}
for w in string.gmatch(ARGV[5] or '', '[^,]+') do TERMINAL[w] = true end
local v = tonumber(ARGV[1])
local cur = redis.call('HMGET', KEYS[1], 'version', 'flow', 'step', 'status')
local curv = tonumber(cur[1] or '')
if curv and curv >= v then return {'skipped', cur[1]} end
local d = cjson.decode(ARGV[2])

local function bad(what) return redis.error_reply('ERR flowkit restore: ' .. what .. '; nothing was written') end
local function strings(t, step)
  if type(t) ~= 'table' or #t % step ~= 0 then return false end
  for _, x in ipairs(t) do if type(x) ~= 'string' then return false end end
  return true
end
if not strings(d.state, 2) or #d.state == 0 then return bad('the state is not a list of field/value pairs') end
if not strings(d.seen, 2) or not strings(d.snap, 2) or not strings(d.fx, 2) then
  return bad('seen, snap or fx is not a list of string pairs')
end
for i = 1, #d.seen, 2 do
  if not tonumber(d.seen[i]) then return bad('a dedupe score is not a number') end
end
if not strings(d.hist, 1) or tonumber(d.ttl) == nil then return bad('hist or ttl is malformed') end
local last_v = 0
for i, x in ipairs(d.hist) do
  if #x % 2 == 1 or string.find(x, '[^0-9a-f]') then return bad('a history element is not hex') end
  local e = string.gsub(x, '..', function(cc) return string.char(tonumber(cc, 16)) end)
  d.hist[i] = e
  local ev = tonumber(string.match(e, '^\1(%d+):') or string.match(e, '^%[(%d+),') or '')
  if not ev then return bad('a history element is malformed') end
  if ev <= last_v then return bad('history versions do not increase') end
  last_v = ev
end
local new = {}
for i = 1, #d.state, 2 do new[d.state[i]] = d.state[i + 1] end
if tonumber(new.version) ~= v then return bad('the state hash holds another version') end
if not tonumber(new.updated_at or '') or (new.timeout_at and new.timeout_at ~= '' and not tonumber(new.timeout_at)) then
  return bad('updated_at or timeout_at is not a number')
end
for i = 1, #d.fx, 2 do
  if not tonumber(d.fx[i]) or not string.match(d.fx[i + 1], '^%d+:') then return bad('an outbox entry is malformed') end
end

local indexed = #KEYS >= 9
local old_fx = {}
if indexed then old_fx = redis.call('HKEYS', KEYS[5]) end

-- First write: one Redis refuses when it is out of memory (HSET is deny-oom, DEL is not, and
-- once a script has written, Redis lets it finish). Overwritten by the DEL right after.
redis.call('HSET', KEYS[1], 'version', ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
-- the state JSON goes into fields of at most 64 bytes (s0, s1, ...: flowkit/store/statefield.py,
-- not deflated: Lua has no zlib; the next commit packs it) so the hash stays listpack-encoded
local fields = {}
for i = 1, #d.state, 2 do
  local f, val = d.state[i], d.state[i + 1]
  if f == 'state' and #val <= 64 * 96 then
    local n = 0
    for j = 1, #val, 64 do
      fields[#fields + 1] = 's' .. n
      fields[#fields + 1] = string.sub(val, j, j + 63)
      n = n + 1
    end
  else
    fields[#fields + 1] = f == 'state' and 's0' or f
    fields[#fields + 1] = val
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
for i = 1, #d.hist, 1000 do  -- (unpack is bounded by Lua's C stack)
  redis.call('RPUSH', KEYS[2], unpack(d.hist, i, math.min(i + 999, #d.hist)))
end
if #d.seen > 0 then redis.call('ZADD', KEYS[3], unpack(d.seen)) end
if #d.snap > 0 then redis.call('HSET', KEYS[4], unpack(d.snap)) end
if #d.fx > 0 then redis.call('HSET', KEYS[5], unpack(d.fx)) end
if tonumber(d.ttl) > 0 then
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], d.ttl) end
end

if indexed then
  -- the same entries flowkit.store.ops writes beside a commit (and reconcile expects)
  local sid = ARGV[3]
  if new.status and not TERMINAL[new.status] then
    redis.call('ZADD', KEYS[6], tonumber(new.updated_at) or 0, sid)
    if new.timeout_at and new.timeout_at ~= '' then
      redis.call('ZADD', KEYS[7], new.timeout_at, sid)
    else
      redis.call('ZREM', KEYS[7], sid)
    end
  else
    redis.call('ZREM', KEYS[6], sid)
    redis.call('ZREM', KEYS[7], sid)
  end
  for _, f in ipairs(old_fx) do redis.call('ZREM', KEYS[8], sid .. '#' .. f) end
  for i = 1, #d.fx, 2 do
    redis.call('ZADD', KEYS[8], tonumber(string.match(d.fx[i + 1], '^(%d+):') or '0'), sid .. '#' .. d.fx[i])
  end
  -- counters: take the replaced session out, put the restored one in
  local function count(flow, step, status, n)
    if not flow or flow == '' then return end
    local key = ARGV[4] .. flow
    redis.call('HINCRBY', key, 'sessions', n)
    if status and status ~= '' then redis.call('HINCRBY', key, 'status:' .. status, n) end
    if step and step ~= '' then redis.call('HINCRBY', key, 'step:' .. step, n) end
  end
  if cur[2] ~= new.flow or cur[3] ~= new.step or cur[4] ~= new.status then
    count(cur[2], cur[3], cur[4], -1)
    count(new.flow, new.step, new.status, 1)
    if new.flow and new.flow ~= '' then redis.call('SADD', KEYS[9], new.flow) end
  end
end
return {'restored', cur[1] or '', cur[2] or '', cur[3] or '', cur[4] or ''}
