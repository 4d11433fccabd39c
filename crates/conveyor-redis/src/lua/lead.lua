-- lead: ARGV = prefix, role, holder, until, now (ms, the backend's clock).
-- Takes or keeps the lead of a maintenance role: the role's hash is written
-- only when it is free, already this holder's, or its term has run out.
-- Returns 1 when the holder leads, 0 while another's term lasts.
local k = P .. 'leader:' .. ARGV[2]
local v = redis.call('HMGET', k, 'h', 'u')
if v[1] and v[1] ~= ARGV[3] and tonumber(v[2]) > tonumber(ARGV[5]) then return 0 end
redis.call('HSET', k, 'h', ARGV[3], 'u', ARGV[4])
return 1
