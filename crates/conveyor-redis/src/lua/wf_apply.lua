-- wf_apply: ARGV = prefix, now, W, version, class, mode ('1': the workflow
-- is cancelled now; '2': a retry reopened it, and the n nodes below forget
-- their task, result and error; '0' neither), tally ('' unchanged), then
-- n and n (node,
-- row) pairs, then o and o (field, value) pairs of settled nodes' outputs
-- ('r:NODE' a result, 'e:NODE' an error), then f and f task ids whose ends
-- this settles (their records in wf.ENDED and wf.TASKS go), then c and c
-- task ids to cancel (a cancelled workflow's running nodes: their ends
-- are among the f), then k, the k nodes made ready and their tasks (see
-- wf.enqueue). class as for wf.close.
-- Writes what the client decided over version `version` of workflow W if
-- it is still at that version: returns {1, the id before the first task
-- enqueued}, or {0} when W changed since or is gone (the client reads it
-- again and decides again).
local now, w, version, class = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = wf.key(w)
if redis.call('HGET', key, 'v') ~= version then return {0} end
redis.call('HINCRBY', key, 'v', 1)
local sets = {}
if ARGV[7] ~= '' then sets = {'t', ARGV[7]} end
if ARGV[6] == '1' then
  sets[#sets + 1] = 'k'
  sets[#sets + 1] = '1'
end
local at = 8
local n = tonumber(ARGV[at])
if ARGV[6] == '2' then
  local gone = {'k', 'x'}
  for i = at + 1, at + 2 * n, 2 do
    local node = ARGV[i]
    gone[#gone + 1] = 't:' .. node
    gone[#gone + 1] = 'r:' .. node
    gone[#gone + 1] = 'e:' .. node
  end
  bulk('HDEL', key, gone)
  redis.call('ZREM', wf.DONE_OK, w)
  redis.call('ZREM', wf.DONE_BAD, w)
end
for i = at + 1, at + 2 * n, 2 do
  sets[#sets + 1] = 'n:' .. ARGV[i]
  sets[#sets + 1] = ARGV[i + 1]
end
at = at + 1 + 2 * n
local o = tonumber(ARGV[at])
for i = at + 1, at + 2 * o do sets[#sets + 1] = ARGV[i] end
at = at + 1 + 2 * o
bulk('HSET', key, sets)
local f = tonumber(ARGV[at])
local settled = {}
for i = 1, f do settled[i] = ARGV[at + i] end
at = at + 1 + f
local c = tonumber(ARGV[at])
for i = at + 1, at + c do admin.cancel(now, ARGV[i]) end
at = at + 1 + c
bulk('SREM', wf.ENDED, settled)
bulk('HDEL', wf.TASKS, settled)
local wake = {}
local first = wf.enqueue(now, w, at + 1, tonumber(ARGV[at]), wake)
wf.close(w, now, class)
flush()
flush_ready()
publish(wake)
return {1, first}
