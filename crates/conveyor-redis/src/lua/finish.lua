-- finish: ARGV = prefix, now, p, o, n, then n retentions as two items each
-- (how long a completed or cancelled task is kept, and a dead one, in ms),
-- then p plain completions as id, token
-- (no result, no follow-ups, no retention), then o other reports of 5 items
-- each: id, token,
-- kind, number, text. kind C = complete (number 1: text is the result),
-- R = retry (number: the next run-at; text: the error), D = dead-letter
-- (text: error), X = discard (text: reason), L = release; the letter is
-- followed by the number of a retention (from 1) when the report carries
-- one: the task, if it finishes and has no keep of its own, is kept that
-- long (see move in common/steps.lua). Then the follow-ups,
-- per report that has some: its position among the reports (from 1), m,
-- span, and m tasks as forms taking span arguments, as for enqueue; they are
-- enqueued only when their report is applied, in this same atomic step.
-- Returns per report, in that order, 1 (applied) or 0 (stale lease: not
-- running, or another token), and last how many of the tasks it finished
-- are workflow nodes' whose ends wait to be settled (see wf.note_ends).
-- A report other than a completion appends the attempt to the task's
-- history (field hi); a completion leaves it to the task's own fields.
local now = ARGV[2]
local plain = tonumber(ARGV[3])
local other = tonumber(ARGV[4])
local n_ret = tonumber(ARGV[5])
-- The retentions the reports name, by number: {completed ms, dead ms}.
local rets = {}
for i = 1, n_ret do rets[i] = {ARGV[4 + 2 * i], ARGV[5 + 2 * i]} end
local out = {}
local wake = {}
-- Tasks that reached a final state, published once at the end, and how
-- many (kept by hand: Lua's # searches for a table's end at each use).
local done, n_done = {}, 0

-- The retention a report's kind names after its letter (nil for none),
-- looked up once per kind and call.
local ret_of_kind = {}
local function retention_of(kind)
  if #kind == 1 then return nil end
  local ret = ret_of_kind[kind]
  if ret then return ret end
  ret = rets[tonumber(sub(kind, 2))]
  if not ret then fail('finish: a report kind ' .. kind .. ' names no retention') end
  ret_of_kind[kind] = ret
  return ret
end

local function report(id, token, kind, number, text)
  local r = load(id, {'s', 'q', 'pr', 'ok', 'uk', 'tk', 'a', 'h', 'at', 'hi', 'd', 'ma'})
  if r == nil or r.s ~= RUNNING or r.tk ~= token then return 0 end
  if #kind > 1 then
    r.ret = retention_of(kind)
    kind = sub(kind, 1, 1)
  end
  if kind == 'C' then
    local sets = {}
    if number == '1' then sets = {'r', text} end
    move(r, 'Complete', now, sets)
  elseif kind == 'R' then
    if num(r, 'a') >= max_attempts(r) then
      move(r, 'DeadLetter', now, {'e', text, 'hi', history_with(r, now, 'dead', text)})
    else
      r.ra = number
      move(r, 'Retry', now, {'e', text, 'ra', number, 'hi', history_with(r, now, 'failed', text)})
    end
  elseif kind == 'D' then
    move(r, 'DeadLetter', now, {'e', text, 'hi', history_with(r, now, 'dead', text)})
  elseif kind == 'X' then
    move(r, 'Discard', now, {'e', text, 'hi', history_with(r, now, 'discarded', text)})
  elseif kind == 'L' then
    local a = num(r, 'a') - 1
    if a < 0 then a = 0 end
    move(r, 'Release', now, {'a', a, 'hi', history_with(r, now, 'released', nil)})
    wake[r.q] = true
  else
    fail('unknown report kind ' .. tostring(kind))
  end
  if FINISHED[r.s] then
    n_done = n_done + 1
    done[n_done] = id
  end
  return 1
end

-- The Complete edge of a running task, with or without a result, written out
-- for the hot path: the records of every completed task read with one HMGET
-- per record hash up front, the new states and results written with one
-- HSET per hash at the end, the finished lists' appends collected in plain
-- arrays and sent as one command per key, the leases given up per group (see
-- "Lease groups" in common/leases.lua). Checked here against
-- the generated prelude (what move() would do); should the state machine
-- change so it no longer holds, every report takes move() instead.
local FAST = TR.Complete.from[RUNNING] and HOME[RUNNING] == 'leases'
  and not INDEXED[RUNNING] and not INDEXED[TR.Complete.to]
  and HOME[TR.Complete.to] == 'finished' and FINISHED[TR.Complete.to] and UNFINISHED[RUNNING]
