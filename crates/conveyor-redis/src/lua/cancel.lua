-- cancel: ARGV = prefix, now, id.
-- Cancels a waiting or running task. Returns -1 when there is no such
-- task, else the state code afterwards: cancelled, or the finished state
-- that made cancelling impossible.
local now, id = ARGV[2], ARGV[3]
-- A record kept for another backend is not a task of this store.
if redis.call('ZSCORE', KEPT, id) then return -1 end
local r = load(id, {'s', 'q', 'pr', 'ok', 'uk', 'tk', 'a', 'h', 'at', 'hi'})
if r == nil then return -1 end
if not TR.Cancel.from[r.s] then return r.s end
if r.s == RUNNING then
  -- Its attempt is settled as cancelled and its lease ends with it: the
  -- worker's renewal and report are refused from now on.
  move(r, 'Cancel', now, {'e', CANCELLED_WHILE_RUNNING, 'hi', history_with(r, now, 'cancelled', nil)})
else
  move(r, 'Cancel', now, {})
end
flush()
publish_finished({id})
return r.s
