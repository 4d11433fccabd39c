-- stats: ARGV = prefix, now, due_scan.
-- Returns per queue: name, one count per state in ALL_STATES order, and when
-- its oldest ready task became ready (available, or scheduled/retrying and
-- due; due tasks not promoted yet are looked at up to due_scan of them) or
-- nil: its due time (enqueued, or the end of a delay or backoff).
local now = ARGV[2]
local oldest = {}
local function older(q, r)
  local t = tonumber(created_at(r.d, r.ca))
  local ra = tonumber(r.ra)
  if t ~= nil and ra ~= nil and ra > t then t = ra end
  if t ~= nil and (oldest[q] == nil or t < oldest[q]) then oldest[q] = t end
end
local due = redis.call('ZRANGEBYSCORE', TIMERS, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  local r = peek(id)
  if r and r.q then older(r.q, r) end
end
local out = {}
local queues = redis.call('SMEMBERS', QUEUES)
table.sort(queues)
for _, q in ipairs(queues) do
  local row = {q}
  for _, s in ipairs(ALL_STATES) do row[#row + 1] = count_state(q, s) end
  -- Ids grow with enqueue time: the lowest available id is the oldest.
  local first
  for _, id in ipairs(available_lowest(q, 1)) do
    if first == nil or tonumber(id) < tonumber(first) then first = id end
  end
  if first then
    local r = peek(first)
    if r then older(q, r) end
  end
  row[#row + 1] = oldest[q] and string.format('%.0f', oldest[q]) or false
  out[#out + 1] = row
end
return out
