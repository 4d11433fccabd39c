-- enqueue: ARGV = prefix, now, r, then r requests (callers' calls grouped
-- into this one script call), each: n, then TASK_ARGS (9) per task: queue,
-- handler, d (the fields that never change, packed by the client: see
-- packed_of in common.lua), priority, run_at, has_unique ('0'|'1'),
-- unique_key, has_ordering ('0'|'1'), ordering_key.
-- Returns per request {1, then id, duplicate (0|1) per task}, or {0, error}
-- when the store's own data stopped it (a key of the wrong type, written by
-- something else): each request is applied on its own, as if alone, so one
-- caller's damaged queue fails no other caller. Redis does not roll a script
-- back, so a stopped request's writes up to there stay; its ids are never
-- handed out again. Every task was validated before the call.
local now = ARGV[2]
local r = tonumber(ARGV[3])
local replies, wake = {}, {}
-- The ids of every request, taken at once before anything is written; a
-- request stopped half way leaves its ids unused.
local total, b = 0, 4
for k = 1, r do
  local n = tonumber(ARGV[b])
  total = total + n
  b = b + 1 + TASK_ARGS * n
end
local seq = take_ids(total)
b = 4
local function request(n, out)
  enqueue_tasks(now, b, n, out, wake, seq)
  flush()
end
for k = 1, r do
  local n = tonumber(ARGV[b])
  local out = {1}
  local ok, err = pcall(request, n, out)
  if not ok then
    -- Nothing of the stopped request is carried into the next one.
    pending = {}
    running_delta = {}
    if type(err) == 'table' then err = err.err end
    out = {0, tostring(err)}
  end
  replies[k] = out
  seq = seq + n
  b = b + 1 + TASK_ARGS * n
end
flush_ready()
publish(wake)
return replies
