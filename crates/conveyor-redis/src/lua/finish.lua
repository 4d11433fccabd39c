-- finish: ARGV = prefix, now, p, o, then p plain completions as id, token
-- (no result, no follow-ups), then o other reports of 5 items each: id, token,
-- kind, number, text. kind C = complete (number 1: text is the result),
-- R = retry (number: the next run-at; text: the error), D = dead-letter
-- (text: error), X = discard (text: reason), L = release. Then the follow-ups,
-- per report that has some: its position among the reports (from 1), m,
-- span, and m tasks as forms taking span arguments, as for enqueue; they are
-- enqueued only when their report is applied, in this same atomic step.
-- Returns per report, in that order, 1 (applied) or 0 (stale lease: not
-- running, or another token). A report other than a completion appends the
-- attempt to the task's history (field hi); a completion leaves it to the
-- task's own fields.
local now = ARGV[2]
local plain = tonumber(ARGV[3])
local other = tonumber(ARGV[4])
local out = {}
local wake = {}
-- Tasks that reached a final state, published once at the end, and how
-- many (kept by hand: Lua's # searches for a table's end at each use).
local done, n_done = {}, 0

local function report(id, token, kind, number, text)
  local r = load(id, {'s', 'q', 'pr', 'ok', 'uk', 'tk', 'a', 'h', 'at', 'hi', 'd', 'ma'})
  if r == nil or r.s ~= RUNNING or r.tk ~= token then return 0 end
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
-- Per queue: the completed tasks' ids, appended to the finished list, and
-- how many.
local finished, n_finished = {}, {}
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
-- Per queue: the finished-at of its completed tasks between spaces, for
-- their state records.
local done_mid = {}

-- Completes task id if token holds its lease, with a result (nil for none);
-- sv, dv: its state and data records as read up front (false for none).
local function complete(id, token, result, sv, dv)
  if applied[id] then return 0 end
  -- The state record of the lease: running under this token, no
  -- finished-at; then its attempts, run-at and attempt, kept.
  local lease_head = RUNNING_HEAD .. token .. '  '
  local q, h, uk, ok
  if sv and dv and sub(sv, 1, #lease_head) == lease_head then q, h, uk, ok = route(dv) end
  -- Anything unusual (stale, gone, bad data, a data record of the long
  -- form, a task stored before the record layout) takes the generic path,
  -- which also reports bad data.
  if not q then
    local applies
    if result then applies = report(id, token, 'C', '1', result) else applies = report(id, token, 'C', '0', '') end
    if applies == 1 then applied[id] = true end
    return applies
  end
  local f = finished[q]
  if not f then
    f = {}
    finished[q], n_finished[q] = f, 0
    done_mid[q] = ' ' .. finished_at(home_key(q, TR.Complete.to), now) .. ' '
  end
  local n = n_states
  states[n + 1] = id
  states[n + 2] = DONE_S .. ' ' .. token .. done_mid[q] .. sub(sv, #lease_head + 1)
  n_states = n + 2
  if result then
    n = n_results
    results[n + 1], results[n + 2] = id, result
    n_results = n + 2
  end
  n = n_finished[q] + 1
  n_finished[q] = n
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

-- The records of the completions' tasks, read up front.
local first_other = 5 + 2 * plain
local svs, dvs = {}, {}
if FAST then
  local ids = {}
  local n = 0
  for i = 5, first_other - 1, 2 do
    n = n + 1
    ids[n] = ARGV[i]
  end
  for i = first_other, first_other + 5 * (other - 1), 5 do
    if ARGV[i + 2] == 'C' then
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
for i = 5, first_other - 1, 2 do
  n_out = n_out + 1
  if FAST then
    k = k + 1
    out[n_out] = complete(ARGV[i], ARGV[i + 1], nil, svs[k], dvs[k])
  else
    out[n_out] = report(ARGV[i], ARGV[i + 1], 'C', '0', '')
  end
end
for i = first_other, first_other + 5 * (other - 1), 5 do
  local id = ARGV[i]
  n_out = n_out + 1
  if FAST and ARGV[i + 2] == 'C' then
    local result = nil
    if ARGV[i + 3] == '1' then result = ARGV[i + 4] end
    k = k + 1
    out[n_out] = complete(id, ARGV[i + 1], result, svs[k], dvs[k])
  elseif applied[id] then
    out[n_out] = 0
  else
    out[n_out] = report(id, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
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
for q, f in pairs(finished) do
  bulk('RPUSH', home_key(q, TR.Complete.to), f)
end
flush()
flush_ready()
publish(wake)
publish_finished(done)
return out
