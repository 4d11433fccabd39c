-- purge: ARGV = prefix, limit, then at most one queue name (none: every queue).
-- Deletes up to limit dead tasks. Returns how many; the caller runs it again
-- while a full batch was deleted.
local limit = tonumber(ARGV[2])
local queues
if ARGV[3] then queues = {ARGV[3]} else queues = redis.call('SMEMBERS', QUEUES) end
local n = 0
local touched = {}
for _, q in ipairs(queues) do
  if n >= limit then break end
  local ids = redis.call('ZRANGE', index_key(q, DEAD), 0, limit - n - 1)
  for _, id in ipairs(ids) do
    delete_task(id, DEADSET)
    touched[q] = true
    n = n + 1
  end
end
flush()
for q in pairs(touched) do
  if queue_empty(q) then redis.call('SREM', QUEUES, q) end
end
return n
