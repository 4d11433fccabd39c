-- kept_list: ARGV = prefix, now, state code, limit, newest first ('1' or
-- '0'), after (a task id, or '' for from the first), handler filter ('1' or
-- '0'), the handler, then at most one queue name (none: every queue a record
-- was kept for).
--
-- Lists the records kept for another backend (see keep.lua), never this
-- store's own tasks, in list.lua's reply: {rows, next}. rows: up to limit
-- kept records in the state, each {id, its fields (HGETALL form)}. next: ''
-- when the listing is done, or the id of the last record looked at when the
-- call stopped at its budget (max(limit, 1000) records looked at).
--
-- Order, oldest first (newest first is its reverse): the order the records
-- were first kept in (see common/kept.lua). The cursor is a record's place
-- in that order, found again from its id; a cursor record no longer kept
-- (expired, forgotten or purged since the page before) fails the call with
-- a message saying to list again from the start. Records past their expiry
-- not dropped yet are skipped.
local now, state, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local newest = ARGV[5] == '1'
local after = ARGV[6]
local handler = nil
if ARGV[7] == '1' then handler = ARGV[8] end
if not STATE_STR[state] then fail('kept_list: unknown state code ' .. ARGV[3]) end
local queues
if ARGV[9] then queues = {ARGV[9]} else queues = redis.call('SMEMBERS', kept.queues()) end
local from = nil
if after ~= '' then
  from = kept.entry(after)
  if not from then
    fail('the listing goes on after task ' .. after .. ', which is no longer kept'
      .. ' (expired, retried or purged): list again from the start')
  end
  from = tonumber(from)
end
local budget = math.max(limit, 1000)
local FETCH = math.min(budget, math.max(limit, 32))

-- Up to FETCH {id, place} of set key after place `at` (nil: from the first).
local function fetch(key, at)
  local got
  if newest then
    local max = '+inf'
    if at then max = '(' .. string.format('%.0f', at) end
    got = redis.call('ZREVRANGEBYSCORE', key, max, '-inf', 'WITHSCORES', 'LIMIT', 0, FETCH)
  else
    local min = '-inf'
    if at then min = '(' .. string.format('%.0f', at) end
    got = redis.call('ZRANGEBYSCORE', key, min, '+inf', 'WITHSCORES', 'LIMIT', 0, FETCH)
  end
  local out = {}
  for i = 1, #got, 2 do out[#out + 1] = {got[i], tonumber(got[i + 1])} end
  return out
end

-- One source per queue, merged by place.
local sources = {}
for _, q in ipairs(queues) do
  local key = kept.set(q, state)
  local items = fetch(key, from)
  if #items > 0 then
    sources[#sources + 1] = {key = key, items = items, pos = 1, more = #items == FETCH}
  end
end
-- The source whose next record comes first in the order, refilled when it
-- ran out and may have more; nil when every one is done.
local function head()
  local best = nil
  for _, src in ipairs(sources) do
    if src.pos > #src.items and src.more then
      local last = src.items[#src.items][2]
      src.items = fetch(src.key, last)
      src.pos = 1
      src.more = #src.items == FETCH
    end
    local item = src.items[src.pos]
    if item then
      local better = best == nil
      if not better then
        local b = best.items[best.pos][2]
        if newest then better = item[2] > b else better = item[2] < b end
      end
      if better then best = src end
    end
  end
  return best
end

local rows, looked, last = {}, 0, nil
while #rows < limit do
  if looked >= budget then return {rows, last} end
  local src = head()
  if not src then break end
  local id = src.items[src.pos][1]
  src.pos = src.pos + 1
  looked = looked + 1
  last = id
  local expiry = tonumber(redis.call('ZSCORE', KEPT, id))
  if expiry and expiry >= now then
    local r = peek(id, false)
    if r and (not handler or r.h == handler) then
      rows[#rows + 1] = {id, fields_of(id)}
    end
  end
end
return {rows, ''}
