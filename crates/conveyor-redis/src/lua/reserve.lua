-- reserve: ARGV = prefix, now, lease_until, max, promote_limit, then queue names.
-- Promotes due scheduled and retrying tasks (at most promote_limit), then takes
-- up to max ready tasks from the queues in the given order, by priority then
-- id, skipping (and parking) tasks that do not head their ordering key, and
-- skipping (leaving ready) tasks whose handler's global limits refuse a start.
-- Returns per task: id, token, queue, handler, payload, attempt, max_attempts,
-- timeout_ms|nil, ordering_key|nil, created_at, run_at.
local now = ARGV[2]
local lu = ARGV[3]
local max = tonumber(ARGV[4])
local promote = tonumber(ARGV[5])

local due = redis.call('ZRANGEBYSCORE', TIMERS, '-inf', now, 'LIMIT', 0, promote)
for _, id in ipairs(due) do
  local r = load(id, {'s', 'q', 'pr', 'ok', 'uk'})
  if r == nil or not TR.Due.from[r.s] then
    zrem(TIMERS, id)
  else
    move(r, 'Due', now, {})
  end
end
flush()

-- Global handler limits (see limits.lua for the GCRA arithmetic).
local gates = load_gates(now)
local skipped = 0

local out = {}
local picked = 0
local fields = {'s', 'q', 'pr', 'ok', 'uk', 'a', 'ma', 'tk', 'h', 'p', 'to', 'ca', 'ra'}
for qi = 6, #ARGV do
  if picked >= max or skipped >= SKIP_LIMIT then break end
  local q = ARGV[qi]
  local rk = ready_key(q)
  local cursor = 0
  while picked < max and skipped < SKIP_LIMIT do
    local chunk = max - picked
    if gates and chunk < 100 then chunk = 100 end
    local ms = redis.call('ZRANGE', rk, cursor, cursor + chunk - 1)
    if #ms == 0 then break end
    cursor = cursor + #ms
    for _, m in ipairs(ms) do
      local id = unpad(m)
      local r = load(id, fields)
      if r == nil or r.s ~= AVAILABLE or r.q ~= q then
        -- A stray entry: the task is gone or lives elsewhere.
        zrem(rk, m)
      elseif not is_head(r) then
        -- Parked: it re-enters the ready set when it heads its key.
        zrem(rk, m)
      elseif gates and not admit(gates, need(r, 'h')) then
        -- Its handler is at a limit: it stays ready, in its place.
        skipped = skipped + 1
        if skipped >= SKIP_LIMIT then break end
      else
        local a = num(r, 'a') + 1
        local tk = num(r, 'tk') + 1
        r.lu = lu
        move(r, 'Reserve', now, {'a', a, 'tk', tk})
        out[#out + 1] = {id, tk, q, need(r, 'h'), need(r, 'p'), a, need(r, 'ma'), r.to, r.ok,
          need(r, 'ca'), need(r, 'ra')}
        picked = picked + 1
        if picked >= max then break end
      end
    end
  end
end
flush()
store_gates(gates)
return out
