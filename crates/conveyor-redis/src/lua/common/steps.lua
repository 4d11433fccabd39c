-- The shared code's last part (after records.lua): ordering keys, moving
-- a task along a transition, enqueueing, finish notices and attempt
-- history.

-- Only the lowest-id unfinished task of a (queue, ordering key) may run, and
-- only while no task of the key runs (a requeued dead task can be older than
-- the one that runs).
local function heads_key(q, ok, id)
  local h = redis.call('ZRANGE', ord_key(q, ok), 0, 0)
  if h[1] ~= id then return false end
  return redis.call('EXISTS', ordrun_key(q, ok)) == 0
end
local function is_head(r)
  if not r.ok then return true end
  return heads_key(r.q, r.ok, r.id)
end

-- Higher priority first: the score is the priority negated, as a string.
local function ready_score(pr)
  if pr == '0' then return '0' end
  if tonumber(pr) == nil then fail('bad priority ' .. tostring(pr)) end
  if string.sub(pr, 1, 1) == '-' then return string.sub(pr, 2) end
  return '-' .. pr
end

-- A task becomes unfinished (new or requeued): it takes its keys again.
local function join_keys(r)
  if r.uk then redis.call('HSETNX', uniq_key(r.q), r.uk, r.id) end
  if r.ok then redis.call('ZADD', ord_key(r.q, r.ok), r.id, r.id) end
end

-- A task finished: it frees its unique key, and the next task of its ordering
-- key (if available) becomes ready.
local function release_keys(r)
  if r.uk then
    local uk = uniq_key(r.q)
    if redis.call('HGET', uk, r.uk) == r.id then redis.call('HDEL', uk, r.uk) end
  end
  if r.ok then
    local ok = ord_key(r.q, r.ok)
    redis.call('ZREM', ok, r.id)
    local h = redis.call('ZRANGE', ok, 0, 0)[1]
    if h then
      local head = peek(h)
      if head and tonumber(head.s) == AVAILABLE then
        zadd(ready_key(r.q), ready_score(head.pr), pad(h))
        zrem(parked_key(r.q), h)
      end
    end
  end
end

-- The finished-at of a task that enters the finished list `key` in this
-- script: now, or the finished-at of the list's last task when that is later
-- (it was finished by a worker whose clock runs ahead), so every list stays
-- in finished-at order, which list (its keyset paging) and prune rely on.
-- Read once per list and script: one LINDEX and one HGET.
local function finished_at(key, now)
  local fa = list_finished_at[key]
  if fa then return fa end
  fa = now
  local tail = redis.call('LINDEX', key, -1)
  if tail then
    local t = stored_finished_at(tail)
    if t and tonumber(t) and tonumber(t) > tonumber(now) then fa = t end
  end
  list_finished_at[key] = fa
  return fa
end

-- The header of a d of version 2 (see packed.rs) up to its keep, captured.
expiry.KEEP = '2 %d+ %-?%d+ %d* (%d+) '

-- How long task r is kept once finished in state `to`, in ms as a decimal
-- string, when it has an expiry of its own: the task's keep (in its d, see
-- packed.rs), else the retention its worker's report carried (r.ret: the
-- completed-or-cancelled and the dead ms), else nil.
function expiry.keep_ms(r, to)
  local d = r.d
  if d and byte(d, 1) == 50 then
    local k = match(d, '^' .. expiry.KEEP)
    if k then return k end
  end
  local ret = r.ret
  if not ret then return nil end
  if to == DEAD then return ret[2] end
  return ret[1]
end

