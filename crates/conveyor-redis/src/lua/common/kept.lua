-- The shared code's fifth part (after steps.lua): the index of the records
-- kept for another backend (see keep.lua), so they can be listed and
-- counted by queue and state without ever meeting this store's own tasks.
--
-- Each kept record is a member of one sorted set, kept.set(queue, state)
-- ('kept:q:LEN:QUEUE:STATE' under the prefix, apart from the own tasks'
-- 'q:LEN:QUEUE:...' keys), scored by its place in 'kept:order' (a hash,
-- id -> 'PLACE STATE QUEUE', see kept.entry): the order the store first
-- kept it in ('kept:next' hands the places out). The writer's ids need
-- not grow with time (RabbitMQ's are random), so this order is what
-- "oldest first" means for kept records; its scores are small integers,
-- exact as sorted-set scores.
-- 'kept:queues' names every queue a record was kept for. keep.lua moves a
-- record between sets in the same call that rewrites it; kept.drop
-- (expiry, forget, purge) takes it out of them.
--
-- One table of functions, not a local each: a script (the shared code and
-- one body) may have at most 200 locals.
local kept = {}

-- The hash of places, the counter, the set of queue names.
function kept.order() return P .. 'kept:order' end
-- The expiries of the kept records that have one of their own (id -> ms),
-- which get reads back as theirs.
function kept.own() return P .. 'kept:own' end
function kept.next() return P .. 'kept:next' end
function kept.queues() return P .. 'kept:queues' end

-- The set of kept records of queue q in state s (a code, number or string).
function kept.set(q, s)
  return P .. 'kept:q:' .. string.len(q) .. ':' .. q .. ':' .. STATE_STR[tonumber(s)]
end

-- A kept record's entry in kept.order(): 'AT STATE QUEUE', its place in
-- the order, the state code and the queue it is indexed under, so moving it
-- reads one field and parses no record. (The queue comes last: it may hold
-- spaces.)
function kept.entry(id)
  return kept.parse(redis.call('HGET', kept.order(), id))
end

-- The place, state code and queue of an entry value (nil for none).
function kept.parse(v)
  if not v then return nil end
  local at, s, q = string.match(v, '^(%d+) (%d+) (.*)$')
  return at, s, q
end

-- Puts each kept record of `ids` in the set of its queue and state
-- (place[id] = {queue, state code}), out of the one its entry names, at its
-- place in the order (new places, in the order of `ids`, for the ones kept
-- for the first time). A whole keep call costs a handful of commands, not
-- four per record: one read of the entries, one counter step, and one
-- removal and one addition per set touched.
function kept.index_many(ids, place)
  if #ids == 0 then return end
  local entries = {}
  for i = 1, #ids, CHUNK do
    local got = redis.call('HMGET', kept.order(), unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    for j = 1, #got do entries[i + j - 1] = got[j] end
  end
  local fresh = 0
  for i = 1, #ids do
    if not entries[i] then fresh = fresh + 1 end
  end
  local next_at = 0
  if fresh > 0 then next_at = redis.call('INCRBY', kept.next(), fresh) - fresh end
  local removes, adds, queues, hash = {}, {}, {}, {}
  for i, id in ipairs(ids) do
    local q, s = place[id][1], place[id][2]
    local at, old_s, old_q = kept.parse(entries[i])
    if not (at and old_s == s and old_q == q) then
      if at then
        local from = kept.set(old_q, old_s)
        removes[from] = removes[from] or {}
        table.insert(removes[from], id)
      else
        next_at = next_at + 1
        at = next_at
        queues[q] = true
      end
      local to = kept.set(q, s)
      adds[to] = adds[to] or {}
      table.insert(adds[to], at)
      table.insert(adds[to], id)
      table.insert(hash, id)
      table.insert(hash, at .. ' ' .. s .. ' ' .. q)
    end
  end
  for key, members in pairs(removes) do bulk('ZREM', key, members) end
  for key, members in pairs(adds) do bulk('ZADD', key, members) end
  local names = {}
  for q in pairs(queues) do table.insert(names, q) end
  bulk('SADD', kept.queues(), names)
  bulk('HSET', kept.order(), hash)
end

-- Takes kept record id out of the set its entry names.
function kept.unindex(id)
  local at, s, q = kept.entry(id)
  if at then redis.call('ZREM', kept.set(q, s), id) end
end

-- Drops the records kept for another backend of `ids`: out of their index
-- sets, then their record hashes' fields, their places and their KEPT
-- members.
function kept.drop(ids)
  if #ids == 0 then return end
  for _, id in ipairs(ids) do kept.unindex(id) end
  admin.drop_records(ids, {})
  bulk('HDEL', kept.order(), ids)
  bulk('HDEL', kept.own(), ids)
  bulk('ZREM', KEPT, ids)
end

-- Drops up to `limit` (default 200: the batch a keep, a count or a purge
-- takes on by the way) kept records whose time is up (their KEPT score is
-- before now); returns how many.
function kept.drop_expired(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', KEPT, '-inf', '(' .. now, 'LIMIT', 0, limit or 200)
  kept.drop(expired)
  return #expired
end
