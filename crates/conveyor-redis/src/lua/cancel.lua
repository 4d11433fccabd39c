-- cancel: ARGV = prefix, now, id.
-- Returns -1 when there is no such task, else the state code afterwards:
-- cancelled, or the state that made cancelling impossible.
local now, id = ARGV[2], ARGV[3]
-- A record kept for another backend is not a task of this store.
if redis.call('ZSCORE', KEPT, id) then return -1 end
local r = load(id, {'s', 'q', 'pr', 'ok', 'uk'})
if r == nil then return -1 end
if not TR.Cancel.from[r.s] then return r.s end
move(r, 'Cancel', now, {})
flush()
publish_finished({id})
return r.s
