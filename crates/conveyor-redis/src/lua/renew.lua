-- renew: ARGV = prefix, lease_until, then id, token per lease.
-- Returns 1 per lease still held (extended), 0 otherwise. The expiry lives only
-- as the task's score in its queue's lease set. The state and data records
-- of every lease are read with one HMGET each, not per lease.
local lu = ARGV[2]
local ids, tokens = {}, {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  tokens[#tokens + 1] = ARGV[i + 1]
end
local out = {}
if #ids == 0 then return out end
local svs, dvs = hmget(TSTATE, ids), hmget(TDATA, ids)
local running = STATE_STR[RUNNING] .. ' '
for i, id in ipairs(ids) do
  local sv, dv = svs[i], dvs[i]
  local q = false
  if sv then
    -- Running under this token: the state record starts 'S TK '.
    local head = running .. tokens[i] .. ' '
    if sub(sv, 1, #head) == head then
      q = dv and (route(dv) or data_parts(dv))
      -- A record that does not decode is reported by load.
      if not q then q = load(id, {'s', 'q'}).q end
    end
  elseif not dv then
    -- A task stored before the record hashes (or none).
    local r = load(id, {'s', 'q', 'tk'})
    if r ~= nil and r.s == RUNNING and r.tk == tokens[i] then q = r.q end
  end
  if q then
    zadd(leases_key(q), lu, id)
    out[i] = 1
  else
    out[i] = 0
  end
end
flush()
return out