local RUNNING_S, DONE_S = STATE_STR[RUNNING], STATE_STR[TR.Complete.to]
-- Per list the call appends completed tasks to (its queue's finished
-- list, or its list for a time kept: see move in common/steps.lua): their
-- ids, how many, and the list's finished-at between spaces, for their state
-- records.
local appends, n_appends, mid_of = {}, {}, {}
-- Per queue: its finished list, and its lists by time kept (ms).
local main_of, times_of = {}, {}
-- The id and time pairs of the tasks kept for a time of their own, for
-- expiry.kept, and their length.
local kept_ids, n_kept = {}, 0
-- The new state records and the results (id, value, ...).
local states, results = {}, {}
-- The lengths of states, results and out, kept by hand.
local n_states, n_results, n_out = 0, 0, 0
-- The reports applied so far, by task id: a task reported twice in one call
-- (another token's stale report beside the live one) has its second report
-- checked against what the first one did.
local applied = {}

-- The head of a running task's state record, before its token.
local RUNNING_HEAD = RUNNING_S .. ' '
-- The keep in a data record from its priority on ('PR RA ' and a d of
-- version 2: see packed.rs).
local KEPT_D = '^%-?%d+ %-?%d+ ' .. expiry.KEEP

-- Completes task id if token holds its lease, with a result (nil for none),
-- as a report of `kind` ('C', or 'C' and the number of a retention: see
-- retention_of); sv, dv: its state and data records as read up front
-- (false for none).
local function complete(id, token, result, sv, dv, kind)
  if applied[id] then return 0 end
  -- The state record of the lease: running under this token, no
  -- finished-at; then its attempts, run-at and attempt, kept.
  local lease_head = RUNNING_HEAD .. token .. '  '
  local q, h, uk, ok, pat, long
  if sv and dv and sub(sv, 1, #lease_head) == lease_head then q, h, uk, ok, pat, long = route(dv) end
  -- Anything unusual (stale, gone, bad data, a task stored before the
  -- record layout) takes the generic path, which also reports bad data.
  if not q then
    local applies
    if result then applies = report(id, token, kind, '1', result) else applies = report(id, token, kind, '0', '') end
    if applies == 1 then applied[id] = true end
    return applies
  end
  -- How long it is kept, if for a time of its own: its keep (in the d of a
  -- long-form record, see data_head), else its report's retention; and the
  -- list it goes into.
  local keep, key
  if long then keep = match(dv, KEPT_D, pat) end
  if not keep and #kind > 1 then keep = retention_of(kind)[1] end
  local n
  if keep then
    local t = times_of[q]
    if not t then
      t = {}
      times_of[q] = t
    end
    key = t[keep]
    if not key then
      key = expiry.list(q, TR.Complete.to, keep)
      t[keep] = key
    end
    n = n_kept
    kept_ids[n + 1], kept_ids[n + 2] = id, keep
    n_kept = n + 2
  else
    key = main_of[q]
    if not key then
      key = home_key(q, TR.Complete.to)
      main_of[q] = key
    end
  end
  local f = appends[key]
  if not f then
    f = {}
    appends[key], n_appends[key] = f, 0
    mid_of[key] = ' ' .. finished_at(key, now) .. ' '
  end
  n = n_states
  states[n + 1] = id
  states[n + 2] = DONE_S .. ' ' .. token .. mid_of[key] .. sub(sv, #lease_head + 1)
  n_states = n + 2
  if result then
    n = n_results
    results[n + 1], results[n + 2] = id, result
    n_results = n + 2
  end
  n = n_appends[key] + 1
  n_appends[key] = n
  f[n] = id
  lease_gone(q, id, token)
  count_running(h, -1)
  if ok then redis.call('DEL', ordrun_key(q, ok)) end
  if ok or uk then release_keys({id = id, q = q, ok = ok, uk = uk}) end
  n_done = n_done + 1
  done[n_done] = id
  applied[id] = true
  return 1
end

-- Whether a report's kind is a completion: 'C', or 'C' (byte 67) and a
-- retention's number.
local function completes(kind)
  return kind == 'C' or (#kind > 1 and byte(kind, 1) == 67)
end

-- The records of the completions' tasks, read up front.
local first_plain = 6 + 2 * n_ret
local first_other = first_plain + 2 * plain
local svs, dvs = {}, {}
if FAST then
  local ids = {}
  local n = 0
  for i = first_plain, first_other - 1, 2 do
    n = n + 1
    ids[n] = ARGV[i]
  end
  for i = first_other, first_other + 5 * (other - 1), 5 do
    if completes(ARGV[i + 2]) then
      n = n + 1
      ids[n] = ARGV[i]
    end
  end
  if n > 0 then
    svs = hmget(TSTATE, ids)
    dvs = hmget(TDATA, ids)
  end
end
local k = 0
for i = first_plain, first_other - 1, 2 do
  n_out = n_out + 1
  if FAST then
    k = k + 1
    out[n_out] = complete(ARGV[i], ARGV[i + 1], nil, svs[k], dvs[k], 'C')
  else
    out[n_out] = report(ARGV[i], ARGV[i + 1], 'C', '0', '')
  end
end
for i = first_other, first_other + 5 * (other - 1), 5 do
  local id = ARGV[i]
  n_out = n_out + 1
  local kind = ARGV[i + 2]
  if FAST and completes(kind) then
    local result = nil
    if ARGV[i + 3] == '1' then result = ARGV[i + 4] end
    k = k + 1
    out[n_out] = complete(id, ARGV[i + 1], result, svs[k], dvs[k], kind)
  elseif applied[id] then
    out[n_out] = 0
  else
    out[n_out] = report(id, ARGV[i + 1], kind, ARGV[i + 3], ARGV[i + 4])
    if out[n_out] == 1 then applied[id] = true end
  end
end
bulk('HSET', TSTATE, states)
bulk('HSET', TRESULT, results)
local f = first_other + 5 * other
while f <= #ARGV do
  local pos, m, span = tonumber(ARGV[f]), tonumber(ARGV[f + 1]), tonumber(ARGV[f + 2])
  if out[pos] == 1 then enqueue_tasks(now, f + 3, m, span, nil, wake, take_ids(m)) end
  f = f + 3 + span
end
for key, f in pairs(appends) do bulk('RPUSH', key, f) end
for q, t in pairs(times_of) do
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  bulk('SADD', expiry.times(q, TR.Complete.to), ks)
end
bulk('HSET', expiry.kept, kept_ids)
flush()
flush_ready()
publish(wake)
publish_finished(done)
out[n_out + 1] = wf.note_ends(done)
return out
