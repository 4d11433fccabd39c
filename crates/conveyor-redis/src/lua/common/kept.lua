-- The shared code's fifth part (after steps.lua): the index of the records
-- kept for another backend (see keep.lua), so they can be listed and
-- counted by queue and state without ever meeting this store's own tasks.
--
-- Each kept record is a member of one sorted set, kept.set(queue, state)
-- ('kept:q:LEN:QUEUE:STATE' under the prefix, apart from the own tasks'
-- 'q:LEN:QUEUE:...' keys), scored by its place in 'kept:order' (a hash, id
-- -> place): the order the store first kept it in ('kept:next' hands the
-- places out). The writer's ids need not grow with time (RabbitMQ's are
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

-- The queue and state code (strings) kept record id is indexed under, as
-- its stored records say, or nil when it has none that decode.
function kept.place(id)
  local dv = redis.call('HGET', TDATA, id)
  local sv = redis.call('HGET', TSTATE, id)
  if not dv or not sv then return nil end
  local q = route(dv) or data_parts(dv)
  local s = match(sv, '^(%d+) ')
  if not q or not s or not STATE_STR[tonumber(s)] then return nil end
  return q, s
end

-- Takes kept record id out of the set its stored records place it in.
function kept.unindex(id)
  local q, s = kept.place(id)
  if q then redis.call('ZREM', kept.set(q, s), id) end
end

-- Puts kept record id in the set of queue q and state s, at its place in
-- the order (a new one, the first time it is kept).
function kept.index(id, q, s)
  local at = redis.call('HGET', kept.order(), id)
  if not at then
    at = redis.call('INCR', kept.next())
    redis.call('HSET', kept.order(), id, at)
  end
  redis.call('ZADD', kept.set(q, s), at, id)
  redis.call('SADD', kept.queues(), q)
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
