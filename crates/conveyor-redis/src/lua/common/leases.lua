-- The shared code's second part (after names.lua): running counts, lease
-- groups, the buffered writes' flush, home sets and counts, and the scans of
-- the ready sets.

-- Running counts per handler change by these deltas at the next flush: one
-- HINCRBY per handler per script instead of one per task.
local function count_running(h, d)
  running_delta[h] = (running_delta[h] or 0) + d
end

-- Lease groups. A running task's lease is either a member of its queue's
-- lease set (its id, scored by the lease's end) or, for the tasks one
-- reserve call took of a queue, one group: a member of the queue's group
-- lease set (the call's token, scored by the lease's end) and, in the
-- queue's groups hash, its live count under the token (the tasks of the
-- group that still run under it and were not split out) and its ids under
-- 'i' and the token (' ID ID ... '). A reservation writes two small
-- commands instead of a lease-set member per task, and a finish lowers a
-- count instead of removing a member per task. A renewal of all of a
-- group's live tasks moves the group's score; one of only some of them
-- splits those out: each gets a member of its own in the lease set, is
-- named under 's' and the token (' ID ... '), and no longer counts as live.
-- A group whose count reaches zero is deleted; one whose lease ends is
-- expanded by recover.
-- Tasks reserved before groups existed, and tasks stored before the record
-- layout (a token of their own), keep members of their own.

