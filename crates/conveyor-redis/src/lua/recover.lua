-- recover: ARGV = prefix, now, limit.
-- Tasks whose lease ran out (lease_until < now) become available again, or
-- dead on their last attempt; the attempt goes to the task's history as
-- 'expired'. A lease is a member of its queue's lease set or a lease group
-- (see "Lease groups" in common/leases.lua): an expired group's live tasks are
-- recovered and the group deleted. Returns {recovered, examined}: the caller
-- runs it again while a full batch was examined.
local now = ARGV[2]
local limit = tonumber(ARGV[3])
local n, examined = 0, 0
local wake = {}
local died = {}
local FIELDS = {'s', 'q', 'pr', 'ok', 'uk', 'a', 'h', 'at', 'hi', 'd', 'ma'}

local function expire(r)
  r.ra = now
  if num(r, 'a') >= max_attempts(r) then
    move(r, 'ExpireFinal', now, {'e', 'lease expired on the last attempt', 'ra', now,
      'hi', history_with(r, now, 'expired', nil)})
    died[#died + 1] = r.id
  else
    move(r, 'Expire', now, {'e', 'lease expired', 'ra', now,
      'hi', history_with(r, now, 'expired', nil)})
    wake[r.q] = true
  end
  n = n + 1
end

for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
  if examined >= limit then break end
  local lk = leases_key(q)
  local ids = redis.call('ZRANGEBYSCORE', lk, '-inf', '(' .. now, 'LIMIT', 0, limit - examined)
  examined = examined + #ids
  for _, id in ipairs(ids) do
    local r = load(id, FIELDS)
    if r == nil or r.s ~= RUNNING or r.q ~= q then
      -- A stray entry: the task is gone or lives elsewhere.
      zrem(lk, id)
    elseif r.layout and in_group(q, id, r.tk) then
      -- A leftover: the task's lease is its group's.
      zrem(lk, id)
    else
      expire(r)
    end
  end
  local k = groups_keys(q)
  local groups = {}
  if examined < limit then
    groups = redis.call('ZRANGEBYSCORE', k[1], '-inf', '(' .. now, 'LIMIT', 0, limit - examined)
  end
  for _, tk in ipairs(groups) do
    if examined >= limit then break end
    local ids, all = group_ids(q, tk)
    examined = examined + all
    for _, id in ipairs(ids) do
      local r = load(id, FIELDS)
      -- Only a task still running under the group's token: the others
      -- finished, or run again under another lease.
      if r ~= nil and r.layout and r.s == RUNNING and r.q == q and r.tk == tk then expire(r) end
    end
    drop_group(q, tk)
  end
end
flush()
publish(wake)
publish_finished(died)
wf.note_ends(died)
return {n, examined}
