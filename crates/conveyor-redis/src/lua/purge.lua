-- purge: ARGV = prefix, limit, then at most one queue name (none: every queue).
-- Deletes up to limit dead tasks. Returns how many; the caller runs it again
-- while a full batch was deleted.
local limit = tonumber(ARGV[2])
local queues
if ARGV[3] then queues = {ARGV[3]} else queues = redis.call('SMEMBERS', QUEUES) end
local n = 0
local touched = {}
local gone, older = {}, {}
for _, q in ipairs(queues) do
  if n >= limit then break end
  local ids = redis.call('ZRANGE', index_key(q, DEAD), 0, limit - n - 1)
  if #ids > 0 then
    -- A task of the record layout has a state record once it has died.
    local svs = hmget(TSTATE, ids)
    for i, id in ipairs(ids) do
      zrem(DEADSET, id)
      zrem(expiry.all, id)
      zrem(index_key(q, DEAD), id)
      if svs[i] then gone[#gone + 1] = id else older[#older + 1] = id end
    end
    touched[q] = true
    n = n + #ids
  end
end
admin.drop_records(gone, older)
flush()
for q in pairs(touched) do
  if admin.queue_empty(q) then redis.call('SREM', QUEUES, q) end
end
return n
