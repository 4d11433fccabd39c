-- keep: ARGV = prefix, now, n, then n records of 14 arguments each: id,
-- queue, handler, d (see packed_of), run-at, state code, attempts,
-- finished-at ('' for none), has-result ('0'|'1'), result, has-error,
-- error, when the record expires (ms), and whether that is its own expiry
-- ('1': its keep or its handler's retention, which get reads back; '0':
-- the retention the keeper was given).
-- Writes records another backend holds the tasks of (the record keeper
-- part), in this store's record layout, so get and the finish channel serve
-- them as they serve its own tasks. A kept record is in none of this
-- store's own queue sets: it is never reserved, recovered, cancelled or
-- requeued here, and its own listings and counts never show it. It is in
-- the kept-record index instead (see common/kept.lua), moved there from its
-- last queue and state in this same call. Its id is a member of KEPT,
-- scored by when it expires; each call first drops a batch of the expired
-- ones. Fails, writing nothing, when an id is one of this store's own
-- tasks. Returns how many expired records it dropped.
local now, n = ARGV[2], tonumber(ARGV[3])
local SPAN = 14
if #ARGV ~= 3 + n * SPAN then
  fail('keep: ' .. n .. ' records take ' .. (3 + n * SPAN) .. ' arguments, not ' .. #ARGV)
end
-- Checked before any write (a script's writes are not undone when it fails).
for i = 0, n - 1 do
  local b = 4 + i * SPAN
  local id = ARGV[b]
  if not string.find(id, '^%d+$') then fail('keep: bad task id ' .. id) end
  if not STATE_NAME[tonumber(ARGV[b + 5])] then
    fail('keep: task ' .. id .. ' has an unknown state code ' .. ARGV[b + 5])
  end
  if not redis.call('ZSCORE', KEPT, id) and peek(id, false) ~= nil then
    fail('keep: task ' .. id .. ' is one of this store\'s own tasks, not a kept record')
  end
end
local expired = kept.drop_expired(now)
-- Each id into the set of its last record in the batch (out of the one its
-- entry in the order names), after the records are rewritten.
local place, order = {}, {}
for i = 0, n - 1 do
  local b = 4 + i * SPAN
  local id = ARGV[b]
  if not place[id] then order[#order + 1] = id end
  place[id] = {ARGV[b + 1], ARGV[b + 5]}
end
local datas, states, results, expiries, owns, not_owns = {}, {}, {}, {}, {}, {}
local errors, no_result, no_error, ids, finished = {}, {}, {}, {}, {}
-- A field of record id that it has (flag '1': `value` joins the id and
-- value pairs `set`) or has not (id joins the ids `unset`).
local function field(flag, id, value, set, unset)
  if flag == '1' then
    set[#set + 1] = id
    set[#set + 1] = value
  else
    unset[#unset + 1] = id
  end
end
for i = 0, n - 1 do
  local b = 4 + i * SPAN
  local id, q, h, d, ra = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local s, a, fa = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  ids[#ids + 1] = id
  datas[#datas + 1] = id
  datas[#datas + 1] = data_head(q, h, '0', false, false, ra) .. d
  states[#states + 1] = id
  states[#states + 1] = state_value({s = s, tk = '0', fa = fa ~= '' and fa, a = a, ra = ra})
  field(ARGV[b + 8], id, ARGV[b + 9], results, no_result)
  field(ARGV[b + 10], id, ARGV[b + 11], errors, no_error)
  expiries[#expiries + 1] = ARGV[b + 12]
  expiries[#expiries + 1] = id
  field(ARGV[b + 13], id, ARGV[b + 12], owns, not_owns)
  if FINISHED[tonumber(s)] then finished[#finished + 1] = id end
end
bulk('HSET', TDATA, datas)
bulk('HSET', TSTATE, states)
bulk('HSET', TRESULT, results)
bulk('HDEL', TRESULT, no_result)
bulk('HSET', TERROR, errors)
bulk('HDEL', TERROR, no_error)
bulk('HDEL', THISTORY, ids)
bulk('ZADD', KEPT, expiries)
bulk('HDEL', kept.own(), not_owns)
bulk('HSET', kept.own(), owns)
kept.index_many(order, place)
publish_finished(finished)
return expired
