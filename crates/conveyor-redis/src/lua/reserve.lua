-- reserve: ARGV = prefix, now, lease_until, max, promote_limit, worker (the
-- attempts' worker, '' for none), the number of wanted handlers (0: any)
-- and their names, then queue names. Each taken task records
-- its latest attempt's start and worker, 'NOW WORKER' (built once per call),
-- in its state record.
-- Promotes due scheduled and retrying tasks (at most promote_limit), then takes
-- up to max ready tasks from the queues in the given order, skipping a paused
-- queue (a member of the PAUSED set, read inside this script, so a pause is
-- atomic with respect to every reservation), by priority then
-- id, skipping (and parking) tasks that do not head their ordering key, and
-- skipping (leaving ready) tasks whose handler's global limits refuse a start
-- or that the caller does not want (a worker without their handler).
-- Returns per task: id, its state record and its data record after the
-- step (see "Task records" in common/records.lua: token, attempt and run-at; queue,
-- handler, ordering key and d).
local now = ARGV[2]
local lu = ARGV[3]
local max = tonumber(ARGV[4])
local promote = tonumber(ARGV[5])
local attempt_at = now .. ' ' .. ARGV[6]
-- The handlers the caller runs, or nil for any.
local n_wanted = tonumber(ARGV[7]) or 0
local wanted = nil
if n_wanted > 0 then
  wanted = {}
  for i = 8, 7 + n_wanted do wanted[ARGV[i]] = true end
end
local first_queue = 8 + n_wanted

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

-- The Reserve edge of an available task, written out for the hot path: the
-- records of a chunk of ready tasks read with one HMGET per record hash,
-- their new states written with one HSET per queue, their sorted-set writes
-- collected in plain arrays (each member once) and sent as one command per
-- key. It is checked here against the generated prelude, which is what
-- move() would do; should the state machine change so it no longer holds,
-- every task takes move() instead.
local FAST = TR.Reserve.from[AVAILABLE] and TR.Reserve.to == RUNNING
  and HOME[AVAILABLE] == 'ready' and HOME[RUNNING] == 'leases'
  and not INDEXED[AVAILABLE] and not INDEXED[RUNNING]
  and UNFINISHED[AVAILABLE] and UNFINISHED[RUNNING] and not FINISHED[RUNNING]
local RUNNING_S, AVAILABLE_S = STATE_STR[RUNNING], STATE_STR[AVAILABLE]

-- Flat reply: 3 items per task: id, its state record and its data record
-- (see "Task records" in common/records.lua).
local out = {}
local picked = 0
-- The new state records of one queue's taken tasks (id, value, ...).
local states = {}
-- The ready-set members of one queue's taken tasks.
local rm_ready = {}
-- How many of one queue's tasks take() took: rm_ready holds that many,
-- states two items each (kept by hand: Lua's # searches for a table's end
-- at each use). out holds 3 items for each of the picked tasks.
local n_taken = 0
-- The lease token of this call's tasks, taken on the first; the head of
-- their new state records (record layout), up to the attempts; their tail,
-- from the run-at's end.
-- A token is the namespace's token counter moved past the server's clock in
-- microseconds: unique while the counter lives, and never one issued
-- before a failover that lost the counter's latest steps (a replica
-- promoted without them), for its clock is past them by the failover's
-- length (as long as the servers' clocks agree to better than that).
local token, running_head
local attempt_tail = ' ' .. attempt_at
local function call_token()
  if not token then
    local t = redis.call('TIME')
    local n = (tonumber(redis.call('GET', TOKENS)) or 0) + 1
    local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if clock > n then n = clock end
    token = string.format('%d', n)
    redis.call('SET', TOKENS, token)
    running_head = RUNNING_S .. ' ' .. token .. '  '
  end
  return token
end
-- An available task's state record: its attempts and run-at, checked to be
-- available with no finished-at.
local AVAILABLE_STATE = '^' .. AVAILABLE_S .. ' %d+  (%d+) (%-?%d+) '
-- The run-at in a data record, after the priority.
local FRESH_RUN_AT = '^%-?%d+ (%-?%d+) '
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
  if wanted and not wanted[need(r, 'h')] then return 'skip' end
  if gates and not admit(gates, need(r, 'h')) then return 'skip' end
  local a = num(r, 'a') + 1
  -- Every task takes the call's token (one of a hash of its own used to
  -- count its own: a count a failover could roll back).
  local tk = call_token()
  r.lu = lu
  -- The call's token: its lease is the call's group.
  r.group = r.layout
  move(r, 'Reserve', now, {'a', a, 'tk', tk, 'at', attempt_at})
  -- After the items of the tasks picked before it (counted on its return).
  local n = 3 * picked
  out[n + 1] = id
  out[n + 2] = state_value({s = RUNNING, tk = tk, a = a, ra = need(r, 'ra'), at = attempt_at})
  out[n + 3] = r.data or data_head(q, need(r, 'h'), need(r, 'pr'), r.uk, r.ok, need(r, 'ra'))
    .. packed_of(r)
  return true
