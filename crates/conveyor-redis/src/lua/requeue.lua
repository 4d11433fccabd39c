-- requeue: ARGV = prefix, now, then ids.
-- Dead tasks go back to available with a fresh attempt count. Returns how many
-- moved.
local now = ARGV[2]
local n = 0
local wake = {}
for i = 3, #ARGV do
  local r = nil
  -- A record kept for another backend is not a task of this store.
  if not redis.call('ZSCORE', KEPT, ARGV[i]) then r = load(ARGV[i], {'s', 'q', 'pr', 'ok', 'uk'}) end
  -- A task whose unique key another unfinished task holds now stays dead.
  local key_taken = r ~= nil and r.uk and redis.call('HEXISTS', uniq_key(r.q), r.uk) == 1
  if r ~= nil and TR.Requeue.from[r.s] and not key_taken then
    r.ra = now
    move(r, 'Requeue', now, {'a', 0, 'ra', now}, {'fa'})
    wake[r.q] = true
    n = n + 1
  end
end
flush()
publish(wake)
return n
