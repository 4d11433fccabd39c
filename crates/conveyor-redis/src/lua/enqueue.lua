-- enqueue: ARGV = prefix, now, r, then r requests (callers' calls grouped
-- into this one script call), each: n, span, then its n tasks as forms
-- taking span arguments (see enqueue_tasks in common/steps.lua).
-- Returns per request {1, first, then position, id per duplicate}: the
-- tasks that are not duplicates got the ids first, first + 1, ... in
-- order; a duplicate (its unique key held by an unfinished task) gets that
-- task's id. Or {0, error} when the store's own data stopped the request (a
-- key of the wrong type, written by something else): each request is
-- applied on its own, as if alone, so one caller's damaged queue fails no
-- other caller. Redis does not roll a script back, so a stopped request's
-- writes up to there stay; its ids are never handed out again. Every task
-- was validated before the call.
local now = ARGV[2]
local r = tonumber(ARGV[3])
local replies, wake = {}, {}
-- The ids of every request, taken at once before anything is written; a
-- request stopped half way leaves its ids unused.
local total, b = 0, 4
for k = 1, r do
  total = total + tonumber(ARGV[b])
  b = b + 2 + tonumber(ARGV[b + 1])
end
local seq = take_ids(total)
b = 4
local function request(n, span, out)
  enqueue_tasks(now, b + 2, n, span, out, wake, seq)
  flush()
end
for k = 1, r do
  local n, span = tonumber(ARGV[b]), tonumber(ARGV[b + 1])
  local out = {1, seq + 1}
  local ok, err = pcall(request, n, span, out)
  if not ok then
    -- Nothing of the stopped request is carried into the next one.
    pending = {}
    running_delta = {}
    if type(err) == 'table' then err = err.err end
    out = {0, tostring(err)}
  end
  replies[k] = out
  seq = seq + n
  b = b + 2 + span
end
flush_ready()
publish(wake)
return replies
