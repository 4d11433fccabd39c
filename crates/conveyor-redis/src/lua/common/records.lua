-- The shared code's third part (after leases.lua): task records, read and
-- written.

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
-- for none; ra, the run-at the task is enqueued with). `long` asks for the
-- long form whatever the lengths: a task with a keep of its own takes it,
-- which tells the hot paths (route says which form it read) to look for
-- the keep in d.
local function data_head(q, h, pr, uk, ok, ra, long)
  pr = dec(pr)
  if not string.find(pr, '^%-?%d+$') then fail('bad priority ' .. pr) end
  local lu, lo = 0, 0
  if uk then lu = #uk + 1 end
  if ok then lo = #ok + 1 end
  local head
  if not long and #q < 255 and #h < 255 and lu < 255 and lo < 255 then
    head = string.char(#q, #h, lu, lo)
  else
    head = '\255' .. string.format('%d %d %d %d ', #q, #h, lu - 1, lo - 1)
  end
  return head .. q .. h .. (uk or '') .. (ok or '') .. pr .. ' ' .. dec(ra) .. ' '
end

-- The routing parts of a TDATA value, for the hot paths: queue, handler,
-- unique key and ordering key (false for none), where its priority starts,
-- and true for a record of the long form (a name longer than a byte holds,
-- or a task with a keep of its own: see data_head). nil for a value that
-- does not decode. The short form costs two byte reads and the cuts; the
-- long form a match of its lengths besides.
local function route(v)
  local lq, lh, lu, lo = byte(v, 1, 4)
  if not lo then return nil end
  local qat, long = 5, nil
  if lq == 255 then
    local a, b, c, d, at = match(v, '^\255(%d+) (%d+) (%-?%d+) (%-?%d+) ()')
    if not at then return nil end
    lq, lh, lu, lo, qat, long = tonumber(a), tonumber(b), tonumber(c) + 1, tonumber(d) + 1, at, true
  end
  local hat = qat + lq
  local uat = hat + lh
  local oat = uat
  if lu > 0 then oat = oat + lu - 1 end
  local pat = oat
  if lo > 0 then pat = pat + lo - 1 end
  if pat >= #v then return nil end
  local uk, ok = false, false
  if lu > 0 then uk = sub(v, uat, oat - 1) end
  if lo > 0 then ok = sub(v, oat, pat - 1) end
  return sub(v, qat, hat - 1), sub(v, hat, uat - 1), uk, ok, pat, long
end

-- The parts of a TDATA value: queue, handler, priority, unique key and
-- ordering key (false for none), d, enqueued run-at. nil when it does not
-- decode.
local function data_parts(v)
  local q, h, uk, ok, pat = route(v)
  if not q then return nil end
  local pr, ra, dat = match(v, '^(%-?%d+) (%-?%d+) ()', pat)
  if not dat then return nil end
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

-- The fields of a task hash, in the order stored records list them; 'xa'
-- is a finished task's expiry, when it has one of its own (see fields_of).
local RECORD_FIELDS = {'s', 'tk', 'q', 'h', 'a', 'd', 'ra', 'pr', 'uk', 'ok', 'r', 'e', 'fa', 'at',
  'hi', 'xa'}

-- Task id's fields as a flat field, value, ... array (as HGETALL gives a
-- task hash), or nil when there is no such task.
local function fields_of(id)
  local r = peek(id, true)
  if r == nil then return nil end
  if not r.layout then return redis.call('HGETALL', task_key(id)) end
  if FINISHED[tonumber(r.s)] then
    -- Its own expiry: kept for a time of its own (completed, cancelled),
    -- dead with one, or a kept record with one (kept.own() in kept.lua,
    -- which comes after this part).
    local k = redis.call('HGET', expiry.kept, id)
    local xa
    if k and r.fa then
      xa = tonumber(r.fa) + tonumber(k)
    else
      xa = redis.call('ZSCORE', expiry.all, id) or redis.call('HGET', P .. 'kept:own', id)
    end
    if xa then r.xa = string.format('%d', tonumber(xa)) end
  end
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
