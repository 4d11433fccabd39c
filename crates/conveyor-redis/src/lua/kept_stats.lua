-- kept_stats: ARGV = prefix, now.
-- The kept records' counts (see keep.lua), in stats.lua's reply: per queue a
-- record was kept for, sorted by name: the name, one count per state in
-- ALL_STATES order, and when its oldest available record became ready (its
-- created-at or run-at, the later), or nil. Drops a batch of expired kept
-- records first, so the counts do not hold many that are gone.
kept.drop_expired(ARGV[2])
local queues = redis.call('SMEMBERS', kept.queues())
table.sort(queues)
local out = {}
for _, q in ipairs(queues) do
  local row = {q}
  for _, s in ipairs(ALL_STATES) do row[#row + 1] = redis.call('ZCARD', kept.set(q, s)) end
  local oldest = false
  local first = redis.call('ZRANGE', kept.set(q, AVAILABLE), 0, 0)[1]
  local r = first and peek(first, false)
  if r and r.d then
    local t, ra = tonumber(created_at(r.d)), tonumber(r.ra)
    if t and ra and ra > t then t = ra end
    if t then oldest = string.format('%.0f', t) end
  end
  row[#row + 1] = oldest
  out[#out + 1] = row
end
return out
