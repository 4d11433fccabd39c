-- enqueue: ARGV = prefix, now, n, then 11 per task: queue, handler, payload,
-- priority, run_at, max_attempts, timeout_ms ('' = none), has_unique ('0'|'1'),
-- unique_key, has_ordering ('0'|'1'), ordering_key.
-- Returns id, duplicate (0|1) per task. All or nothing: every task was
-- validated before the call, and a script runs to its end without
-- interleaving.
local now = ARGV[2]
local n = tonumber(ARGV[3])
local seq = tonumber(redis.call('GET', SEQ) or '0')
local first_seq = seq
local out = {}
local seen, wake = {}, {}
for i = 0, n - 1 do
  local b = 3 + i * 11
  local q = ARGV[b + 1]
  local uk = false
  if ARGV[b + 8] == '1' then uk = ARGV[b + 9] end
  local ok = false
  if ARGV[b + 10] == '1' then ok = ARGV[b + 11] end
  local existing = false
  if uk then existing = redis.call('HGET', uniq_key(q), uk) end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 1
  else
    seq = seq + 1
    local id = string.format('%d', seq)
    local ra = ARGV[b + 5]
    local r = {id = id, q = q, pr = ARGV[b + 4], ra = ra, uk = uk, ok = ok}
    local tname = 'Enqueue'
    if tonumber(ra) > tonumber(now) then tname = 'Schedule' end
    -- A small hash is a list that HMGET searches from its start, field by
    -- field: the fields reserve and finish read come first, the state before
    -- all (move writes it again, in place).
    local sets = {'s', STATE_STR[TR[tname].to], 'tk', '0', 'q', q, 'h', ARGV[b + 2], 'a', '0',
      'p', ARGV[b + 3], 'ma', ARGV[b + 6], 'ca', now, 'ra', ra, 'pr', ARGV[b + 4]}
    if ARGV[b + 7] ~= '' then
      sets[#sets + 1] = 'to'
      sets[#sets + 1] = ARGV[b + 7]
    end
    if uk then
      sets[#sets + 1] = 'uk'
      sets[#sets + 1] = uk
    end
    if ok then
      sets[#sets + 1] = 'ok'
      sets[#sets + 1] = ok
    end
    move(r, tname, now, sets)
    if not seen[q] then
      seen[q] = true
      redis.call('SADD', QUEUES, q)
    end
    if r.s == AVAILABLE then wake[q] = true end
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
if seq ~= first_seq then redis.call('SET', SEQ, string.format('%d', seq)) end
flush()
publish(wake)
return out
