-- prune: ARGV = prefix, completed/cancelled finished before, dead finished
-- before, limit.
-- Deletes up to limit finished tasks older than their retention. Returns how
-- many; the caller runs it again while a full batch was deleted.
local limit = tonumber(ARGV[4])
local n = 0
local touched = {}
local function pruned(q)
  if q then touched[q] = true end
  n = n + 1
end
-- A per-queue list of completed or cancelled tasks is in finished-at order
-- (see finished_at in common.lua): it is cut from its start up to the first
-- task finished at or after `before`. (Lists written before finished-at was
-- kept in order may hold a task behind a younger one, which then waits that
-- much longer.)
local function prune_list(list, before)
  if n >= limit then return end
  local cut = tonumber(before)
  local k = 0
  for _, id in ipairs(redis.call('LRANGE', list, 0, limit - n - 1)) do
    local fa = tonumber(stored_finished_at(id))
    if fa ~= nil and fa >= cut then break end
    pruned(delete_task(id, nil))
    k = k + 1
  end
  if k > 0 then redis.call('LTRIM', list, k, -1) end
end
for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
  for _, s in ipairs(ALL_STATES) do
    if HOME[s] == 'finished' then prune_list(home_key(q, s), ARGV[2]) end
  end
end
-- Dead tasks: one global set by finish time.
if n < limit then
  local ids = redis.call('ZRANGEBYSCORE', DEADSET, '-inf', '(' .. ARGV[3], 'LIMIT', 0, limit - n)
  for _, id in ipairs(ids) do pruned(delete_task(id, DEADSET)) end
end
flush()
for q in pairs(touched) do
  if queue_empty(q) then redis.call('SREM', QUEUES, q) end
end
return n
