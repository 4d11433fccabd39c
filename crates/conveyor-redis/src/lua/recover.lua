-- recover: ARGV = prefix, now, limit.
-- Tasks whose lease ran out (lease_until < now) become available again, or
-- dead on their last attempt. Returns {recovered, examined}: the caller runs
-- it again while a full batch was examined.
local now = ARGV[2]
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. now, 'LIMIT', 0, limit)
local n = 0
local wake = {}
for _, id in ipairs(ids) do
  local r = load(id, {'s', 'q', 'pr', 'ok', 'uk', 'a', 'ma'})
  if r == nil or r.s ~= RUNNING then
    zrem(LEASES, id)
  else
    r.ra = now
    if num(r, 'a') >= num(r, 'ma') then
      move(r, 'ExpireFinal', now, {'e', 'lease expired on the last attempt', 'ra', now})
    else
      move(r, 'Expire', now, {'e', 'lease expired', 'ra', now})
      wake[r.q] = true
    end
    n = n + 1
  end
end
flush()
publish(wake)
return {n, #ids}
