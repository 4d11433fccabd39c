-- list: ARGV = prefix, state code, limit, newest first ('1' or '0'), after
-- (a task id, or '' for from the first), handler filter ('1' or '0'), the
-- handler, then at most one queue name (none: every queue).
--
-- Returns {rows, next}. rows: up to limit tasks in the state, in the order,
-- each as {id, its fields as a flat field, value, ... array (HGETALL)}. next:
-- '' when the listing is done (the page is full, or nothing more matches), or
-- the id of the last task looked at when the call stopped at its budget (it
-- looks at most at max(limit, 1000) tasks, so a handler filter over a large
-- backlog never holds the server long): the caller asks again after it.
--
-- Order, oldest first (newest first is its reverse): by id (enqueue order),
-- except completed and cancelled tasks, which are kept per queue in lists in
-- finish order (the finished list, and one per time kept for the tasks kept
-- for a time of their own: see move in common/steps.lua): by finished-at,
-- then queue name, then list (the finished list first, then by time kept),
-- then place in the list (each list is in finished-at order: see
-- finished_at in common/steps.lua).
-- Paging is by key: the cursor task's id, or for the finish lists its
-- finished-at, queue, list and place, found again in each call. Each queue is read
-- from its cursor in chunks and the queues are merged, so a page never skips
-- rows to an offset.
local state = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local newest = ARGV[4] == '1'
local after = ARGV[5]
if after == '' then after = nil end
local handler = nil
if ARGV[6] == '1' then handler = ARGV[7] end
local queues
if ARGV[8] then queues = {ARGV[8]} else queues = redis.call('SMEMBERS', QUEUES) end
local want = STATE_STR[state]
local budget = math.max(limit, 1000)
-- Candidates read from a queue at a time.
local FETCH = math.min(budget, math.max(limit, 32))
local by_finish = HOME[state] == 'finished' and not INDEXED[state]

-- True when a comes strictly before b in the order (a sort needs it false
-- for a and itself).
local function precedes(a, b)
  if newest then return a > b end
  return a < b
end
-- True when id a comes before id b in the order.
local function id_before(a, b)
  return precedes(tonumber(a), tonumber(b))
end
local function sort_ids(ids)
  table.sort(ids, id_before)
end
-- Whether id comes after the cursor id `from` (nil: from the first).
local function beyond(id, from)
  return from == nil or id_before(from, id)
end

-- The fields of a task that is in the state and of the handler, else nil
-- (a stray index entry, or filtered out); and whether the task exists.
local function matching(id)
  local r = peek(id)
  if r == nil then return nil, false end
  if r.s ~= want then return nil, true end
  if handler and r.h ~= handler then return nil, true end
  return fields_of(id), true
end

-- A sorted set whose scores are ids: up to n ids after `from`.
local function by_score(key, from, n)
  if newest then
    local max = '+inf'
    if from then max = '(' .. from end
    return redis.call('ZREVRANGEBYSCORE', key, max, '-inf', 'LIMIT', 0, n)
  end
  local min = '-inf'
  if from then min = '(' .. from end
  return redis.call('ZRANGEBYSCORE', key, min, '+inf', 'LIMIT', 0, n)
end

-- The first rank in [lo, hi] of sorted set `key` whose member is above m
-- (strict) or at least m, hi + 1 if none: the members of one priority band
-- are zero-padded ids in order.
local function first_rank(key, lo, hi, m, strict)
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local v = redis.call('ZRANGE', key, mid, mid)[1]
    local right
    if strict then right = v > m else right = v >= m end
    if right then hi = mid - 1 else lo = mid + 1 end
  end
  return lo
end

