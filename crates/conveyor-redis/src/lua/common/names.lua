-- The shared code's first part (the lua/common/ files run in the order
-- scripts.rs joins them: names, leases, records, steps, kept, workflows):
-- the per-call state, key names, ids and buffered sorted-set writes.
--
-- Shared by every script (after the generated state-machine prelude).
--
-- ARGV[1] is the key prefix. Ids, timestamps and tokens travel as decimal
-- strings and are stored as given, so they stay exact; they become Lua numbers
-- only as sorted-set scores and in comparisons.
--
-- Sorted-set writes are buffered (last write per member wins) and applied by
-- flush() in a few multi-member ZADD/ZREM calls per key: a batch of 256 tasks
-- costs a handful of set calls instead of a thousand. Running counts per
-- handler are buffered the same way (one HINCRBY per handler). A script flushes before
-- it reads a set it wrote to. Unique keys, ordering keys and the records
-- move() writes are written at once, so later steps of the same script see
-- them; the hot paths collect their records' writes and send them at the
-- end of a call (or of a reserve's queue), for tasks no other step of the
-- call reads.

local CHUNK = 2000

-- The prefix and the key names built from it. Set by begin(), which every
-- call runs first: loaded as a Redis function library, this code stays
-- loaded between calls, so nothing of one call may leak into the next.
local P, TIMERS, DEADSET, QUEUES, SEQ, WAKE, PAUSED, FINISHED_CH
local LIMITS, TATS, RUNNING_H
-- The namespace's task records (see "Task records" in records.lua).
local TOKENS, TSTATE, TDATA, TRESULT, TERROR, THISTORY
-- The records this store keeps for another backend, by expiry (see keep.lua).
local KEPT
-- Finished tasks kept for a time of their own, K ms (a task's keep, or the
-- retention its worker's report carried): the keys and functions below and
-- in steps.lua. A completed or cancelled one goes into its queue's list for
-- that state and K (expiry.list), not the finished list: tasks kept for the
-- same time expire in the order they finished, so prune cuts each such list
-- from its start, as it cuts the finished lists. Its K is a field of
-- expiry.kept (id -> K), for get and for finding a listing's cursor. A dead
-- one goes into expiry.all (by expiry) instead of the dead set. One table,
-- not a local each: a script (the shared code and one body) may have at
-- most 200 locals.
local expiry = {}
-- Key names are built once per queue (and state) per prefix: string
-- building is a large share of a script's time.
local base_of, ready_of, index_of, uniq_of, leases_of, groups_of
-- Per call: the buffered sorted-set writes and running counts (see flush),
-- and the finished-at each finished list was read at (see finished_at).
local pending, running_delta, list_finished_at
-- Per call: the leases of tasks that left running, per queue and token (see
-- "Lease groups"), and the tasks a reserve put in its call's group, per
-- queue; the list of the last queue and token lease_gone saw (a finish
-- call's tasks share a few), and its length.
local leases_gone, group_new, gone_q, gone_tk, gone_ids, gone_n
-- Per call: the queues already added to the set of queue names; the new
-- ready members of enqueued tasks, per queue, written at the end of the call
-- (flush_ready); the queues whose ready set was found writable.
local queues_added, ready_deferred, ready_checked
-- The string functions the hot paths call per task, as locals (a global
-- costs a lookup each time). Bound by begin(): a function library's code
-- cannot reach them when it loads.
local byte, sub, match
-- Per call: the TDATA writes (id, value, ...) of enqueued tasks, written at
-- the end of the call with the ready members (flush_ready).
local records_deferred
-- Workflows' key names (see common/workflows.lua), one table for them all.
local wf = {}

local function begin(prefix)
  byte, sub, match = string.byte, string.sub, string.match
  pending, running_delta, list_finished_at = {}, {}, {}
  leases_gone, group_new = {}, {}
  gone_q, gone_tk = nil, nil
  queues_added, ready_deferred, ready_checked = {}, {}, {}
  records_deferred = {}
  if prefix == P then return end
  P = prefix
  TIMERS = P .. 'timers'
  DEADSET = P .. 'dead'
  QUEUES = P .. 'queues'
  SEQ = P .. 'seq'
  WAKE = P .. 'wake'
  -- The paused queues (a set of names): reserve skips them.
  PAUSED = P .. 'paused'
  -- Ids of tasks that reached a final state, for result waiters.
  FINISHED_CH = P .. 'finished'
  -- Global handler limits: handler -> 'concurrency:count:per_us:burst'
  -- (empty fields for none), the rate state (TAT, µs) per handler, and how
  -- many tasks of each handler run now (kept by move for every handler, so a
  -- limit set later finds the count right).
  LIMITS = P .. 'limits'
  TATS = P .. 'tat'
  RUNNING_H = P .. 'running'
  -- The lease tokens' counter: each reserve call that takes a task of the
  -- record layout takes the next one for all its tasks.
  TOKENS = P .. 'tokens'
  TSTATE = P .. 'tasks:state'
  TDATA = P .. 'tasks:data'
  TRESULT = P .. 'tasks:result'
  TERROR = P .. 'tasks:error'
  THISTORY = P .. 'tasks:history'
  KEPT = P .. 'kept'
  expiry.all = P .. 'expires'
  expiry.kept = P .. 'tasks:kept'
  -- Workflows: the id counter; node task id -> 'WORKFLOW NODE' while its
  -- node has not settled; the node tasks whose end waits to be settled;
  -- workflows by id (for listing); ended ones by ended-at, succeeded and
  -- not.
  wf.SEQ = P .. 'wf:seq'
  wf.TASKS = P .. 'wf:tasks'
  wf.ENDED = P .. 'wf:ended'
  wf.ALL = P .. 'wf:all'
  wf.DONE_OK = P .. 'wf:done:ok'
  wf.DONE_BAD = P .. 'wf:done:bad'
  base_of, ready_of, index_of, uniq_of, leases_of, groups_of = {}, {}, {}, {}, {}, {}
end

local function fail(msg)
  error('conveyor: ' .. msg)
end

-- The table t holds under k, made empty there first if it has none.
local function subtable(t, k)
  local v = t[k]
  if not v then
    v = {}
    t[k] = v
  end
  return v
end

local function task_key(id) return P .. 't:' .. id end

-- The queue name is length-prefixed so no queue name or ordering key can make
-- two key families collide.
local function queue_base(q)
  local b = base_of[q]
  if not b then
    b = P .. 'q:' .. string.len(q) .. ':' .. q .. ':'
    base_of[q] = b
  end
  return b
end
local function ready_key(q)
  local k = ready_of[q]
  if not k then
    k = queue_base(q) .. 'ready'
    ready_of[q] = k
  end
  return k
end
local function index_key(q, s)
  local t = subtable(index_of, q)
  local k = t[s]
  if not k then
    k = queue_base(q) .. 's:' .. STATE_STR[s]
    t[s] = k
  end
  return k
end
local function leases_key(q)
  local k = leases_of[q]
  if not k then
    k = queue_base(q) .. 'leases'
    leases_of[q] = k
  end
  return k
end
-- Lease groups (see leases.lua): the groups' lease set and the hash of their
-- live counts, ids and split-out ids.
local function groups_keys(q)
  local k = groups_of[q]
  if not k then
    local b = queue_base(q)
    k = {b .. 'gleases', b .. 'groups'}
    groups_of[q] = k
  end
  return k
end
local function uniq_key(q)
  local k = uniq_of[q]
  if not k then
    k = queue_base(q) .. 'uniq'
    uniq_of[q] = k
  end
  return k
end
-- Available tasks that wait behind their ordering key's head (score = id).
local function parked_key(q) return queue_base(q) .. 'parked' end
-- The completed (or cancelled) tasks of queue q kept k ms (a decimal
-- string), in the order they finished: with the finished list and the
-- other such lists, the queue's tasks in that state.
function expiry.list(q, s, k) return queue_base(q) .. 'x:' .. STATE_STR[s] .. ':' .. k end
-- The times (k) that queue q has such a list of for state s: a set.
function expiry.times(q, s) return queue_base(q) .. 'xk:' .. STATE_STR[s] end
-- Queue q's lists for state s of tasks kept for a time of their own, as
-- {time, key} pairs.
function expiry.lists(q, s)
  local out = {}
  for i, k in ipairs(redis.call('SMEMBERS', expiry.times(q, s))) do out[i] = {k, expiry.list(q, s, k)} end
  return out
end
local function ord_key(q, k) return queue_base(q) .. 'ord:' .. k end
-- The running task of an ordering key, if one runs (at most one can).
local function ordrun_key(q, k) return queue_base(q) .. 'ordrun:' .. k end

-- Ready-set members are zero-padded ids, so equal priorities (equal scores)
-- sort by id: Redis breaks score ties by member, byte by byte.
local zeros = {}
local function pad(id)
  local n = 16 - string.len(id)
  if n <= 0 then return id end
  local z = zeros[n]
  if not z then
    z = string.rep('0', n)
    zeros[n] = z
  end
  return z .. id
end
-- The decimal id of number n and its ready-set member, for the runs of
-- consecutive ids enqueue hands out: formatting a number costs ~4,000
-- instructions, so the hundreds are formatted once per hundred ids
-- (remembered across calls) and two digits from a table are appended.
local two_digits = {}
local hundreds_n, hundreds, hundreds_padded
local function id_of(n)
  local lo = n % 100
  local hi = (n - lo) / 100
  if hi == 0 then
    local id = string.format('%d', n)
    return id, pad(id)
  end
  if hi ~= hundreds_n then
    hundreds = string.format('%d', hi)
    hundreds_padded = string.sub(pad(hundreds), 3)
    hundreds_n = hi
  end
  local two = two_digits[lo]
  if not two then
    two = string.format('%02d', lo)
    two_digits[lo] = two
  end
  return hundreds .. two, hundreds_padded .. two
end
local function unpad(m)
  return match(m, '^0*(.+)$')
end

local function zset_op(key, member, score)
  subtable(pending, key)[member] = score
end
local function zadd(key, score, member) zset_op(key, member, score) end
local function zrem(key, member) zset_op(key, member, false) end