end

-- sv, dv: the task's state and data records (false when it has none: a
-- task without a state record is available since its enqueue).
local function take(q, m, id, sv, dv)
  if not dv then return take_slow(q, m, id) end
  local tq, h, _, ok, pat = route(dv)
  local a, ra
  if sv then
    a, ra = match(sv, AVAILABLE_STATE)
  elseif tq then
    a, ra = '0', match(dv, FRESH_RUN_AT, pat)
  end
  -- Anything unusual (another state, a record that does not decode,
  -- another queue) takes the generic path, which also reports bad data.
  if tq ~= q or not ra then return take_slow(q, m, id) end
  if ok and not heads_key(q, ok, id) then return 'park' end
  if wanted and not wanted[h] then return 'skip' end
  if gates and not admit(gates, h) then return 'skip' end
  if not token then call_token() end
  local state = running_head .. succ(a) .. ' ' .. ra .. attempt_tail
  local n = 3 * picked
  out[n + 1], out[n + 2], out[n + 3] = id, state, dv
  n = n_taken + 1
  n_taken = n
  rm_ready[n] = m
  n = 2 * n
  states[n - 1], states[n] = id, state
  group_add(q, id)
  count_running(h, 1)
  if ok then redis.call('SET', ordrun_key(q, ok), id) end
  return true
end

for qi = first_queue, #ARGV do
  if picked >= max or skipped >= SKIP_LIMIT then break end
  local q = ARGV[qi]
  local rk = ready_key(q)
  local cursor = 0
  local paused = redis.call('SISMEMBER', PAUSED, q) == 1
  while not paused and picked < max and skipped < SKIP_LIMIT do
    local chunk = max - picked
    if (gates or wanted) and chunk < 100 then chunk = 100 end
    if chunk > CHUNK then chunk = CHUNK end
    local ms = redis.call('ZRANGE', rk, cursor, cursor + chunk - 1)
    if #ms == 0 then break end
    cursor = cursor + #ms
    local ids = {}
    for i, m in ipairs(ms) do ids[i] = unpad(m) end
    local svs, dvs = {}, {}
    if FAST then
      svs = redis.call('HMGET', TSTATE, unpack(ids))
      dvs = redis.call('HMGET', TDATA, unpack(ids))
    end
    for i, m in ipairs(ms) do
      local t
      if FAST then t = take(q, m, ids[i], svs[i], dvs[i]) else t = take_slow(q, m, ids[i]) end
      if t == 'skip' then
        -- Its handler is at a limit, or not the caller's: it stays
        -- ready, in its place.
        skipped = skipped + 1
        if skipped >= SKIP_LIMIT then break end
      elseif t == 'park' then
        -- It re-enters the ready set when it heads its key.
        zrem(rk, m)
        zadd(parked_key(q), ids[i], ids[i])
      elseif t then
        picked = picked + 1
        if picked >= max then break end
      else
        -- A stray entry: the task is gone or lives elsewhere.
        zrem(rk, m)
      end
    end
  end
  bulk('HSET', TSTATE, states)
  bulk('ZREM', rk, rm_ready)
  states, rm_ready = {}, {}
  n_taken = 0
end
if token then write_groups(token, lu) end
flush()
store_gates(gates)
return out
