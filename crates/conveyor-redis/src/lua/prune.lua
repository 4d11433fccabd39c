-- prune: ARGV = prefix, completed/cancelled finished before, dead finished
-- before, limit.
-- Deletes up to limit finished tasks older than their retention. Returns how
-- many; the caller runs it again while a full batch was deleted.
local limit = tonumber(ARGV[4])
local n = 0
local touched = {}
local function prune_set(set, before)
  if n >= limit then return end
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. before, 'LIMIT', 0, limit - n)
  for _, id in ipairs(ids) do
    local q = delete_task(id, set)
    if q then touched[q] = true end
    n = n + 1
  end
end
-- Completed and cancelled tasks live in per-queue sets by finish time, dead
-- ones in one global set.
for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
  for _, s in ipairs(ALL_STATES) do
    if HOME[s] == 'finished' then prune_set(home_key(q, s), ARGV[2]) end
  end
end
prune_set(DEADSET, ARGV[3])
flush()
for q in pairs(touched) do
  if queue_empty(q) then redis.call('SREM', QUEUES, q) end
end
return n
