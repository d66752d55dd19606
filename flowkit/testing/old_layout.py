"""Layout 1 (history in a Redis stream), as flowkit wrote it up to the compact layout.

Kept for two jobs only: tests and ``bench/memory.py`` write sessions exactly as the old code
did (:func:`old_commit` runs the old commit script, captured verbatim), so that migration,
backup and the memory comparison run against real old-layout data. Reading old entries lives
in :mod:`flowkit.store.legacy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from flowkit.store import codec, legacy
from flowkit.store import keys as K
from flowkit.store.values import StoreConfig


class _Evaluator(Protocol):
    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any: ...


def old_commit(client: _Evaluator, cfg: StoreConfig, sid: str, expected: int, state: dict[str, Any],
               record: dict[str, Any], *, previous: Mapping[str, Any] | None = None, message_id: str | None = None,
               effects: Iterable[Mapping[str, Any]] = (), timeout_at_ms: int | None = None) -> str:
    """One commit exactly as layout 1 stored it (no derived indexes); returns the script's tag."""
    k = K.session_keys(sid)
    new = expected + 1
    state["version"] = new
    record["version"] = new
    codec.normalize_record(record)
    now = cfg.now_ms()
    state_json = codec.canonical(state)
    effects = list(effects)
    fx = b"%d:%b" % (now, codec.canonical(effects)) if effects else b""
    base_sum = ""
    delta_json: str | bytes
    if previous is not None and expected > 0 and previous.get("version") == expected:
        base_sum = codec.checksum(codec.canonical(previous))
        delta_json = codec.canonical(_whole_lists(codec.state_delta(previous, state, record["ts"]), previous))
    else:
        delta_json = codec.full_delta_json(state_json)
    state_sum = codec.checksum(state_json)
    mid = message_id if message_id is not None else record["message_id"]
    terminal = codec.is_terminal(state["status"])
    timeout = None if terminal or timeout_at_ms is None else int(timeout_at_ms)
    maxlen = cfg.history_max_len or 0
    args = ("c", expected, "", codec.message_key(mid) if mid else "", new, state_json, state_sum, base_sum,
            state["flow"], state["step"] or "", state["status"], state["updated_at"],
            "" if timeout is None else timeout, int(terminal), fx, cfg.dedupe_max, maxlen, cfg.snapshot_every, 0,
            max(0, new - maxlen) if maxlen else 0, cfg.terminal_ttl_ms or 0, "", now,
            f"{new}-{record['ts']}", *legacy.entry_values(record, state, delta_json, state_sum))
    reply = client.eval(OLD_COMMIT, 6, *k.all, k.state, *args)
    tag = reply[0]
    return tag.decode() if isinstance(tag, bytes) else str(tag)


def _whole_lists(delta: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """The delta as layout 1 wrote it: a list that grew is set whole (no "a")."""
    out = {k: v for k, v in delta.items() if k not in ("a", "p")}
    if "a" in delta:
        out.setdefault("s", {}).update({k: [*old[k], *items] for k, items in delta["a"].items()})
    if "p" in delta:
        out["p"] = {k: _whole_lists(sub, old.get(k) or {}) for k, sub in delta["p"].items()}
    return out


#: commit.lua of layout 1, rendered (field list filled in), byte for byte as the old code ran it.
OLD_COMMIT = r"""-- flowkit commit: one atomic, versioned session commit (see flowkit/store/ops.py).
--
-- Checks the expected version (or, for recovery, that the bad raw state is still there),
-- then writes the history entry, the state with its checksum, the dedupe record, the
-- outbox and snapshots -- or writes nothing at all. Every key is in the session's slot
-- ({s:<sid>}), so the script runs unchanged on Redis Cluster.
--
-- All checks come before the first write, and XADD (the only write that can fail: its id
-- must grow) is the first write, so an error can never leave half a commit behind.
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
--       21 terminal ttl ms (0 = none)   22 quarantine reason   23 now ms
--       24 the history entry id "<version>-<ts>"   25.. the entry values, in FIELDS order
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
local delta = ARGV[36]
if mode == 'c' and oldv > 0 and (ARGV[8] == '' or ARGV[8] ~= (cur[2] or '')) then
  -- the caller diffed against something that is not the stored state: store the whole state
  base_ok = '0'
  delta = '{"r":' .. ARGV[6] .. '}'
end

-- 1. the history entry (first write: it is the one that can fail). The field/value list
-- is written out by scripts.py ('event', ARGV[25], ..., 'delta', delta, ...): a literal
-- call is cheaper than building a table and unpacking it on every commit.
local maxlen = tonumber(ARGV[17])
if maxlen > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', maxlen, ARGV[24], 'event', ARGV[25], 'from_step', ARGV[26], 'to_step', ARGV[27], 'path', ARGV[28], 'status', ARGV[29], 'message_id', ARGV[30], 'input', ARGV[31], 'error', ARGV[32], 'actor', ARGV[33], 'flow', ARGV[34], 'flow_version', ARGV[35], 'delta', delta, 'checksum', ARGV[37])
else
  redis.call('XADD', KEYS[2], ARGV[24], 'event', ARGV[25], 'from_step', ARGV[26], 'to_step', ARGV[27], 'path', ARGV[28], 'status', ARGV[29], 'message_id', ARGV[30], 'input', ARGV[31], 'error', ARGV[32], 'actor', ARGV[33], 'flow', ARGV[34], 'flow_version', ARGV[35], 'delta', delta, 'checksum', ARGV[37])
end

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
"""


# ---------------------------------------------------------------- layout 2 (JSON list elements)


def layout2_elements(records: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """Full records (with ``delta`` and ``checksum``) as the JSON array elements flowkit's commit
    wrote before the binary elements (captured from ``flowkit.store.entries`` of that time):
    ``[version, ts, event, from_step, to_step, path, status, actor, input, error, flow,
    flow_version, checksum, message_id, why, delta]``; the flow written out on the first
    element, after a change and with a whole state, else 0 ("the previous element's")."""
    from flowkit.store.entries import _ACTOR, _EVENT, _STATUS, _short_mid

    out: list[bytes] = []
    prev: tuple[str, str] | None = None
    for rec in records:
        flow = (rec["flow"], rec["flow_version"])
        same = flow == prev and "r" not in rec["delta"]
        prev = flow
        path, from_step, to = rec["path"], rec["from_step"], rec["to_step"]
        to_v: Any = 0 if to == (path[-1] if path else from_step) else [to]
        digest = str(rec["checksum"])
        items = [rec["version"], rec["ts"], _EVENT[rec["event"]], from_step, to_v, list(path), _STATUS[rec["status"]],
                 _ACTOR[rec["actor"]], rec["input"], rec["error"], 0 if same else flow[0], 0 if same else flow[1],
                 int(digest) if digest.lstrip("-").isdigit() else digest,
                 _short_mid(rec["session_id"], rec["message_id"]), rec.get("why") or None]
        out.append(codec.canonical(items, trusted=True)[:-1] + b"," + codec.canonical(rec["delta"]) + b"]")
    return out
