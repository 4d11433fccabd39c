-- recover: ARGV = prefix, now, limit.
-- Tasks whose lease ran out (lease_until < now) become available again, or
-- dead on their last attempt; the attempt goes to the task's history as
-- 'expired'. Returns {recovered, examined}: the caller runs
-- it again while a full batch was examined.
local now = ARGV[2]
local limit = tonumber(ARGV[3])
local n, examined = 0, 0
local wake = {}
local died = {}
for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
  if examined >= limit then break end
  local lk = leases_key(q)
  local ids = redis.call('ZRANGEBYSCORE', lk, '-inf', '(' .. now, 'LIMIT', 0, limit - examined)
  examined = examined + #ids
  for _, id in ipairs(ids) do
    local r = load(id, {'s', 'q', 'pr', 'ok', 'uk', 'a', 'h', 'at', 'hi', 'd', 'ma'})
    if r == nil or r.s ~= RUNNING or r.q ~= q then
      -- A stray entry: the task is gone or lives elsewhere.
      zrem(lk, id)
    else
      r.ra = now
      if num(r, 'a') >= max_attempts(r) then
        move(r, 'ExpireFinal', now, {'e', 'lease expired on the last attempt', 'ra', now,
          'hi', history_with(r, now, 'expired', nil)})
        died[#died + 1] = id
      else
        move(r, 'Expire', now, {'e', 'lease expired', 'ra', now,
          'hi', history_with(r, now, 'expired', nil)})
        wake[r.q] = true
      end
      n = n + 1
    end
  end
end
flush()
publish(wake)
publish_finished(died)
return {n, examined}