-- Up to n ids of one priority band (score) of ready set rk after `from`.
local function band_ids(rk, score, from, n)
  local cnt = redis.call('ZCOUNT', rk, score, score)
  if cnt == 0 then return {} end
  local lo = redis.call('ZCOUNT', rk, '-inf', '(' .. score)
  local hi = lo + cnt - 1
  local out = {}
  if newest then
    local r = hi
    if from then r = first_rank(rk, lo, hi, pad(from), false) - 1 end
    if r < lo then return out end
    local ms = redis.call('ZRANGE', rk, math.max(lo, r - n + 1), r)
    for i = #ms, 1, -1 do out[#out + 1] = unpad(ms[i]) end
  else
    local r = lo
    if from then r = first_rank(rk, lo, hi, pad(from), true) end
    if r > hi then return out end
    for _, m in ipairs(redis.call('ZRANGE', rk, r, math.min(hi, r + n - 1))) do
      out[#out + 1] = unpad(m)
    end
  end
  return out
end

-- The scores of the priority bands of ready set rk (at most MAX_BANDS).
local function bands(rk)
  local out = {}
  local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
  while first[1] and #out < MAX_BANDS do
    out[#out + 1] = first[2]
    first = redis.call('ZRANGEBYSCORE', rk, '(' .. first[2], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  end
  return out
end

-- A source of queue q's candidates in the order, after the cursor: a
-- function giving the next chunk (up to n candidates {id = …, k = …}),
-- empty when the queue has no more.
local function id_source(q, from)
  local fetch
  if INDEXED[state] then
    local key = index_key(q, state)
    fetch = function(last, n) return by_score(key, last, n) end
  elseif HOME[state] == 'ready' then
    -- Available: the ready set by priority band (lowest ids of each band
    -- after the cursor) and the parked set.
    local rk = ready_key(q)
    local bs = bands(rk)
    fetch = function(last, n)
      local ids = {}
      for _, score in ipairs(bs) do
        for _, id in ipairs(band_ids(rk, score, last, n)) do ids[#ids + 1] = id end
      end
      for _, id in ipairs(by_score(parked_key(q), last, n)) do ids[#ids + 1] = id end
      sort_ids(ids)
      local out = {}
      for i = 1, math.min(n, #ids) do out[i] = ids[i] end
      return out
    end
  else
    -- Running: the lease set and its groups (bounded by the work in
    -- flight), read whole.
    local members
    if HOME[state] == 'leases' then
      members = lease_holders(q)
    else
      members = redis.call('ZRANGE', members_key(q, state), 0, -1)
    end
    local all = {}
    for _, id in ipairs(members) do
      if beyond(id, from) then all[#all + 1] = id end
    end
    sort_ids(all)
    local i = 0
    fetch = function(_, n)
      local out = {}
      while #out < n and i < #all do
        i = i + 1
        out[#out + 1] = all[i]
      end
      return out
    end
  end
  local last = from
  return function(n)
    local out = {}
    for _, id in ipairs(fetch(last, n)) do out[#out + 1] = {id = id, k = tonumber(id)} end
    if #out > 0 then last = out[#out].id end
    return out
  end
end

-- The finished-at of the task at place pos of list key (0 for a stray).
local function fa_at(key, pos)
  local id = redis.call('LINDEX', key, pos)
  if not id then return 0 end
  return tonumber(stored_finished_at(id)) or 0
end

-- The first place of list key (of length len) whose task finished after fa
-- (strict) or at fa or later, len if none.
local function first_place(key, len, fa, strict)
  local lo, hi = 0, len - 1
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local v = fa_at(key, mid)
    local right
    if strict then right = v > fa else right = v >= fa end
    if right then hi = mid - 1 else lo = mid + 1 end
  end
  return lo
end

-- The place of task id, finished at fa, in list key: among the tasks that
-- finished at fa. nil when it is not there.
local function place_of(key, fa, id)
  local len = redis.call('LLEN', key)
  local p = first_place(key, len, fa, false)
  while p < len do
    local chunk = redis.call('LRANGE', key, p, p + 255)
    for i, m in ipairs(chunk) do
      if m == id then return p + i - 1 end
    end
    if #chunk == 0 or fa_at(key, p + #chunk - 1) > fa then return nil end
    p = p + #chunk
  end
  return nil
end

-- Whether a task of queue q from list `src` (-1: the finished list, else
-- its time kept) that finished at the cursor's finished-at comes before the
-- cursor in the order, when it is not the cursor's own list (there, its
-- place says).
local function at_cursor_before(c, q, src)
  if q ~= c.q then return q < c.q end
  if c.src == nil then return not newest end
  return src < c.src
end

-- A source of queue q's finished tasks in list `key` (in finished-at
-- order; src as for at_cursor_before) after cursor c ({fa, q, src, pos};
-- src and pos nil when the cursor task is in none of its queue's lists for
-- the state): candidates {id, fa, q, src, pos}.
local function finish_source(q, key, src, c)
  local len = redis.call('LLEN', key)
  local p
  if not c then
    if newest then p = len - 1 else p = 0 end
  elseif q == c.q and c.src == src then
    if newest then p = c.pos - 1 else p = c.pos + 1 end
  else
    -- After (fa, q, ...) in the order: from the first task past the
    -- cursor's finished-at, or at it when those come after the cursor.
    p = first_place(key, len, c.fa, at_cursor_before(c, q, src))
    if newest then p = p - 1 end
  end
  return function(n)
    local out = {}
    local ids
    if newest then
      if p < 0 then return out end
      local from = math.max(0, p - n + 1)
      ids = redis.call('LRANGE', key, from, p)
      for i = #ids, 1, -1 do
        local fa = tonumber(stored_finished_at(ids[i])) or 0
        out[#out + 1] = {id = ids[i], fa = fa, q = q, src = src, pos = from + i - 1}
      end
      p = from - 1
    else
      ids = redis.call('LRANGE', key, p, p + n - 1)
      for i, id in ipairs(ids) do
        local fa = tonumber(stored_finished_at(id)) or 0
        out[#out + 1] = {id = id, fa = fa, q = q, src = src, pos = p + i - 1}
      end
      p = p + #ids
    end
    return out
  end
end

-- Queue q's lists for the state: the finished list (src -1) and one per
-- time kept (src the time), as {key, src}.
local function finish_lists(q)
  local out = {{members_key(q, state), -1}}
  for _, l in ipairs(expiry.lists(q, state)) do out[#out + 1] = {l[2], tonumber(l[1])} end
  return out
end

-- True when candidate a comes before candidate b in the order.
local function before(a, b)
  if by_finish then
    if a.fa ~= b.fa then return precedes(a.fa, b.fa) end
    if a.q ~= b.q then return precedes(a.q, b.q) end
    if a.src ~= b.src then return precedes(a.src, b.src) end
    return precedes(a.pos, b.pos)
  end
  return precedes(a.k, b.k)
end

-- The cursor, for the finish lists.
local cursor = nil
if by_finish and after then
  local v = peek(after)
  if v and v.q then
    cursor = {q = v.q, fa = tonumber(v.fa) or 0}
    if tonumber(v.s) == state then
      -- Its list: the one for its time kept, if it has one.
      local k = redis.call('HGET', expiry.kept, after)
      local key, src = members_key(v.q, state), -1
      if k then key, src = expiry.list(v.q, state, k), tonumber(k) end
      cursor.pos = place_of(key, cursor.fa, after)
      if cursor.pos then cursor.src = src end
    end
  elseif newest then
    -- The cursor task is gone: pruned, and prune cuts every list from its
    -- oldest end, so nothing older is left. (A task pruned at a time kept
    -- of its own may leave older tasks in other lists: the listing ends
    -- there, the trade of a cursor that names a task id alone.)
    return {{}, ''}
  end
  -- (Oldest first after a pruned task: everything left came after it, or
  -- for one pruned at a time kept of its own, may be listed again.)
end

-- One source per queue, each with a buffer of candidates.
local sources = {}
for _, q in ipairs(queues) do
  if by_finish then
    for _, l in ipairs(finish_lists(q)) do
      sources[#sources + 1] = {next_chunk = finish_source(q, l[1], l[2], cursor), buf = {}, i = 1,
        done = false}
    end
  else
    sources[#sources + 1] = {next_chunk = id_source(q, after), buf = {}, i = 1, done = false}
  end
end

-- The source's next candidate (reading a chunk when its buffer is empty),
-- nil when it has no more.
local function head(s)
  if s.i > #s.buf then
    if s.done then return nil end
    s.buf = s.next_chunk(FETCH)
    s.i = 1
    if #s.buf < FETCH then s.done = true end
    if #s.buf == 0 then return nil end
  end
  return s.buf[s.i]
end

local rows, looked, last = {}, 0, nil
local stopped = false
while #rows < limit do
  local best, best_c = nil, nil
  for _, s in ipairs(sources) do
    local c = head(s)
    if c and (best_c == nil or before(c, best_c)) then
      best, best_c = s, c
    end
  end
  if not best then break end
  if looked >= budget then
    stopped = true
    break
  end
  best.i = best.i + 1
  looked = looked + 1
  local fields, exists = matching(best_c.id)
  -- The next call starts after a task that exists, so it finds its place.
  if exists or not by_finish then last = best_c.id end
  if fields then rows[#rows + 1] = {best_c.id, fields} end
end
local next = ''
if stopped and last then next = last end
return {rows, next}
