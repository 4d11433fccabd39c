-- list: ARGV = prefix, state code, limit, then at most one queue name (none:
-- every queue).
-- Returns up to limit tasks in that state, lowest id first, each as a flat
-- field, value, ... array (HGETALL) with the id first.
local state = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local queues
if ARGV[4] then queues = {ARGV[4]} else queues = redis.call('SMEMBERS', QUEUES) end
local ids = {}
for _, q in ipairs(queues) do
  -- An id index gives its lowest ids; a state without one (running, bounded by
  -- the work in flight) is read whole and sorted.
  local stop = -1
  if INDEXED[state] then stop = limit - 1 end
  for _, id in ipairs(redis.call('ZRANGE', members_key(q, state), 0, stop)) do
    ids[#ids + 1] = id
  end
end
table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
local out = {}
for i = 1, math.min(limit, #ids) do
  local fields = redis.call('HGETALL', task_key(ids[i]))
  if #fields > 0 then out[#out + 1] = {ids[i], fields} end
end
return out
