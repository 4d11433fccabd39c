-- wf_prune: ARGV = prefix, finished, dead, limit.
-- Drops up to `limit` workflows that ended before their retention: one
-- whose body succeeded that ended before `finished`, any other before
-- `dead` (kept as long as dead tasks, for inspection). Their nodes settled
-- when they ended, so no task record points at them. Returns how many.
local limit = tonumber(ARGV[4])
local n = 0
for _, done in ipairs({{wf.DONE_OK, ARGV[2]}, {wf.DONE_BAD, ARGV[3]}}) do
  if n >= limit then break end
  local ids = redis.call('ZRANGEBYSCORE', done[1], '-inf', '(' .. done[2], 'LIMIT', 0, limit - n)
  for _, w in ipairs(ids) do redis.call('DEL', wf.key(w)) end
  bulk('ZREM', done[1], ids)
  bulk('ZREM', wf.ALL, ids)
  n = n + #ids
end
return n
