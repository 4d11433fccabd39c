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
-- The namespace's task records (see "Task records" below).
local TOKENS, TSTATE, TDATA, TRESULT, TERROR, THISTORY
-- The records this store keeps for another backend, by expiry (see keep.lua).
local KEPT
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
-- Lease groups (see below): the groups' lease set and the hash of their
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
  if not INDEXED[s] and HOME[s] == 'finished' then return redis.call('LLEN', members_key(q, s)) end
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

-- Task records. A task is one field, keyed by its id, in each of two
-- hashes of the namespace, so a step over many tasks reads and writes them
-- with a few multi-field commands (a command a script sends costs the
-- server about as much as eight fields it carries):
--   TDATA, what never changes, written once at enqueue: the byte lengths of
--     the queue, the handler, the unique key plus one and the ordering key
--     plus one (0: none) as four bytes, then those four strings back to
--     back, then 'PR RA ' (the priority and the run-at it was enqueued
--     with), then d (see packed_of). A part too long for a byte makes the
--     record's first byte 255, followed by the four lengths in decimal,
--     'LQ LH LU LO ' (-1: none), and the rest as before.
--   TSTATE, what each step rewrites: 'S TK FA A RA AT', the state code, the
--     lease token, the finished-at ('' before the task finishes), the
--     attempts, the run-at and, to the end of the string, the latest
--     attempt's 'START WORKER' ('' before the first attempt). A task
--     enqueued available (no key, due) gets none until its first step: a
--     data record without a state record is such a task, available with no
--     token, no attempts and its data record's run-at.
-- The result, the last error and the attempt history, for a task that has
-- one, are its field in TRESULT, TERROR and THISTORY. Tasks stored before
-- this layout are a hash of their own each (task_key) with those as fields:
-- every reader looks for a task in TSTATE first, then for its hash.
--
-- The hot paths keep the Lua work per task small, as it costs about as much
-- as the commands: a string function call ~700 instructions, a match with
-- captures ~1,000 a capture, a number read from or written as a string
-- ~2,000-4,000 (callgrind on Redis 7.0). So they take the record's parts
-- with string.byte and string.sub, check and rebuild the state by its
-- prefix, and keep every number as the string it is stored as.

-- The captures of a TSTATE value: state, token, finished-at, attempts,
-- run-at, attempt.
local STATE_PATTERN = '^(%d+) (%d+) (%-?%d*) (%d+) (%-?%d+) (.*)$'

-- A number as the decimal string it is stored as (Redis 7.0 formats a Lua
-- number with '%.17g', and string concatenation with '%.14g').
local function dec(v)
  if type(v) == 'number' then return string.format('%d', v) end
  return v
end

-- n + 1 for the decimal string n, as a decimal string. Remembered for the
-- library's life (for attempt counts: a handful of values).
local succ_of = {}
local function succ(n)
  local s = succ_of[n]
  if not s then
    s = string.format('%d', tonumber(n) + 1)
    succ_of[n] = s
  end
  return s
end

-- The TSTATE value of task r (fields s, tk, a, ra, fa, at; fa and at may be
-- false or nil for none).
local function state_value(r)
  return dec(r.s) .. ' ' .. dec(r.tk) .. ' ' .. dec(r.fa or '') .. ' ' .. dec(r.a) .. ' '
    .. dec(r.ra) .. ' ' .. (r.at or '')
end

