-- kept_purge: ARGV = prefix, now, state code, limit, then at most one
-- queue name (none: every queue a record was kept for).
-- Drops up to limit kept records (see keep.lua) in the state, of the queue;
-- this store's own tasks are never in the kept index, so never touched.
-- Returns how many; the caller runs it again while a full batch went.
local now, state, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if not STATE_STR[state] then fail('kept_purge: unknown state code ' .. ARGV[3]) end
kept.drop_expired(now)
local queues
if ARGV[5] then queues = {ARGV[5]} else queues = redis.call('SMEMBERS', kept.queues()) end
local gone = {}
for _, q in ipairs(queues) do
  if #gone >= limit then break end
  for _, id in ipairs(redis.call('ZRANGE', kept.set(q, state), 0, limit - #gone - 1)) do
    gone[#gone + 1] = id
  end
end
kept.drop(gone)
return #gone