-- Moves task r (fields s, q, pr, ok, uk; h when it enters or leaves running;
-- ra for timers; lu, the lease expiry,
-- for the leases set: it is not stored in the hash; d and ret for its
-- expiry, see expiry.keep_ms) along
-- transition tname, writing `sets` (field, value, ...) and deleting `dels`
-- with its new state, and keeping every index in step. A task that
-- finishes kept for a time of its own goes (completed, cancelled) into its
-- queue's list for that time rather than the finished list, or (dead) into
-- expiry.all rather than the dead set: prune takes it at its expiry, not by
-- the retention it is given.
local function move(r, tname, now, sets, dels)
  local tr = TR[tname]
  local from = r.s
  if from == nil then
    if next(tr.from) ~= nil then fail('a new task cannot take the ' .. tname .. ' transition') end
  elseif not tr.from[from] then
    fail('task ' .. r.id .. ': a ' .. STATE_NAME[from] .. ' task cannot take the ' .. tname .. ' transition')
  end
  local to = tr.to
  if from ~= nil then
    -- A finished list is only ever cut from its start (prune).
    if HOME[from] == 'finished' then fail('no transition leaves a ' .. STATE_NAME[from] .. ' task') end
    if HOME[from] == 'leases' and r.layout then
      -- Its lease may be a group's (tokens of the record layout are per
      -- reserve call).
      lease_gone(r.q, r.id, r.tk)
    else
      zrem(home_key(r.q, from), home_member(from, r.id))
    end
    -- Only a task with an ordering key can be parked.
    if HOME[from] == 'ready' and r.ok then zrem(parked_key(r.q), r.id) end
    if INDEXED[from] then zrem(index_key(r.q, from), r.id) end
    -- A requeued dead task loses its expiry.
    if FINISHED[from] then zrem(expiry.all, r.id) end
  end
  sets[#sets + 1] = 's'
  sets[#sets + 1] = to
  -- The finished-at and, for a task kept for a time of its own (k ms), the
  -- list it goes into (completed, cancelled).
  local fa, k, list
  if FINISHED[to] then
    k = expiry.keep_ms(r, to)
    if HOME[to] == 'finished' then
      if k then list = expiry.list(r.q, to, k) else list = home_key(r.q, to) end
      fa = finished_at(list, now)
    else
      fa = now
    end
    sets[#sets + 1] = 'fa'
    sets[#sets + 1] = fa
  end
  store(r, sets, dels)
  r.s = to
  if from == RUNNING and to ~= RUNNING then
    count_running(need(r, 'h'), -1)
  elseif to == RUNNING and from ~= RUNNING then
    count_running(need(r, 'h'), 1)
  end
  if r.ok then
    if from == RUNNING and to ~= RUNNING then redis.call('DEL', ordrun_key(r.q, r.ok)) end
    if to == RUNNING then redis.call('SET', ordrun_key(r.q, r.ok), r.id) end
  end
  local was_unfinished = from ~= nil and UNFINISHED[from]
  if UNFINISHED[to] and not was_unfinished then join_keys(r) end
  if FINISHED[to] and was_unfinished then release_keys(r) end
  if INDEXED[to] then zadd(index_key(r.q, to), r.id, r.id) end
  local h = HOME[to]
  if h == 'ready' then
    if is_head(r) then
      zadd(ready_key(r.q), ready_score(r.pr), pad(r.id))
    else
      zadd(parked_key(r.q), r.id, r.id)
    end
  elseif h == 'timers' then
    zadd(TIMERS, r.ra, r.id)
  elseif h == 'leases' then
    -- A reserve call's tasks of the record layout share its token: they
    -- join the call's lease group.
    if r.group then group_add(r.q, r.id) else zadd(leases_key(r.q), r.lu, r.id) end
  elseif h == 'finished' then
    redis.call('RPUSH', list, r.id)
    if k then
      redis.call('SADD', expiry.times(r.q, to), k)
      redis.call('HSET', expiry.kept, r.id, k)
    end
  elseif k then
    zadd(expiry.all, string.format('%d', tonumber(fa) + tonumber(k)), r.id)
  else
    zadd(home_key(r.q, to), now, r.id)
  end
end

-- The steps of administration and maintenance (rarely called): one table,
-- not a local each, as a script may have at most 200 locals.
local admin = {}

-- True when the queue holds no task in any state.
function admin.queue_empty(q)
  for _, s in ipairs(ALL_STATES) do
    if count_state(q, s) > 0 then return false end
  end
  return true
end

-- Drops the records of finished tasks for good (prune, purge): `ids` of
-- the record layout, with one HDEL per record hash for all of them, and
-- `older`, tasks stored before it, a hash each. Their sets and lists are
-- the caller's to cut.
function admin.drop_records(ids, older)
  if #ids > 0 then
    for _, key in ipairs({TSTATE, TDATA, TRESULT, TERROR, THISTORY, expiry.kept}) do
      bulk('HDEL', key, ids)
    end
  end
  for i = 1, #older, CHUNK do
    local keys = {}
    for j = i, math.min(i + CHUNK - 1, #older) do keys[#keys + 1] = task_key(older[j]) end
    redis.call('DEL', unpack(keys))
  end
end

-- The queue of each of the dead tasks `ids`, false for one that is gone,
-- read with one HMGET of their data records; and which of them are of the
-- record layout (true) or stored before it (false).
function admin.dead_queues(ids)
  local dvs = hmget(TDATA, ids)
  local qs, layout = {}, {}
  for i, id in ipairs(ids) do
    local dv = dvs[i]
    if dv then
      qs[i] = route(dv) or false
      layout[i] = true
    else
      qs[i] = redis.call('HGET', task_key(id), 'q')
      layout[i] = false
    end
  end
  return qs, layout
end

local function publish(wake)
  for q in pairs(wake) do redis.call('PUBLISH', WAKE, q) end
end

-- A task's fields that never change, packed by the client into one field,
-- 'd' (see packed.rs): '1 MAX_ATTEMPTS CREATED_AT TIMEOUT_MS TRACE_LEN TRACE'
-- and then the payload. The hot paths pass it through untouched. Tasks
-- stored before it have those as fields of their own (ma, ca, to, tc, p):
-- these read both.

-- The 'd' of task r, loaded with d or the older fields: a task stored before
-- it gets one built from them.
local function packed_of(r)
  if r.d then return r.d end
  local tc = r.tc or ''
  return '1 ' .. need(r, 'ma') .. ' ' .. need(r, 'ca') .. ' ' .. (r.to or '') .. ' ' .. #tc .. ' '
    .. tc .. need(r, 'p')
end
-- The max attempts of task r, loaded with d and ma.
local function max_attempts(r)
  if not r.d then return num(r, 'ma') end
  local ma = tonumber(string.match(r.d, '^[12] (%d+) '))
  if ma == nil then fail('task ' .. r.id .. ' has a d field that does not decode') end
  return ma
end
-- The created-at of a task from its d (or, stored before it, ca) field, or
-- nil when neither decodes.
local function created_at(d, ca)
  if d then return string.match(d, '^[12] %d+ (%-?%d+) ') end
  return ca
end

-- The tasks of enqueue (and of finish's follow-ups) come as a list of
-- forms, each a letter and its arguments, so that a batch of like tasks
-- costs two arguments a task (each argument costs the server time to read):
--   'p' queue, handler, d, priority, run_at: a task with no unique or
--       ordering key (6 arguments);
--   'k' the same, then has_unique ('0'|'1'), unique_key, has_ordering
--       ('0'|'1'), ordering_key (10 arguments);
--   '=' d: a task with no unique or ordering key and the queue, handler,
--       priority and run_at of the task before it in the list (2 arguments).
-- A task with a keep of its own always comes as a 'k' form (see
-- task_forms.rs), keys or not, and its data record takes the long form
-- (see data_head), which tells the hot paths to look for the keep.

-- The Enqueue edge of a new task without a unique or ordering key, due now,
-- is written out for the hot path (every enqueue of a plain task): its two
-- records and its ready member join the call's multi-field writes, no task
-- table, no command of its own. Checked once against the
-- generated prelude, as move() would check it; should the state machine
-- change so it no longer holds, every task takes move() instead.
-- (Plain Lua only: a function library runs this when it loads, where the
-- standard functions are not reachable yet.)
local ENQUEUE_FAST = TR.Enqueue.to == AVAILABLE
  and HOME[AVAILABLE] == 'ready' and not INDEXED[AVAILABLE]
  and UNFINISHED[AVAILABLE] and not FINISHED[AVAILABLE]
for i = 1, #ALL_STATES do
  if TR.Enqueue.from[ALL_STATES[i]] then ENQUEUE_FAST = false end
end
local AVAILABLE_STR = STATE_STR[AVAILABLE]

-- Enqueues the n tasks whose forms (see above) take the `span` arguments
-- from ARGV[b] (used by enqueue and by finish: follow-ups, in the finish's
-- atomic step), with the ids after `seq` (taken by the caller, before
-- anything was written, so a call stopped half way by bad data in the store
-- never hands one out twice; the tasks that are not duplicates get them in
-- order), appending (position, id) for each duplicate (a task whose unique
-- key an unfinished task holds) to `out` unless it is nil, and marking in
-- `wake` the queues that got available tasks.
local function enqueue_tasks(now, b, n, span, out, wake, seq)
  local now_n = tonumber(now)
  local last = b + span
  -- This request's new data records and ready members on the hot path,
  -- written with the call's others at its end (flush_ready) once the
  -- request went through. Such a task has no state record yet (see "Task
  -- records").
  local datas, ready_adds = {}, {}
  -- The fields a '=' form takes from the task before it; the data head of
  -- a plain task with them, built when first needed.
  local q, h, pr, ra, due, score, head
  for i = 1, n do
    local form = ARGV[b]
    local d
    -- kept: a task with a keep of its own (a d of version 2, in a 'k' form).
    local uk, ok, kept = false, false, false
    if form == '=' then
      if not q then fail('enqueue: task 1 repeats the task before it') end
      d = ARGV[b + 1]
      b = b + 2
      if not (d and b <= last) then fail('enqueue: task ' .. i .. ' has too few arguments') end
    else
      q, h, d, pr, ra = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
      if form == 'k' then
        if ARGV[b + 6] == '1' then uk = ARGV[b + 7] end
        if ARGV[b + 8] == '1' then ok = ARGV[b + 9] end
        b = b + 10
      elseif form == 'p' then
        b = b + 6
      else
        fail('enqueue: task ' .. i .. ' has an unknown form ' .. tostring(form))
      end
      if not (q and h and d and pr and ra and b <= last) then
        fail('enqueue: task ' .. i .. ' has too few arguments')
      end
      if not string.find(ra, '^%-?%d+$') then fail('enqueue: task ' .. i .. ' has a bad run-at ' .. ra) end
      if form == 'k' then kept = byte(d, 1) == 50 end
      due = tonumber(ra) <= now_n
      score, head = nil, nil
    end
    local existing = false
    if uk then existing = redis.call('HGET', uniq_key(q), uk) end
    if existing then
      if out then
        out[#out + 1] = i
        out[#out + 1] = existing
      end
    elseif ENQUEUE_FAST and not uk and not ok and due then
      seq = seq + 1
      local id, member = id_of(seq)
      if not head then
        head = data_head(q, h, pr, false, false, ra, kept)
        score = ready_score(pr)
      end
      local k = #datas
      datas[k + 1], datas[k + 2] = id, head .. d
      -- New ids: each member is written once, so no last-write-wins
      -- buffering, just one multi-member ZADD per queue at the end of the
      -- call, for every request in it. That write cannot fail: the queue's
      -- ready set was read as a sorted set (or none) first, so a damaged one
      -- stops this request here, before any of its writes to that queue.
      if not ready_checked[q] then
        redis.call('ZCARD', ready_key(q))
        ready_checked[q] = true
      end
      local adds = ready_adds[q]
      if not adds then
        adds = {}
        ready_adds[q] = adds
      end
      adds[#adds + 1] = score
      adds[#adds + 1] = member
      if not queues_added[q] then
        queues_added[q] = true
        redis.call('SADD', QUEUES, q)
      end
      wake[q] = true
    else
      seq = seq + 1
      local id = string.format('%d', seq)
      -- A task with a keep of its own takes the long form (see data_head):
      -- so does a '=' form after one, which the client does not send.
      redis.call('HSET', TDATA, id, data_head(q, h, pr, uk, ok, ra, kept) .. d)
      local r = {id = id, layout = true, q = q, h = h, pr = pr, ra = ra, uk = uk, ok = ok,
        tk = '0', a = '0'}
      local tname = 'Enqueue'
      if not due then tname = 'Schedule' end
      move(r, tname, now, {})
      if not queues_added[q] then
        queues_added[q] = true
        redis.call('SADD', QUEUES, q)
      end
      if r.s == AVAILABLE then wake[q] = true end
    end
  end
  if b ~= last then fail('enqueue: the tasks take ' .. (b - last + span) .. ' arguments, not ' .. span) end
  -- The request went through: its records and ready members join the call's.
  if #records_deferred == 0 then
    records_deferred = datas
  else
    for i = 1, #datas do records_deferred[#records_deferred + 1] = datas[i] end
  end
  for q, adds in pairs(ready_adds) do
    local all = ready_deferred[q]
    if not all then
      ready_deferred[q] = adds
    else
      for i = 1, #adds do all[#all + 1] = adds[i] end
    end
  end
end

-- Writes the data records and ready members enqueue_tasks deferred (one
-- HSET, one ZADD per queue).
local function flush_ready()
  bulk('HSET', TDATA, records_deferred)
  records_deferred = {}
  for q, adds in pairs(ready_deferred) do bulk('ZADD', ready_key(q), adds) end
  ready_deferred = {}
end

-- Takes n ids for tasks about to be enqueued: returns the one before the
-- first.
local function take_ids(n)
  return redis.call('INCRBY', SEQ, n) - n
end

-- One message per script call for the tasks it finished: their ids,
-- comma-separated, or an empty message ("something finished": every result
-- waiter looks again) beyond MAX_FINISHED_IDS. Nothing when none finished.
local MAX_FINISHED_IDS = 1000
local function publish_finished(ids)
  if #ids == 0 then return end
  local payload = ''
  if #ids <= MAX_FINISHED_IDS then payload = table.concat(ids, ',') end
  redis.call('PUBLISH', FINISHED_CH, payload)
end

-- text cut to its first ERROR_CHARS characters (UTF-8: a character starts
-- at any byte that is not a continuation byte).
local function clip(text)
  if #text <= ERROR_CHARS then return text end
  local at = 0
  for _ = 1, ERROR_CHARS do
    at = string.find(text, '[^\128-\191]', at + 1)
    if not at then return text end
  end
  local next_char = string.find(text, '[^\128-\191]', at + 1)
  if not next_char then return text end
  return string.sub(text, 1, next_char - 1)
end

-- The history of task r (its 'hi' field) with its latest attempt (its 'a'
-- and 'at' fields, as loaded: 'at' is 'START WORKER') appended, ended at now as outcome with
-- the error text (or nil): the stored form conveyor_core::attempt reads
-- (a JSON array), keeping the latest HISTORY_LIMIT attempts. A history that
-- does not decode starts again empty.
local function history_with(r, now, outcome, text)
  local h = {}
  if r.hi then
    local ok, v = pcall(cjson.decode, r.hi)
    if ok and type(v) == 'table' then h = v end
  end
  while #h >= HISTORY_LIMIT do table.remove(h, 1) end
  local st, w = string.match(r.at or '', '^(%-?%d+) (.*)$')
  local e = {n = tonumber(r.a), s = tonumber(st), e = tonumber(now), o = outcome}
  if w and w ~= '' then e.w = w end
  if text then e.x = clip(text) end
  h[#h + 1] = e
  return cjson.encode(h)
end

-- Cancels task id if it is waiting or running (see cancel.lua), and
-- publishes its end. Returns -1 when there is no such task, else the state
-- code afterwards: cancelled, or the finished state that made cancelling
-- impossible.
function admin.cancel(now, id)
  -- A record kept for another backend is not a task of this store.
  if redis.call('ZSCORE', KEPT, id) then return -1 end
  local r = load(id, {'s', 'q', 'pr', 'ok', 'uk', 'tk', 'a', 'h', 'at', 'hi'})
  if r == nil then return -1 end
  if not TR.Cancel.from[r.s] then return r.s end
  if r.s == RUNNING then
    -- Its attempt is settled as cancelled and its lease ends with it: the
    -- worker's renewal and report are refused from now on.
    move(r, 'Cancel', now, {'e', CANCELLED_WHILE_RUNNING, 'hi', history_with(r, now, 'cancelled', nil)})
  else
    move(r, 'Cancel', now, {})
  end
  flush()
  publish_finished({id})
  return r.s
end