-- The head of a TDATA value: everything before d (uk and ok: false or nil
-- for none; ra, the run-at the task is enqueued with).
local function data_head(q, h, pr, uk, ok, ra)
  pr = dec(pr)
  if not string.find(pr, '^%-?%d+$') then fail('bad priority ' .. pr) end
  local lu, lo = 0, 0
  if uk then lu = #uk + 1 end
  if ok then lo = #ok + 1 end
  local head
  if #q < 255 and #h < 255 and lu < 255 and lo < 255 then
    head = string.char(#q, #h, lu, lo)
  else
    head = '\255' .. string.format('%d %d %d %d ', #q, #h, lu - 1, lo - 1)
  end
  return head .. q .. h .. (uk or '') .. (ok or '') .. pr .. ' ' .. dec(ra) .. ' '
end

-- The routing parts of a TDATA value of the short form, for the hot paths:
-- queue, handler, unique key and ordering key (false for none), and where
-- its priority starts. nil for the long form or a value that does not
-- decode (data_parts reads both). The offsets are data_parts' own, written
-- out here once more: one function serving both, called per task, measured
-- 1,200 instructions more a reserved task.
local function route(v)
  local lq, lh, lu, lo = byte(v, 1, 4)
  if not lo or lq == 255 then return nil end
  local hat = 5 + lq
  local uat = hat + lh
  local oat = uat
  if lu > 0 then oat = oat + lu - 1 end
  local pat = oat
  if lo > 0 then pat = pat + lo - 1 end
  if pat >= #v then return nil end
  local uk, ok = false, false
  if lu > 0 then uk = sub(v, uat, oat - 1) end
  if lo > 0 then ok = sub(v, oat, pat - 1) end
  return sub(v, 5, hat - 1), sub(v, hat, uat - 1), uk, ok, pat
end

-- The parts of a TDATA value: queue, handler, priority, unique key and
-- ordering key (false for none), d, enqueued run-at. nil when it does not
-- decode.
local function data_parts(v)
  local lq, lh, lu, lo = byte(v, 1, 4)
  if not lo then return nil end
  local qat = 5
  if lq == 255 then
    local a, b, c, d, at = match(v, '^\255(%d+) (%d+) (%-?%d+) (%-?%d+) ()')
    if not at then return nil end
    lq, lh, lu, lo, qat = tonumber(a), tonumber(b), tonumber(c) + 1, tonumber(d) + 1, at
  end
  local hat = qat + lq
  local uat = hat + lh
  local oat = uat
  if lu > 0 then oat = oat + lu - 1 end
  local pat = oat
  if lo > 0 then pat = pat + lo - 1 end
  local pr, ra, dat = match(v, '^(%-?%d+) (%-?%d+) ()', pat)
  if not dat then return nil end
  local uk, ok = false, false
  if lu > 0 then uk = sub(v, uat, oat - 1) end
  if lo > 0 then ok = sub(v, oat, pat - 1) end
  local q, h = sub(v, qat, hat - 1), sub(v, hat, uat - 1)
  return q, h, pr, uk, ok, sub(v, dat), ra
end

-- The record of task id of the layout above, from its TSTATE value sv
-- (nil: none, a task not stepped since its enqueue) and its TDATA value dv
-- (read here when nil). See peek.
local function layout_record(id, sv, dv, sides)
  dv = dv or redis.call('HGET', TDATA, id)
  if not dv then fail('task ' .. id .. ' has a state record and no data record') end
  local q, h, pr, uk, ok, d, ra0 = data_parts(dv)
  if not q then fail('task ' .. id .. ' has a data record that does not decode') end
  local s, tk, fa, a, ra, at = STATE_STR[AVAILABLE], '0', '', '0', ra0, ''
  if sv then
    s, tk, fa, a, ra, at = string.match(sv, STATE_PATTERN)
    if not s then fail('task ' .. id .. ' has a state record that does not decode') end
  end
  local r = {id = id, layout = true, data = dv, s = s, tk = tk, a = a, ra = ra,
    fa = fa ~= '' and fa, at = at ~= '' and at, q = q, h = h, pr = pr, uk = uk, ok = ok, d = d}
  if sides then
    r.r = redis.call('HGET', TRESULT, id)
    r.e = redis.call('HGET', TERROR, id)
    r.hi = redis.call('HGET', THISTORY, id)
  end
  return r
end

-- Task id's stored fields by the names of a task hash, as stored (strings;
-- a field the task does not have is false or nil), or nil when there is no
-- such task. With `sides`, the result, error and history too. A task of the
-- layout above is marked `layout`, and keeps its TDATA value as `data`.
local function peek(id, sides)
  local sv = redis.call('HGET', TSTATE, id)
  if sv then return layout_record(id, sv, nil, sides) end
  local dv = redis.call('HGET', TDATA, id)
  if dv then return layout_record(id, nil, dv, sides) end
  local flat = redis.call('HGETALL', task_key(id))
  if #flat == 0 then return nil end
  local r = {id = id}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  return r
end

-- The fields of a task hash, in the order stored records list them.
local RECORD_FIELDS = {'s', 'tk', 'q', 'h', 'a', 'd', 'ra', 'pr', 'uk', 'ok', 'r', 'e', 'fa', 'at',
  'hi'}

-- Task id's fields as a flat field, value, ... array (as HGETALL gives a
-- task hash), or nil when there is no such task.
local function fields_of(id)
  local r = peek(id, true)
  if r == nil then return nil end
  if not r.layout then return redis.call('HGETALL', task_key(id)) end
  local out = {}
  for _, f in ipairs(RECORD_FIELDS) do
    local v = r[f]
    if v then
      out[#out + 1] = f
      out[#out + 1] = v
    end
  end
  return out
end

-- Reads a task (see peek): `fields` are the fields the caller uses, of
-- which the result, error and history are read only when named. Returns
-- nil when the task does not exist; fails on a task with a bad state or no
-- queue.
local function load(id, fields)
  local sides = false
  for _, f in ipairs(fields) do
    if f == 'r' or f == 'e' or f == 'hi' then sides = true end
  end
  local r = peek(id, sides)
  if r == nil then return nil end
  if r.s == nil then fail('task ' .. id .. ' has no state field') end
  local s = tonumber(r.s)
  if s == nil or STATE_NAME[s] == nil then
    fail('task ' .. id .. ' has an unknown state code ' .. tostring(r.s))
  end
  r.s = s
  if not r.q then fail('task ' .. id .. ' has no queue field') end
  return r
end

-- The fields a step writes into TSTATE; the others it writes go to their
-- side hash.
local STATE_FIELDS = {s = true, tk = true, a = true, ra = true, fa = true, at = true}

-- Writes `sets` (field, value, ...) into task r and deletes `dels`.
local function store(r, sets, dels)
  if not r.layout then
    local key = task_key(r.id)
    redis.call('HSET', key, unpack(sets))
    if dels and #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
    return
  end
  for i = 1, #sets, 2 do
    local f, v = sets[i], sets[i + 1]
    if STATE_FIELDS[f] then
      r[f] = v
    elseif f == 'r' then
      redis.call('HSET', TRESULT, r.id, v)
    elseif f == 'e' then
      redis.call('HSET', TERROR, r.id, v)
    elseif f == 'hi' then
      redis.call('HSET', THISTORY, r.id, v)
    else
      fail('task ' .. r.id .. ': field ' .. f .. ' is written only at enqueue')
    end
  end
  for _, f in ipairs(dels or {}) do
    if STATE_FIELDS[f] then
      r[f] = false
    else
      fail('task ' .. r.id .. ': field ' .. f .. ' is never deleted')
    end
  end
  redis.call('HSET', TSTATE, r.id, state_value(r))
end

-- The capture of a TSTATE value's finished-at ('' for none).
local FINISHED_AT_PATTERN = '^%d+ %d+ (%-?%d*) '

-- The finished-at of task id as stored (a string), false when it has none.
local function stored_finished_at(id)
  local sv = redis.call('HGET', TSTATE, id)
  if not sv then return redis.call('HGET', task_key(id), 'fa') end
  local fa = match(sv, FINISHED_AT_PATTERN)
  if fa == nil or fa == '' then return false end
  return fa
end

-- Gets the values of fields `ids` of hash `key`, any number of them (one
-- HMGET per CHUNK).
local function hmget(key, ids)
  if #ids <= CHUNK then return redis.call('HMGET', key, unpack(ids)) end
  local out = {}
  for i = 1, #ids, CHUNK do
    local v = redis.call('HMGET', key, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    for j = 1, #v do out[#out + 1] = v[j] end
  end
  return out
end

local function need(r, f)
  local v = r[f]
  if v == false or v == nil then fail('task ' .. r.id .. ' has no ' .. f .. ' field') end
  return v
end

local function num(r, f)
  local v = tonumber(need(r, f))
  if v == nil then fail('task ' .. r.id .. ' has a non-numeric ' .. f .. ' field') end
  return v
end

-- Only the lowest-id unfinished task of a (queue, ordering key) may run, and
-- only while no task of the key runs (a requeued dead task can be older than
-- the one that runs).
local function heads_key(q, ok, id)
  local h = redis.call('ZRANGE', ord_key(q, ok), 0, 0)
  if h[1] ~= id then return false end
  return redis.call('EXISTS', ordrun_key(q, ok)) == 0
end
local function is_head(r)
  if not r.ok then return true end
  return heads_key(r.q, r.ok, r.id)
end

-- Higher priority first: the score is the priority negated, as a string.
local function ready_score(pr)
  if pr == '0' then return '0' end
  if tonumber(pr) == nil then fail('bad priority ' .. tostring(pr)) end
  if string.sub(pr, 1, 1) == '-' then return string.sub(pr, 2) end
  return '-' .. pr
end

-- A task becomes unfinished (new or requeued): it takes its keys again.
local function join_keys(r)
  if r.uk then redis.call('HSETNX', uniq_key(r.q), r.uk, r.id) end
  if r.ok then redis.call('ZADD', ord_key(r.q, r.ok), r.id, r.id) end
end

-- A task finished: it frees its unique key, and the next task of its ordering
-- key (if available) becomes ready.
local function release_keys(r)
  if r.uk then
    local uk = uniq_key(r.q)
    if redis.call('HGET', uk, r.uk) == r.id then redis.call('HDEL', uk, r.uk) end
  end
  if r.ok then
    local ok = ord_key(r.q, r.ok)
    redis.call('ZREM', ok, r.id)
    local h = redis.call('ZRANGE', ok, 0, 0)[1]
    if h then
      local head = peek(h)
      if head and tonumber(head.s) == AVAILABLE then
        zadd(ready_key(r.q), ready_score(head.pr), pad(h))
        zrem(parked_key(r.q), h)
      end
    end
  end
end

-- The finished-at of a task that enters the finished list `key` in this
-- script: now, or the finished-at of the list's last task when that is later
-- (it was finished by a worker whose clock runs ahead), so every list stays
-- in finished-at order, which list (its keyset paging) and prune rely on.
-- Read once per list and script: one LINDEX and one HGET.
local function finished_at(key, now)
  local fa = list_finished_at[key]
  if fa then return fa end
  fa = now
  local tail = redis.call('LINDEX', key, -1)
  if tail then
    local t = stored_finished_at(tail)
    if t and tonumber(t) and tonumber(t) > tonumber(now) then fa = t end
  end
  list_finished_at[key] = fa
  return fa
end

-- Moves task r (fields s, q, pr, ok, uk; h when it enters or leaves running;
-- ra for timers; lu, the lease expiry,
-- for the leases set: it is not stored in the hash) along
-- transition tname, writing `sets` (field, value, ...) and deleting `dels`
-- with its new state, and keeping every index in step.
local function move(r, tname, now, sets, dels)
  local tr = TR[tname]
  local from = r.s
  if from == nil then
    if next(tr.from) ~= nil then fail('a new task cannot take the ' .. tname .. ' transition') end
  elseif not tr.from[from] then
    fail('task ' .. r.id .. ': a ' .. STATE_NAME[from] .. ' task cannot take the ' .. tname .. ' transition')
  end
  local to = tr.to
  if from ~= nil then
    -- A finished list is only ever cut from its start (prune).
    if HOME[from] == 'finished' then fail('no transition leaves a ' .. STATE_NAME[from] .. ' task') end
    if HOME[from] == 'leases' and r.layout then
      -- Its lease may be a group's (tokens of the record layout are per
      -- reserve call).
      lease_gone(r.q, r.id, r.tk)
    else
      zrem(home_key(r.q, from), home_member(from, r.id))
    end
    -- Only a task with an ordering key can be parked.
    if HOME[from] == 'ready' and r.ok then zrem(parked_key(r.q), r.id) end
    if INDEXED[from] then zrem(index_key(r.q, from), r.id) end
  end
  sets[#sets + 1] = 's'
  sets[#sets + 1] = to
  if FINISHED[to] then
    sets[#sets + 1] = 'fa'
    if HOME[to] == 'finished' then
      sets[#sets + 1] = finished_at(home_key(r.q, to), now)
    else
      sets[#sets + 1] = now
    end
  end
  store(r, sets, dels)
  r.s = to
  if from == RUNNING and to ~= RUNNING then
    count_running(need(r, 'h'), -1)
  elseif to == RUNNING and from ~= RUNNING then
    count_running(need(r, 'h'), 1)
  end
  if r.ok then
    if from == RUNNING and to ~= RUNNING then redis.call('DEL', ordrun_key(r.q, r.ok)) end
    if to == RUNNING then redis.call('SET', ordrun_key(r.q, r.ok), r.id) end
  end
  local was_unfinished = from ~= nil and UNFINISHED[from]
  if UNFINISHED[to] and not was_unfinished then join_keys(r) end
  if FINISHED[to] and was_unfinished then release_keys(r) end
  if INDEXED[to] then zadd(index_key(r.q, to), r.id, r.id) end
  local h = HOME[to]
  if h == 'ready' then
    if is_head(r) then
      zadd(ready_key(r.q), ready_score(r.pr), pad(r.id))
    else
      zadd(parked_key(r.q), r.id, r.id)
    end
  elseif h == 'timers' then
    zadd(TIMERS, r.ra, r.id)
  elseif h == 'leases' then
    -- A reserve call's tasks of the record layout share its token: they
    -- join the call's lease group.
    if r.group then group_add(r.q, r.id) else zadd(leases_key(r.q), r.lu, r.id) end
  elseif h == 'finished' then
    redis.call('RPUSH', home_key(r.q, to), r.id)
  else
    zadd(home_key(r.q, to), now, r.id)
  end
end

-- True when the queue holds no task in any state.
local function queue_empty(q)
  for _, s in ipairs(ALL_STATES) do
    if count_state(q, s) > 0 then return false end
  end
  return true
end

-- Drops the records of finished tasks for good (prune, purge): `ids` of
-- the record layout, with one HDEL per record hash for all of them, and
-- `older`, tasks stored before it, a hash each. Their sets and lists are
-- the caller's to cut.
local function drop_records(ids, older)
  if #ids > 0 then
    for _, key in ipairs({TSTATE, TDATA, TRESULT, TERROR, THISTORY}) do bulk('HDEL', key, ids) end
  end
  for i = 1, #older, CHUNK do
    local keys = {}
    for j = i, math.min(i + CHUNK - 1, #older) do keys[#keys + 1] = task_key(older[j]) end
    redis.call('DEL', unpack(keys))
  end
end

-- The queue of each of the dead tasks `ids`, false for one that is gone,
-- read with one HMGET of their data records; and which of them are of the
-- record layout (true) or stored before it (false).
local function dead_queues(ids)
  local dvs = hmget(TDATA, ids)
  local qs, layout = {}, {}
  for i, id in ipairs(ids) do
    local dv = dvs[i]
    if dv then
      qs[i] = route(dv) or data_parts(dv) or false
      layout[i] = true
    else
      qs[i] = redis.call('HGET', task_key(id), 'q')
      layout[i] = false
    end
  end
  return qs, layout
end

local function publish(wake)
  for q in pairs(wake) do redis.call('PUBLISH', WAKE, q) end
end

-- A task's fields that never change, packed by the client into one field,
-- 'd' (see packed.rs): '1 MAX_ATTEMPTS CREATED_AT TIMEOUT_MS TRACE_LEN TRACE'
-- and then the payload. The hot paths pass it through untouched. Tasks
-- stored before it have those as fields of their own (ma, ca, to, tc, p):
-- these read both.

-- The 'd' of task r, loaded with d or the older fields: a task stored before
-- it gets one built from them.
local function packed_of(r)
  if r.d then return r.d end
  local tc = r.tc or ''
  return '1 ' .. need(r, 'ma') .. ' ' .. need(r, 'ca') .. ' ' .. (r.to or '') .. ' ' .. #tc .. ' '
    .. tc .. need(r, 'p')
end
-- The max attempts of task r, loaded with d and ma.
local function max_attempts(r)
  if not r.d then return num(r, 'ma') end
  local ma = tonumber(string.match(r.d, '^1 (%d+) '))
  if ma == nil then fail('task ' .. r.id .. ' has a d field that does not decode') end
  return ma
end
-- The created-at of a task from its d (or, stored before it, ca) field, or
-- nil when neither decodes.
local function created_at(d, ca)
  if d then return string.match(d, '^1 %d+ (%-?%d+) ') end
  return ca
end

-- The tasks of enqueue (and of finish's follow-ups) come as a list of
-- forms, each a letter and its arguments, so that a batch of like tasks
-- costs two arguments a task (each argument costs the server time to read):
--   'p' queue, handler, d, priority, run_at: a task with no unique or
--       ordering key (6 arguments);
--   'k' the same, then has_unique ('0'|'1'), unique_key, has_ordering
--       ('0'|'1'), ordering_key (10 arguments);
--   '=' d: a task with no unique or ordering key and the queue, handler,
--       priority and run_at of the task before it in the list (2 arguments).

-- The Enqueue edge of a new task without a unique or ordering key, due now,
-- is written out for the hot path (every enqueue of a plain task): its two
-- records and its ready member join the call's multi-field writes, no task
-- table, no command of its own. Checked once against the
-- generated prelude, as move() would check it; should the state machine
-- change so it no longer holds, every task takes move() instead.
-- (Plain Lua only: a function library runs this when it loads, where the
-- standard functions are not reachable yet.)
local ENQUEUE_FAST = TR.Enqueue.to == AVAILABLE
  and HOME[AVAILABLE] == 'ready' and not INDEXED[AVAILABLE]
  and UNFINISHED[AVAILABLE] and not FINISHED[AVAILABLE]
for i = 1, #ALL_STATES do
  if TR.Enqueue.from[ALL_STATES[i]] then ENQUEUE_FAST = false end
end
local AVAILABLE_STR = STATE_STR[AVAILABLE]

-- Enqueues the n tasks whose forms (see above) take the `span` arguments
-- from ARGV[b] (used by enqueue and by finish: follow-ups, in the finish's
-- atomic step), with the ids after `seq` (taken by the caller, before
-- anything was written, so a call stopped half way by bad data in the store
-- never hands one out twice; the tasks that are not duplicates get them in
-- order), appending (position, id) for each duplicate (a task whose unique
-- key an unfinished task holds) to `out` unless it is nil, and marking in
-- `wake` the queues that got available tasks.
local function enqueue_tasks(now, b, n, span, out, wake, seq)
  local now_n = tonumber(now)
  local last = b + span
  -- This request's new data records and ready members on the hot path,
  -- written with the call's others at its end (flush_ready) once the
  -- request went through. Such a task has no state record yet (see "Task
  -- records").
  local datas, ready_adds = {}, {}
  -- The fields a '=' form takes from the task before it; the data head of
  -- a plain task with them, built when first needed.
  local q, h, pr, ra, due, score, head
  for i = 1, n do
    local form = ARGV[b]
    local d
    local uk, ok = false, false
    if form == '=' then
      if not q then fail('enqueue: task 1 repeats the task before it') end
      d = ARGV[b + 1]
      b = b + 2
      if not (d and b <= last) then fail('enqueue: task ' .. i .. ' has too few arguments') end
    else
      q, h, d, pr, ra = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
      if form == 'k' then
        if ARGV[b + 6] == '1' then uk = ARGV[b + 7] end
        if ARGV[b + 8] == '1' then ok = ARGV[b + 9] end
        b = b + 10
      elseif form == 'p' then
        b = b + 6
      else
        fail('enqueue: task ' .. i .. ' has an unknown form ' .. tostring(form))
      end
      if not (q and h and d and pr and ra and b <= last) then
        fail('enqueue: task ' .. i .. ' has too few arguments')
      end
      if not string.find(ra, '^%-?%d+$') then fail('enqueue: task ' .. i .. ' has a bad run-at ' .. ra) end
      due = tonumber(ra) <= now_n
      score, head = nil, nil
    end
    local existing = false
    if uk then existing = redis.call('HGET', uniq_key(q), uk) end
    if existing then
      if out then
        out[#out + 1] = i
        out[#out + 1] = existing
      end
    elseif ENQUEUE_FAST and not uk and not ok and due then
      seq = seq + 1
      local id, member = id_of(seq)
      if not head then
        head = data_head(q, h, pr, false, false, ra)
        score = ready_score(pr)
      end
      local k = #datas
      datas[k + 1], datas[k + 2] = id, head .. d
      -- New ids: each member is written once, so no last-write-wins
      -- buffering, just one multi-member ZADD per queue at the end of the
      -- call, for every request in it. That write cannot fail: the queue's
      -- ready set was read as a sorted set (or none) first, so a damaged one
      -- stops this request here, before any of its writes to that queue.
      if not ready_checked[q] then
        redis.call('ZCARD', ready_key(q))
        ready_checked[q] = true
      end
      local adds = ready_adds[q]
      if not adds then
        adds = {}
        ready_adds[q] = adds
      end
      adds[#adds + 1] = score
      adds[#adds + 1] = member
      if not queues_added[q] then
        queues_added[q] = true
        redis.call('SADD', QUEUES, q)
      end
      wake[q] = true
    else
      seq = seq + 1
      local id = string.format('%d', seq)
      redis.call('HSET', TDATA, id, data_head(q, h, pr, uk, ok, ra) .. d)
      local r = {id = id, layout = true, q = q, h = h, pr = pr, ra = ra, uk = uk, ok = ok,
        tk = '0', a = '0'}
      local tname = 'Enqueue'
      if not due then tname = 'Schedule' end
      move(r, tname, now, {})
      if not queues_added[q] then
        queues_added[q] = true
        redis.call('SADD', QUEUES, q)
      end
      if r.s == AVAILABLE then wake[q] = true end
    end
  end
  if b ~= last then fail('enqueue: the tasks take ' .. (b - last + span) .. ' arguments, not ' .. span) end
  -- The request went through: its records and ready members join the call's.
  if #records_deferred == 0 then
    records_deferred = datas
  else
    for i = 1, #datas do records_deferred[#records_deferred + 1] = datas[i] end
  end
  for q, adds in pairs(ready_adds) do
    local all = ready_deferred[q]
    if not all then
      ready_deferred[q] = adds
    else
      for i = 1, #adds do all[#all + 1] = adds[i] end
    end
  end
end

-- Writes the data records and ready members enqueue_tasks deferred (one
-- HSET, one ZADD per queue).
local function flush_ready()
  bulk('HSET', TDATA, records_deferred)
  records_deferred = {}
  for q, adds in pairs(ready_deferred) do bulk('ZADD', ready_key(q), adds) end
  ready_deferred = {}
end

-- Takes n ids for tasks about to be enqueued: returns the one before the
-- first.
local function take_ids(n)
  return redis.call('INCRBY', SEQ, n) - n
end

-- One message per script call for the tasks it finished: their ids,
-- comma-separated, or an empty message ("something finished": every result
-- waiter looks again) beyond MAX_FINISHED_IDS. Nothing when none finished.
local MAX_FINISHED_IDS = 1000
local function publish_finished(ids)
  if #ids == 0 then return end
  local payload = ''
  if #ids <= MAX_FINISHED_IDS then payload = table.concat(ids, ',') end
  redis.call('PUBLISH', FINISHED_CH, payload)
end

-- text cut to its first ERROR_CHARS characters (UTF-8: a character starts
-- at any byte that is not a continuation byte).
local function clip(text)
  if #text <= ERROR_CHARS then return text end
  local at = 0
  for _ = 1, ERROR_CHARS do
    at = string.find(text, '[^\128-\191]', at + 1)
    if not at then return text end
  end
  local next_char = string.find(text, '[^\128-\191]', at + 1)
  if not next_char then return text end
  return string.sub(text, 1, next_char - 1)
end

-- The history of task r (its 'hi' field) with its latest attempt (its 'a'
-- and 'at' fields, as loaded: 'at' is 'START WORKER') appended, ended at now as outcome with
-- the error text (or nil): the stored form conveyor_core::attempt reads
-- (a JSON array), keeping the latest HISTORY_LIMIT attempts. A history that
-- does not decode starts again empty.
local function history_with(r, now, outcome, text)
  local h = {}
  if r.hi then
    local ok, v = pcall(cjson.decode, r.hi)
    if ok and type(v) == 'table' then h = v end
  end
  while #h >= HISTORY_LIMIT do table.remove(h, 1) end
  local st, w = string.match(r.at or '', '^(%-?%d+) (.*)$')
  local e = {n = tonumber(r.a), s = tonumber(st), e = tonumber(now), o = outcome}
  if w and w ~= '' then e.w = w end
  if text then e.x = clip(text) end
  h[#h + 1] = e
  return cjson.encode(h)
end
