-- wf_submit: ARGV = prefix, now, spec, tally, class, n, then the n node
-- rows ('STATE WAITING_ON', node 0 first), then k and the k nodes that
-- start, then their tasks as a task list (see wf.enqueue). class: '' for a
-- workflow that runs, else how it ended at once (see wf.close).
-- Stores a new workflow and enqueues its first tasks in one step. Returns
-- {its id, the id before its first task}.
local now, class = ARGV[2], ARGV[5]
local n = tonumber(ARGV[6])
local w = string.format('%d', redis.call('INCR', wf.SEQ))
local sets = {'spec', ARGV[3], 't', ARGV[4], 'v', '0', 'c', now, 'N', ARGV[6]}
for i = 1, n do
  sets[#sets + 1] = 'n:' .. string.format('%d', i - 1)
  sets[#sets + 1] = ARGV[6 + i]
end
bulk('HSET', wf.key(w), sets)
redis.call('ZADD', wf.ALL, w, w)
local wake = {}
local at = 7 + n
local first = wf.enqueue(now, w, at + 1, tonumber(ARGV[at]), wake)
wf.close(w, now, class)
flush()
flush_ready()
publish(wake)
return {tonumber(w), first}
