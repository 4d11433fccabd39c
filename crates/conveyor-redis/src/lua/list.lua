-- list: ARGV = prefix, state code, limit, then at most one queue name (none:
-- every queue).
-- Returns up to limit tasks in that state, oldest first, each as a flat
-- field, value, ... array (HGETALL) with the id first. Oldest means lowest id,
-- except for completed and cancelled tasks (kept in finish order, not by id):
-- earliest finished, then lowest id.
local state = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local queues
if ARGV[4] then queues = {ARGV[4]} else queues = redis.call('SMEMBERS', QUEUES) end
local ids, at = {}, {}
local by_finish = HOME[state] == 'finished' and not INDEXED[state]
for _, q in ipairs(queues) do
  if HOME[state] == 'ready' and not INDEXED[state] then
    -- Available: the lowest ids of each priority band and the parked ones.
    for _, id in ipairs(available_lowest(q, limit)) do ids[#ids + 1] = id end
  elseif by_finish then
    -- A list in finish order.
    for _, id in ipairs(redis.call('LRANGE', members_key(q, state), 0, limit - 1)) do
      ids[#ids + 1] = id
      at[id] = tonumber(redis.call('HGET', task_key(id), 'fa')) or 0
    end
  else
    -- An id index gives its lowest ids; a state without one (running, bounded
    -- by the work in flight) is read whole and sorted.
    local stop = -1
    if INDEXED[state] then stop = limit - 1 end
    for _, id in ipairs(redis.call('ZRANGE', members_key(q, state), 0, stop)) do
      ids[#ids + 1] = id
    end
  end
end
if by_finish then
  table.sort(ids, function(a, b)
    if at[a] ~= at[b] then return at[a] < at[b] end
    return tonumber(a) < tonumber(b)
  end)
else
  table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
end
-- A stray entry (the task is gone or in another state) is left out.
local want = STATE_STR[state]
local function in_state(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 's' then return fields[i + 1] == want end
  end
  return false
end
local out = {}
for i = 1, math.min(limit, #ids) do
  local fields = redis.call('HGETALL', task_key(ids[i]))
  if in_state(fields) then out[#out + 1] = {ids[i], fields} end
end
return out
