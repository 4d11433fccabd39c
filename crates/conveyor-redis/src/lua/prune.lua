-- prune: ARGV = prefix, completed/cancelled finished before, dead finished
-- before, limit.
-- Deletes up to limit finished tasks older than their retention. Returns how
-- many; the caller runs it again while a full batch was deleted.
local limit = tonumber(ARGV[4])
local n = 0
local touched = {}
for _, pair in ipairs({{DONE, ARGV[2]}, {DEADSET, ARGV[3]}}) do
  if n < limit then
    local ids = redis.call('ZRANGEBYSCORE', pair[1], '-inf', '(' .. pair[2], 'LIMIT', 0, limit - n)
    for _, id in ipairs(ids) do
      local q = delete_task(id, pair[1])
      if q then touched[q] = true end
      n = n + 1
    end
  end
end
flush()
for q in pairs(touched) do
  if queue_empty(q) then redis.call('SREM', QUEUES, q) end
end
return n
