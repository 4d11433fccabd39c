-- Global handler limits, for the reserve script (after lua/common/).
--
-- LIMITS maps a handler to 'concurrency:count:per_us:burst' (a field is empty
-- when that limit is not set); TATS holds each rate-limited handler's
-- theoretical arrival time in µs since the epoch; RUNNING_H counts running
-- tasks per handler. The arithmetic is conveyor_core::Admission's: a start is
-- allowed while running + taken < concurrency and TAT - tolerance <= now, and
-- moves TAT to max(TAT, now) + interval. Once refused, a handler stays refused
-- for the rest of the call, so the tasks taken of a handler are a prefix of its
-- ready tasks. Microsecond times stay exact as Lua numbers (below 2^53).

-- Most limited tasks one reserve call steps over before it stops looking, so a
-- large backlog of a limited handler cannot hold the server for long.
local SKIP_LIMIT = 10000

-- The gates of every limited handler, or nil when none is limited.
local function load_gates(now)
  local flat = redis.call('HGETALL', LIMITS)
  if #flat == 0 then return nil end
  local now_us = tonumber(now) * 1000
  local gates = {}
  for i = 1, #flat, 2 do
    local h, v = flat[i], flat[i + 1]
    local c, n, per, b = string.match(v, '^(%d*):(%d*):(%d*):(%d*)$')
    if c == nil then fail('handler ' .. h .. ' has bad limits ' .. v) end
    local g = {running = tonumber(redis.call('HGET', RUNNING_H, h) or '0') or 0, taken = 0,
      blocked = false, now = now_us}
    if c ~= '' then g.cap = tonumber(c) end
    if n ~= '' and per ~= '' then
      local count, per_us = tonumber(n), tonumber(per)
      local burst = tonumber(b) or 1
      if burst < 1 then burst = 1 end
      local interval = math.floor(per_us / count)
      if interval < 1 then interval = 1 end
      g.interval = interval
      g.tolerance = interval * (burst - 1)
      g.tat = tonumber(redis.call('HGET', TATS, h) or '')
    end
    gates[h] = g
  end
  return gates
end

-- True when handler h may start one more task now (and counts it).
local function admit(gates, h)
  local g = gates[h]
  if g == nil then return true end
  if g.blocked then return false end
  if g.cap and g.running + g.taken >= g.cap then
    g.blocked = true
    return false
  end
  if g.interval then
    local tat = g.tat or g.now
    if tat < g.now then tat = g.now end
    if tat - g.tolerance > g.now then
      g.blocked = true
      return false
    end
    g.tat = tat + g.interval
    g.moved = true
  end
  g.taken = g.taken + 1
  return true
end

-- Stores the rate states this call moved.
local function store_gates(gates)
  if not gates then return end
  for h, g in pairs(gates) do
    if g.moved then redis.call('HSET', TATS, h, string.format('%d', g.tat)) end
  end
end
