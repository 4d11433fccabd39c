-- prune: ARGV = prefix, completed/cancelled finished before, dead finished
-- before, limit, now.
-- Deletes up to limit finished tasks: those kept for a time of their own
-- whose expiry is before now (dead ones from expiry.all, the others from
-- the start of their lists: see move in common/steps.lua), and those
-- without one older than the retention given. Returns how
-- many; the caller runs it again while a full batch was deleted. The
-- records of a batch are read and dropped with a few commands for all of
-- it (see admin.drop_records), not per task.
local limit = tonumber(ARGV[4])
local n = 0
local touched = {}
-- The tasks to drop at the end: of the record layout, and stored before it.
local gone, older = {}, {}
local function drop(id, layout)
  if layout then gone[#gone + 1] = id else older[#older + 1] = id end
end
-- A per-queue list of completed or cancelled tasks is in finished-at order
-- (see finished_at in common/steps.lua): it is cut from its start up to the first
-- task finished at or after `before`. (Lists written before finished-at was
-- kept in order may hold a task behind a younger one, which then waits that
-- much longer.)
local function prune_list(q, list, before)
  if n >= limit then return end
  local cut = tonumber(before)
  local ids = redis.call('LRANGE', list, 0, limit - n - 1)
  if #ids == 0 then return end
  local svs = hmget(TSTATE, ids)
  local k = 0
  for i, id in ipairs(ids) do
    local fa
    if svs[i] then
      fa = match(svs[i], FINISHED_AT_PATTERN)
    else
      fa = redis.call('HGET', task_key(id), 'fa')
    end
    fa = tonumber(fa)
    if fa ~= nil and fa >= cut then break end
    drop(id, svs[i] ~= false)
    k = i
  end
  if k > 0 then
    redis.call('LTRIM', list, k, -1)
    touched[q] = true
    n = n + k
  end
end
-- Dead tasks with an expiry of their own: each out of expiry.all and its
-- queue's dead index. One that is not dead (never written so) only leaves
-- expiry.all.
local due = redis.call('ZRANGEBYSCORE', expiry.all, '-inf', '(' .. ARGV[5], 'LIMIT', 0, limit)
if #due > 0 then
  local svs = hmget(TSTATE, due)
  local qs = admin.dead_queues(due)
  for i, id in ipairs(due) do
    zrem(expiry.all, id)
    local s = svs[i] and tonumber(match(svs[i], '^(%d+) '))
    local q = qs[i]
    if s and q and FINISHED[s] and INDEXED[s] then
      zrem(index_key(q, s), id)
      touched[q] = true
      drop(id, true)
      n = n + 1
    end
  end
end
for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
  for _, s in ipairs(ALL_STATES) do
    if HOME[s] == 'finished' then
      prune_list(q, home_key(q, s), ARGV[2])
      -- Its lists of tasks kept for a time of their own, each in expiry
      -- order; the time leaves the queue's set with its list's last task.
      for _, l in ipairs(expiry.lists(q, s)) do
        if n >= limit then break end
        local k, list = l[1], l[2]
        prune_list(q, list, string.format('%d', tonumber(ARGV[5]) - tonumber(k)))
        if redis.call('LLEN', list) == 0 then redis.call('SREM', expiry.times(q, s), k) end
      end
    end
  end
end
-- Dead tasks: one global set by finish time.
if n < limit then
  local ids = redis.call('ZRANGEBYSCORE', DEADSET, '-inf', '(' .. ARGV[3], 'LIMIT', 0, limit - n)
  if #ids > 0 then
    local qs, layout = admin.dead_queues(ids)
    for i, id in ipairs(ids) do
      zrem(DEADSET, id)
      local q = qs[i]
      if q then
        zrem(index_key(q, DEAD), id)
        touched[q] = true
      end
      drop(id, layout[i])
      n = n + 1
    end
  end
end
admin.drop_records(gone, older)
flush()
for q in pairs(touched) do
  if admin.queue_empty(q) then redis.call('SREM', QUEUES, q) end
end
return n
