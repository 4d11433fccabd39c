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
-- Tasks that reached a final state, published once at the end.
local done = {}

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
  if FINISHED[r.s] then done[#done + 1] = id end
  return 1
end

-- The Complete edge of a running task, with or without a result, written out
-- for the hot path: one HMGET and one HSET per task, its sorted-set writes
-- collected in plain arrays (each member once) and sent as one command per
-- key. Checked here against the generated prelude (what move() would do);
-- should the state machine change so it no longer holds, every report takes
-- move() instead.
local FAST = TR.Complete.from[RUNNING] and HOME[RUNNING] == 'leases'
  and not INDEXED[RUNNING] and not INDEXED[TR.Complete.to]
  and HOME[TR.Complete.to] == 'finished' and FINISHED[TR.Complete.to] and UNFINISHED[RUNNING]
local RUNNING_S, DONE_S = STATE_STR[RUNNING], STATE_STR[TR.Complete.to]
-- Per queue: lease-set members to remove, ids to append to the finished list,
-- and the finished-at they get.
local unleased, finished, finished_at_of = {}, {}, {}

-- `result` is the task's result, or nil for none.
local function complete(id, token, result)
  local key = task_key(id)
  local v = redis.call('HMGET', key, 's', 'tk', 'q', 'h', 'ok', 'uk')
  -- Anything unusual (stale, gone, bad data) takes the generic path, which
  -- also reports bad data.
  if v[1] ~= RUNNING_S or v[2] ~= token or not v[3] or not v[4] then
    if result then return report(id, token, 'C', '1', result) end
    return report(id, token, 'C', '0', '')
  end
  local q, h, ok, uk = v[3], v[4], v[5], v[6]
  local u = unleased[q]
  if not u then
    u = {}
    unleased[q] = u
    finished[q] = {}
    finished_at_of[q] = finished_at(home_key(q, TR.Complete.to), now)
  end
  if result then
    redis.call('HSET', key, 's', DONE_S, 'fa', finished_at_of[q], 'r', result)
  else
    redis.call('HSET', key, 's', DONE_S, 'fa', finished_at_of[q])
  end
  u[#u + 1] = id
  local f = finished[q]
  f[#f + 1] = id
  count_running(h, -1)
  if ok then redis.call('DEL', ordrun_key(q, ok)) end
  if ok or uk then release_keys({id = id, q = q, ok = ok, uk = uk}) end
  done[#done + 1] = id
  return 1
end

for i = 5, 4 + 2 * plain, 2 do
  if FAST then
    out[#out + 1] = complete(ARGV[i], ARGV[i + 1])
  else
    out[#out + 1] = report(ARGV[i], ARGV[i + 1], 'C', '0', '')
  end
end
local first_other = 5 + 2 * plain
for i = first_other, first_other + 5 * (other - 1), 5 do
  if FAST and ARGV[i + 2] == 'C' then
    local result = nil
    if ARGV[i + 3] == '1' then result = ARGV[i + 4] end
    out[#out + 1] = complete(ARGV[i], ARGV[i + 1], result)
  else
    out[#out + 1] = report(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
  end
end
local f = first_other + 5 * other
while f <= #ARGV do
  local pos, m, span = tonumber(ARGV[f]), tonumber(ARGV[f + 1]), tonumber(ARGV[f + 2])
  if out[pos] == 1 then enqueue_tasks(now, f + 3, m, span, nil, wake, take_ids(m)) end
  f = f + 3 + span
end
for q, u in pairs(unleased) do
  bulk('ZREM', leases_key(q), u)
  bulk('RPUSH', home_key(q, TR.Complete.to), finished[q])
end
flush()
flush_ready()
publish(wake)
publish_finished(done)
return out