-- Task id of queue q, running under lease token tk, leaves running: its
-- lease goes at the next flush (its group's count, or its own member).
local function lease_gone(q, id, tk)
  if q ~= gone_q or tk ~= gone_tk then
    local ids = subtable(subtable(leases_gone, q), tk)
    gone_q, gone_tk, gone_ids, gone_n = q, tk, ids, #ids
  end
  gone_n = gone_n + 1
  gone_ids[gone_n] = id
end

-- Task id of queue q joins this call's group (written by write_group).
local function group_add(q, id)
  local t = subtable(group_new, q)
  t[#t + 1] = id
end

-- Writes the groups of this reserve call, token tk, lease until lu.
local function write_groups(tk, lu)
  for q, ids in pairs(group_new) do
    local k = groups_keys(q)
    redis.call('ZADD', k[1], lu, tk)
    redis.call('HSET', k[2], tk, #ids, 'i' .. tk, ' ' .. table.concat(ids, ' ') .. ' ')
  end
  group_new = {}
end

-- Deletes group tk of queue q (its split-out tasks keep their members).
local function drop_group(q, tk)
  local k = groups_keys(q)
  redis.call('ZREM', k[1], tk)
  redis.call('HDEL', k[2], tk, 'i' .. tk, 's' .. tk)
end

-- Whether ' ID ' is in the space-separated list l (false or nil for none).
local function listed(l, id)
  return l and string.find(l, ' ' .. id .. ' ', 1, true) ~= nil
end

-- The groups of queue q named by the keys of by_token, read with one HMGET:
-- their tokens, and per token (same places) the live count (nil: no such
-- group) and the split-out ids (nil: none).
local function groups_read(q, by_token)
  local tokens, fields = {}, {}
  for tk in pairs(by_token) do
    tokens[#tokens + 1] = tk
    fields[#fields + 1] = tk
    fields[#fields + 1] = 's' .. tk
  end
  local got = redis.call('HMGET', groups_keys(q)[2], unpack(fields))
  local lives, splits = {}, {}
  for i = 1, #tokens do
    lives[i], splits[i] = tonumber(got[2 * i - 1]), got[2 * i] or nil
  end
  return tokens, lives, splits
end

-- The leases of the tasks that left running (lease_gone): per queue one
-- read of the live counts of their tokens, then one count change per group
-- (a group that reaches zero is deleted) and their own members removed.
local function flush_leases()
  for q, by_token in pairs(leases_gone) do
    local k = groups_keys(q)
    local tokens, lives, splits = groups_read(q, by_token)
    for i, tk in ipairs(tokens) do
      local live, split = lives[i], splits[i]
      local ids = by_token[tk]
      local gone = 0
      if live and not split then
        -- The common case: all of them were the group's.
        gone = #ids
      else
        for _, id in ipairs(ids) do
          if live and not listed(split, id) then
            gone = gone + 1
          else
            zrem(leases_key(q), id)
          end
        end
      end
      if gone > 0 then
        if live - gone <= 0 then
          drop_group(q, tk)
        else
          redis.call('HINCRBY', k[2], tk, -gone)
        end
      end
    end
  end
  leases_gone = {}
  gone_q, gone_tk = nil, nil
end

-- Whether task id of queue q, running under token tk, holds its lease
-- through its group (not split out): its own member, if it has one, is a
-- leftover.
local function in_group(q, id, tk)
  local _, lives, splits = groups_read(q, {[tk] = true})
  return lives[1] ~= nil and not listed(splits[1], id)
end

-- The ids group tk of queue q names that were not split out of it (some may
-- since have finished, or run again under another token), and how many it
-- names in all.
local function group_ids(q, tk)
  local got = redis.call('HMGET', groups_keys(q)[2], 'i' .. tk, 's' .. tk)
  local ids, all = {}, 0
  for id in string.gmatch(got[1] or '', '%S+') do
    all = all + 1
    if not listed(got[2], id) then ids[#ids + 1] = id end
  end
  return ids, all
end

local function flush()
  flush_leases()
  for h, d in pairs(running_delta) do
    if d ~= 0 and redis.call('HINCRBY', RUNNING_H, h, d) <= 0 then
      redis.call('HDEL', RUNNING_H, h)
    end
  end
  running_delta = {}
  for key, t in pairs(pending) do
    local add, rem = {}, {}
    for m, score in pairs(t) do
      if score then
        add[#add + 1] = score
        add[#add + 1] = m
      else
        rem[#rem + 1] = m
      end
    end
    for i = 1, #rem, CHUNK do
      redis.call('ZREM', key, unpack(rem, i, math.min(i + CHUNK - 1, #rem)))
    end
    for i = 1, #add, CHUNK do
      redis.call('ZADD', key, unpack(add, i, math.min(i + CHUNK - 1, #add)))
    end
  end
  pending = {}
end

-- Sends one multi-member command (ZADD with score, member, ...; ZREM or RPUSH
-- with members) per CHUNK items of `items`, at once. For the hot paths of
-- reserve and finish, whose writes touch each (key, member) once per script:
-- no buffering table per member, no last-write-wins merging.
local function bulk(cmd, key, items)
  for i = 1, #items, CHUNK do
    redis.call(cmd, key, unpack(items, i, math.min(i + CHUNK - 1, #items)))
  end
end

-- The home set of a task in state s (see HOME in the prelude) and its member.
-- A per-queue 'finished' home (completed, cancelled) has the name of the
-- queue's per-state set but is a list, in the order the tasks finished.
local function home_key(q, s)
  local h = HOME[s]
  if h == 'ready' then return ready_key(q)
  elseif h == 'timers' then return TIMERS
  elseif h == 'leases' then return leases_key(q)
  elseif h == 'finished' then return index_key(q, s)
  elseif h == 'dead' then return DEADSET
  end
  fail('no home for state ' .. tostring(s))
end
local function home_member(s, id)
  if HOME[s] == 'ready' then return pad(id) end
  return id
end

-- The set holding every task of queue q in state s: its id index, or for a
-- state without one its home (for available tasks, the parked ones are in
-- parked_key(q) besides).
local function members_key(q, s)
  if INDEXED[s] then return index_key(q, s) end
  return home_key(q, s)
end

-- How many tasks of queue q are in state s.
local function count_state(q, s)
  if not INDEXED[s] and HOME[s] == 'finished' then
    local n = redis.call('LLEN', members_key(q, s))
    for _, l in ipairs(expiry.lists(q, s)) do n = n + redis.call('LLEN', l[2]) end
    return n
  end
  local n = redis.call('ZCARD', members_key(q, s))
  if not INDEXED[s] and HOME[s] == 'ready' then n = n + redis.call('ZCARD', parked_key(q)) end
  if not INDEXED[s] and HOME[s] == 'leases' then
    -- And the live tasks of every lease group (its count is under the
    -- token alone).
    local flat = redis.call('HGETALL', groups_keys(q)[2])
    for i = 1, #flat, 2 do
      if tonumber(flat[i]) then n = n + (tonumber(flat[i + 1]) or 0) end
    end
  end
  return n
end

-- The ids of queue q's running tasks, for a state whose home is the lease
-- set and has no index: the lease set's members and the live tasks of its
-- lease groups (read whole: both are bounded by the work in flight).
local function lease_holders(q)
  local ids = redis.call('ZRANGE', leases_key(q), 0, -1)
  -- A member of its own left beside a group (an older version's renewal)
  -- must not list its task twice.
  local seen = {}
  for _, id in ipairs(ids) do seen[id] = true end
  local k = groups_keys(q)
  local head = STATE_STR[RUNNING] .. ' '
  for _, tk in ipairs(redis.call('ZRANGE', k[1], 0, -1)) do
    local members = group_ids(q, tk)
    if #members > 0 then
      local svs = redis.call('HMGET', TSTATE, unpack(members))
      local lease = head .. tk .. ' '
      for i, id in ipairs(members) do
        if not seen[id] and svs[i] and string.sub(svs[i], 1, #lease) == lease then
          ids[#ids + 1] = id
        end
      end
    end
  end
  return ids
end

-- The ready set orders by priority, then id, so the lowest ids of a queue's
-- ready tasks are the first ones of each priority band. Calls visit(id) for
-- the first `per` tasks of each band, highest priority first, for at most
-- MAX_BANDS bands (distinct priorities).
local MAX_BANDS = 1000
local function ready_lowest(q, per, visit)
  local rk = ready_key(q)
  local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
  local bands = 0
  while first[1] and bands < MAX_BANDS do
    local score = first[2]
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', rk, score, score, 'LIMIT', 0, per)) do
      visit(unpad(m))
    end
    bands = bands + 1
    first = redis.call('ZRANGEBYSCORE', rk, '(' .. score, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  end
end

-- Up to `per` ids of each priority band and of the parked tasks of queue q:
-- among them the `per` available tasks with the lowest ids (callers sort and
-- cut).
local function available_lowest(q, per)
  local ids = {}
  ready_lowest(q, per, function(id) ids[#ids + 1] = id end)
  for _, id in ipairs(redis.call('ZRANGE', parked_key(q), 0, per - 1)) do ids[#ids + 1] = id end
  return ids
end
