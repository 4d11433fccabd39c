-- renew: ARGV = prefix, lease_until, then id, token per lease.
-- Returns 1 per lease still held (extended), 0 otherwise. The expiry lives only
-- as the task's score in its queue's lease set.
local lu = ARGV[2]
local out = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local r = load(id, {'s', 'q', 'tk'})
  if r ~= nil and r.s == RUNNING and r.tk == token then
    zadd(leases_key(r.q), lu, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
return out
