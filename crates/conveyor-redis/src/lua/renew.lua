-- renew: ARGV = prefix, lease_until, then id, token per lease.
-- Returns 1 per lease still held (extended), 0 otherwise. The expiry lives only
-- as a score: the task's in its queue's lease set, or its lease group's (see
-- "Lease groups" in common/leases.lua). A renewal of every live task of a group
-- moves the group's score; one of only some of them splits those out of
-- the group. The state and data records of every lease are read with one
-- HMGET each, not per lease.
local lu = ARGV[2]
local ids, tokens = {}, {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  tokens[#tokens + 1] = ARGV[i + 1]
end
local out = {}
if #ids == 0 then return out end
-- Per queue and token: the leases of the record layout renewed (a set).
local groups = {}
local svs, dvs = hmget(TSTATE, ids), hmget(TDATA, ids)
local running = STATE_STR[RUNNING] .. ' '
for i, id in ipairs(ids) do
  local sv, dv = svs[i], dvs[i]
  local q = false
  if sv then
    -- Running under this token: the state record starts 'S TK '.
    local head = running .. tokens[i] .. ' '
    if sub(sv, 1, #head) == head then
      q = dv and route(dv)
      -- A record that does not decode is reported by load.
      if not q then q = load(id, {'s', 'q'}).q end
    end
  elseif not dv then
    -- A task stored before the record hashes (or none).
    local r = load(id, {'s', 'q', 'tk'})
    if r ~= nil and r.s == RUNNING and r.tk == tokens[i] then q = r.q end
  end
  if q then
    out[i] = 1
    if sv then
      -- The record layout: a reserve call's token, maybe its group's lease.
      subtable(subtable(groups, q), tokens[i])[id] = true
    else
      zadd(leases_key(q), lu, id)
    end
  else
    out[i] = 0
  end
end
for q, by_token in pairs(groups) do
  local k = groups_keys(q)
  local tks, lives, splits = groups_read(q, by_token)
  for j, tk in ipairs(tks) do
    local live, split = lives[j], splits[j]
    local inside = {}
    for id in pairs(by_token[tk]) do
      if live and not listed(split, id) then
        inside[#inside + 1] = id
      else
        zadd(leases_key(q), lu, id)
      end
    end
    if #inside > 0 and #inside >= live then
      redis.call('ZADD', k[1], lu, tk)
    elseif #inside > 0 then
      -- Not the whole group: these leases become their own.
      for _, id in ipairs(inside) do zadd(leases_key(q), lu, id) end
      redis.call('HSET', k[2], 's' .. tk, (split or ' ') .. table.concat(inside, ' ') .. ' ')
      redis.call('HINCRBY', k[2], tk, -#inside)
    end
  end
end
flush()
return out
