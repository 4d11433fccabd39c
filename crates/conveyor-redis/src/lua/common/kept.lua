-- The shared code's fifth part (after steps.lua): the index of the records
-- kept for another backend (see keep.lua), so they can be listed and
-- counted by queue and state without ever meeting this store's own tasks.
--
-- Each kept record is a member of one sorted set, kept.set(queue, state)
-- ('kept:q:LEN:QUEUE:STATE' under the prefix, apart from the own tasks'
-- 'q:LEN:QUEUE:...' keys), scored by its place in 'kept:order' (a hash,
-- id -> 'PLACE STATE QUEUE', see kept.entry): the order the store first
-- kept it in ('kept:next' hands the places out). The writer's ids need not grow with time (RabbitMQ's are
-- random), so this order is what "oldest first" means for kept records;
-- its scores are small integers, exact as sorted-set scores.
-- 'kept:queues' names every queue a record was kept for. keep.lua moves a
-- record between sets in the same call that rewrites it; kept.drop
-- (expiry, forget, purge) takes it out of them.
--
-- One table of functions, not a local each: a script (the shared code and
-- one body) may have at most 200 locals.
local kept = {}

-- The hash of places, the counter, the set of queue names.
function kept.order() return P .. 'kept:order' end
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
  local v = redis.call('HGET', kept.order(), id)
  if not v then return nil end
  local at, s, q = string.match(v, '^(%d+) (%d+) (.*)$')
  return at, s, q
end

-- Puts kept record id in the set of queue q and state s, out of the one its
-- entry names, at its place in the order (a new one, the first time it is
-- kept).
function kept.index(id, q, s)
  local at, old_s, old_q = kept.entry(id)
  if at then
    if old_s == s and old_q == q then return end
    redis.call('ZREM', kept.set(old_q, old_s), id)
  else
    at = redis.call('INCR', kept.next())
    redis.call('SADD', kept.queues(), q)
  end
  redis.call('ZADD', kept.set(q, s), at, id)
  redis.call('HSET', kept.order(), id, at .. ' ' .. s .. ' ' .. q)
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
  drop_records(ids, {})
  bulk('HDEL', kept.order(), ids)
  bulk('ZREM', KEPT, ids)
end

-- Drops up to 200 kept records whose time is up (their KEPT score is
-- before now); returns how many.
function kept.drop_expired(now)
  local expired = redis.call('ZRANGEBYSCORE', KEPT, '-inf', '(' .. now, 'LIMIT', 0, 200)
  kept.drop(expired)
  return #expired
end
