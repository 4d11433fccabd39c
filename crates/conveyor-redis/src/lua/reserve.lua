-- reserve: ARGV = prefix, now, lease_until, max, promote_limit, worker (the
-- attempts' worker, '' for none), then queue names. Each taken task records
-- its latest attempt's start and worker in one field, at = 'NOW WORKER'
-- (built once per call), in the same HSET.
-- Promotes due scheduled and retrying tasks (at most promote_limit), then takes
-- up to max ready tasks from the queues in the given order, skipping a paused
-- queue (a member of the PAUSED set, read inside this script, so a pause is
-- atomic with respect to every reservation), by priority then
-- id, skipping (and parking) tasks that do not head their ordering key, and
-- skipping (leaving ready) tasks whose handler's global limits refuse a start.
-- Returns per task: id, token, queue, handler, d (the fields that never
-- change, packed: see packed_of in common.lua), attempt, ordering_key|nil,
-- run_at.
local now = ARGV[2]
local lu = ARGV[3]
local max = tonumber(ARGV[4])
local promote = tonumber(ARGV[5])
local attempt_at = now .. ' ' .. ARGV[6]

local due = redis.call('ZRANGEBYSCORE', TIMERS, '-inf', now, 'LIMIT', 0, promote)
for _, id in ipairs(due) do
  local r = load(id, {'s', 'q', 'pr', 'ok', 'uk'})
  if r == nil or not TR.Due.from[r.s] then
    zrem(TIMERS, id)
  else
    move(r, 'Due', now, {})
  end
end
flush()

-- Global handler limits (see limits.lua for the GCRA arithmetic).
local gates = load_gates(now)
local skipped = 0

-- The Reserve edge of an available task, written out for the hot path: one
-- HMGET and one HSET per task, its sorted-set writes collected in plain arrays
-- (each member once) and sent as one command per key. It is checked here
-- against the generated prelude, which is what move() would do; should the state
-- machine change so it no longer holds, every task takes move() instead.
local FAST = TR.Reserve.from[AVAILABLE] and TR.Reserve.to == RUNNING
  and HOME[AVAILABLE] == 'ready' and HOME[RUNNING] == 'leases'
  and not INDEXED[AVAILABLE] and not INDEXED[RUNNING]
  and UNFINISHED[AVAILABLE] and UNFINISHED[RUNNING] and not FINISHED[RUNNING]
local RUNNING_S, AVAILABLE_S = STATE_STR[RUNNING], STATE_STR[AVAILABLE]

-- Flat reply: 8 items per task (false for none).
local out = {}
local picked = 0
local leased = {}
local function reply(id, tk, q, h, d, a, ok, ra)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, tk, q, h
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = d, a, ok or false, ra
end
-- What the generic path reads: d, or for a task stored before it the fields
-- d packs.
local fields = {'s', 'q', 'pr', 'ok', 'uk', 'a', 'tk', 'h', 'd', 'ra', 'ma', 'ca', 'to', 'tc', 'p'}
-- One ready-set member m of queue q: taken (true), left in place because its
-- handler is at a limit ('skip'), moved to the parked set because it waits
-- behind its ordering key's head ('park'), or dropped from the ready set
-- (false: gone or elsewhere).
local function take_slow(q, m, id)
  local r = load(id, fields)
  if r == nil or r.s ~= AVAILABLE or r.q ~= q then return false end
  if not is_head(r) then return 'park' end
  if gates and not admit(gates, need(r, 'h')) then return 'skip' end
  local a = num(r, 'a') + 1
  local tk = num(r, 'tk') + 1
  r.lu = lu
  move(r, 'Reserve', now, {'a', a, 'tk', tk, 'at', attempt_at})
  reply(id, tk, q, need(r, 'h'), packed_of(r), a, r.ok, need(r, 'ra'))
  return true
end

local function take(q, m, rm_ready)
  local id = unpad(m)
  if not FAST then return take_slow(q, m, id) end
  local key = task_key(id)
  local v = redis.call('HMGET', key, 's', 'q', 'ok', 'h', 'a', 'tk', 'd', 'ra')
  local a, tk = tonumber(v[5]), tonumber(v[6])
  -- Anything unusual (gone, another state, a missing field, a number that
  -- doesn't parse, a task stored before d) takes the generic path, which
  -- also reports bad data.
  if v[1] ~= AVAILABLE_S or v[2] ~= q or not (a and tk and v[4] and v[7] and v[8]) then
    return take_slow(q, m, id)
  end
  local ok, h = v[3], v[4]
  if ok and not heads_key(q, ok, id) then return 'park' end
  if gates and not admit(gates, h) then return 'skip' end
  a, tk = a + 1, tk + 1
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, tk, q, h
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = v[7], a, ok, v[8]
  -- Numbers go out as strings formatted here: Redis 7.0 formats a Lua number
  -- argument with '%.17g', which costs far more than '%d'.
  redis.call('HSET', key, 's', RUNNING_S, 'a', string.format('%d', a), 'tk', string.format('%d', tk),
    'at', attempt_at)
  rm_ready[#rm_ready + 1] = m
  leased[#leased + 1] = lu
  leased[#leased + 1] = id
  count_running(h, 1)
  if ok then redis.call('SET', ordrun_key(q, ok), id) end
  return true
end

for qi = 7, #ARGV do
  if picked >= max or skipped >= SKIP_LIMIT then break end
  local q = ARGV[qi]
  local rk = ready_key(q)
  local rm_ready = {}
  local cursor = 0
  local paused = redis.call('SISMEMBER', PAUSED, q) == 1
  while not paused and picked < max and skipped < SKIP_LIMIT do
    local chunk = max - picked
    if gates and chunk < 100 then chunk = 100 end
    local ms = redis.call('ZRANGE', rk, cursor, cursor + chunk - 1)
    if #ms == 0 then break end
    cursor = cursor + #ms
    for _, m in ipairs(ms) do
      local t = take(q, m, rm_ready)
      if t == 'skip' then
        -- Its handler is at a limit: it stays ready, in its place.
        skipped = skipped + 1
        if skipped >= SKIP_LIMIT then break end
      elseif t then
        picked = picked + 1
        if picked >= max then break end
      elseif t == 'park' then
        -- It re-enters the ready set when it heads its key.
        zrem(rk, m)
        zadd(parked_key(q), unpad(m), unpad(m))
      else
        -- A stray entry: the task is gone or lives elsewhere.
        zrem(rk, m)
      end
    end
  end
  bulk('ZREM', rk, rm_ready)
  if #leased > 0 then
    bulk('ZADD', leases_key(q), leased)
    leased = {}
  end
end
flush()
store_gates(gates)
return out
