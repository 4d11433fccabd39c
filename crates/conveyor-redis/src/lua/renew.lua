-- renew: ARGV = prefix, lease_until, then id, token per lease.
-- Returns 1 per lease still held (extended), 0 otherwise.
local lu = ARGV[2]
local out = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local r = load(id, {'s', 'q', 'tk'})
  if r ~= nil and r.s == RUNNING and r.tk == token then
    redis.call('HSET', task_key(id), 'lu', lu)
    zadd(LEASES, tonumber(lu), id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
return out
