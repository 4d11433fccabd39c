-- sched: ARGV = prefix, now, mode, then the mode's arguments.
-- Periodic schedules (conveyor_core::schedule): each a hash P..'sc:'..NAME
-- with its declaration (d, JSON), paused (p: '1' or '0'), next fire (n,
-- ms; absent: none), last fire (lf), its task (lt), fire times passed over
-- (m) and revision (v, from 1); every name in P..'sc' (all scores 0, so
-- listed by name), and those not paused with a next fire in P..'sc:due',
-- scored by it. A record is the list {name, d, p, n, lf, lt, m, v}.
--   get NAME                        -> a record, or false
--   all                             -> every record, flat
--   due                             -> the records due at now, flat
--   next                            -> the earliest next fire, or false
--   put NAME REV D P N LF LT M      -> the new rev, or false when the
--                                      schedule is not at REV (0: absent)
--   remove NAME                     -> 1, or 0 when there is none
--   fire M, then M schedules, each NAME REV N LF MISSED K T1..TK and its
--     K tasks as a task list (see enqueue_tasks)
--                                   -> per schedule {1, the K tasks' ids},
--                                      or {0} when it is not at REV; N is
--                                      the next fire to store ('' none),
--                                      LF the last fire ('': kept), MISSED
--                                      added to m; the last task becomes lt
-- Firing writes the record and enqueues its fires in this one call: two
-- leaders that read one revision cannot both fire it.
local now, mode, name = ARGV[2], ARGV[3], ARGV[4]
local ALL = P .. 'sc'
local DUE = ALL .. ':due'
local FIELDS = {'d', 'p', 'n', 'lf', 'lt', 'm', 'v'}
local function key(n) return P .. 'sc:' .. n end
local function read(n)
  local got = redis.call('HMGET', key(n), unpack(FIELDS))
  if not got[7] then return nil end
  local out = {n}
  for i = 1, 7 do out[i + 1] = got[i] end
  return out
end
local function flat(names)
  local out = {}
  for _, n in ipairs(names) do
    local r = read(n)
    if r then
      for i = 1, 8 do out[#out + 1] = r[i] end
    end
  end
  return out
end
-- The revision of NAME is REV ('0': it is absent).
local function at_rev(n, rev)
  local v = redis.call('HGET', key(n), 'v')
  if not v then return rev == '0' end
  return v == rev
end
-- Files NAME under its next fire N ('' none) unless paused.
local function file(n, paused, next_fire)
  if paused == '1' or next_fire == '' then
    redis.call('ZREM', DUE, n)
  else
    redis.call('ZADD', DUE, next_fire, n)
  end
end
local function bump(n)
  return redis.call('HINCRBY', key(n), 'v', 1)
end
if mode == 'get' then
  return read(name) or false
elseif mode == 'all' then
  return flat(redis.call('ZRANGE', ALL, 0, -1))
elseif mode == 'due' then
  return flat(redis.call('ZRANGEBYSCORE', DUE, '-inf', now))
elseif mode == 'next' then
  local first = redis.call('ZRANGE', DUE, 0, 0, 'WITHSCORES')
  if #first == 0 then return false end
  return tonumber(first[2])
elseif mode == 'put' then
  if not at_rev(name, ARGV[5]) then return false end
  local d, p, n, lf, lt, m = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
  local k = key(name)
  redis.call('HSET', k, 'd', d, 'p', p, 'm', m)
  if n == '' then redis.call('HDEL', k, 'n') else redis.call('HSET', k, 'n', n) end
  if lf == '' then redis.call('HDEL', k, 'lf') else redis.call('HSET', k, 'lf', lf) end
  if lt == '' then redis.call('HDEL', k, 'lt') else redis.call('HSET', k, 'lt', lt) end
  redis.call('ZADD', ALL, 0, name)
  file(name, p, n)
  return bump(name)
elseif mode == 'remove' then
  redis.call('ZREM', DUE, name)
  redis.call('ZREM', ALL, name)
  return redis.call('DEL', key(name))
elseif mode == 'fire' then
  local out, wake = {}, {}
  local b = 5
  for j = 1, tonumber(ARGV[4]) do
    local nm, rev, n, lf, missed = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
    local k = tonumber(ARGV[b + 5])
    local t = b + 6 + k
    local m, span = tonumber(ARGV[t]), tonumber(ARGV[t + 1])
    if m ~= k then fail('sched: ' .. k .. ' fire times, ' .. tostring(m) .. ' tasks') end
    b = t + 2 + span
    if rev == '0' or not at_rev(nm, rev) then
      out[j] = {0}
    else
      local ids = {1}
      if k > 0 then
        local seq = take_ids(k)
        local dups = {}
        enqueue_tasks(now, t + 2, k, span, dups, wake, seq)
        local by_pos = {}
        for i = 1, #dups, 2 do by_pos[dups[i]] = dups[i + 1] end
        local c = 0
        for i = 1, k do
          if by_pos[i] then
            ids[i + 1] = tonumber(by_pos[i])
          else
            c = c + 1
            ids[i + 1] = seq + c
          end
        end
        flush()
      end
      local hk = key(nm)
      if n == '' then redis.call('HDEL', hk, 'n') else redis.call('HSET', hk, 'n', n) end
      if lf ~= '' then redis.call('HSET', hk, 'lf', lf) end
      if k > 0 then redis.call('HSET', hk, 'lt', string.format('%d', ids[k + 1])) end
      redis.call('HINCRBY', hk, 'm', missed)
      file(nm, redis.call('HGET', hk, 'p'), n)
      bump(nm)
      out[j] = ids
    end
  end
  flush_ready()
  publish(wake)
  return out
end
return redis.error_reply('sched: unknown mode ' .. tostring(mode))
