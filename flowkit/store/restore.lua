-- flowkit restore: put one session back from a backup, unless Redis already holds a version
-- at least as new (restoring never overwrites newer data). All of it or nothing.
-- KEYS: 1 state, 2 hist, 3 seen, 4 snap, 5 fx.
-- ARGV: 1 the backup's version, 2 JSON {"state": [f, v, ...], "hist": [[id, [f, v, ...]], ...],
--       "seen": [score, member, ...], "snap": [f, v, ...], "fx": [f, v, ...], "ttl": ms}
-- Returns {'restored'|'skipped', the version that was there ('' = none), old flow, step, status}.
local v = tonumber(ARGV[1])
local cur = redis.call('HMGET', KEYS[1], 'version', 'flow', 'step', 'status')
local curv = tonumber(cur[1] or '')
if curv and curv >= v then return {'skipped', cur[1]} end
local d = cjson.decode(ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[1], unpack(d.state))
for _, e in ipairs(d.hist) do redis.call('XADD', KEYS[2], e[1], unpack(e[2])) end
if #d.seen > 0 then redis.call('ZADD', KEYS[3], unpack(d.seen)) end
if #d.snap > 0 then redis.call('HSET', KEYS[4], unpack(d.snap)) end
if #d.fx > 0 then redis.call('HSET', KEYS[5], unpack(d.fx)) end
if tonumber(d.ttl) > 0 then
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], d.ttl) end
end
return {'restored', cur[1] or '', cur[2] or '', cur[3] or '', cur[4] or ''}
